// peerwatch pages' shared script: numbers for humans (the rules of
// sensor/human), the API fetch, and the packets/s charts drawn as SVG. No
// library. The sensor's status page (status.js) and collectord's dashboard
// (dashboard.js) use it through window.peerwatch.
(function () {
  'use strict';

  var SVG = 'http://www.w3.org/2000/svg';
  // --- numbers for humans (format.go)
  var PREFIXES = ['', 'k', 'M', 'G', 'T', 'P', 'E'];

  function si(v, unit) {
    if (!isFinite(v)) return '– ' + unit;
    var i = 0;
    while (Math.abs(v) >= 999.5 && i < PREFIXES.length - 1) { v /= 1000; i++; }
    var a = Math.abs(v), num;
    if (i === 0 && a === Math.trunc(a)) num = v.toFixed(0);
    else if (a < 99.95) num = v.toFixed(1);
    else num = v.toFixed(0);
    return num + ' ' + PREFIXES[i] + unit;
  }

  function groupDigits(n) {
    return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  function groupFloat(v) {
    var s = v.toFixed(1), parts = s.split('.');
    var w = groupDigits(Number(parts[0]));
    return parts[1] === '0' ? w : w + '.' + parts[1];
  }

  function fmtDuration(sec) {
    var neg = sec < 0 ? '-' : '';
    sec = Math.abs(sec);
    var s;
    if (sec >= 86400) s = Math.floor(sec / 86400) + 'd ' + Math.floor(sec % 86400 / 3600) + 'h';
    else if (sec >= 3600) s = Math.floor(sec / 3600) + 'h ' + Math.floor(sec % 3600 / 60) + 'm';
    else if (sec >= 60) s = Math.floor(sec / 60) + 'm ' + Math.floor(sec % 60) + 's';
    else if (sec >= 10) s = sec.toFixed(0) + ' s';
    else if (sec >= 1) s = sec.toFixed(1) + ' s';
    else if (sec >= 0.01) s = (sec * 1e3).toFixed(0) + ' ms';
    else if (sec >= 0.001) s = (sec * 1e3).toFixed(1) + ' ms';
    else if (sec > 0) s = (sec * 1e6).toFixed(0) + ' µs';
    else s = '0 s';
    return neg + s;
  }

  function fmtPercent(part, whole) {
    if (part === 0 || whole === 0) return '0 %';
    if (part >= whole) return '100 %';
    var p = part / whole * 100;
    if (p < 0.05) return '<0.1 %';
    if (p > 99.95) return '>99.9 %';
    return p.toFixed(1) + ' %';
  }

  function pad(n) { return n < 10 ? '0' + n : String(n); }
  var DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  function hhmm(ms) { var d = new Date(ms); return pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()); }
  function dayLabel(ms) { var d = new Date(ms); return DAYS[d.getUTCDay()] + ' ' + d.getUTCDate(); }
  function stamp(ms) {
    var d = new Date(ms);
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' +
      pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds()) + ' UTC';
  }

  function el(name, attrs, parent) {
    var e = document.createElementNS(SVG, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  // getJSON fetches a path of the API. The URL is built on location.origin:
  // a page opened with credentials in its URL (user:pass@sensor) has a base
  // URL that fetch refuses to resolve against.
  function getJSON(path) {
    return fetch(location.origin + path, { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j && j.error ? j.error : 'HTTP ' + r.status);
        return j;
      });
    });
  }

  // --- charts

  function niceStep(max) {
    var raw = max / 4, mag = Math.pow(10, Math.floor(Math.log10(raw))), n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * mag;
  }

  function xTicks(from, to, span) {
    var every = span <= 3600 ? 600 : span <= 86400 ? 3 * 3600 : span <= 8 * 86400 ? 86400 : 7 * 86400;
    var out = [], first = Math.ceil(from / (every * 1000)) * every * 1000;
    for (var t = first; t <= to; t += every * 1000) out.push(t);
    return { ticks: out, label: span > 86400 ? dayLabel : hhmm };
  }

  // rates turns the API's points into rates, in time order, each with the
  // time of its middle.
  function rates(points, step) {
    return points.map(function (p) {
      var sec = p.seconds > 0 ? p.seconds : step, t = Date.parse(p.t);
      return { t: t, end: t + sec * 1000, mid: t + sec * 500, sec: sec, pin: p.packets_in, pout: p.packets_out,
        inp: p.packets_in / sec, outp: p.packets_out / sec };
    }).sort(function (a, b) { return a.t - b.t; });
  }

  // bucketize merges the points that share a bucket of px pixels, summing
  // packets and seconds, so that a day of minutes draws as a line and not
  // as a band.
  function bucketize(pts, from, to, width, px) {
    var n = Math.max(1, Math.floor(width / px));
    if (pts.length <= n) return pts;
    var size = (to - from) / n, out = [], cur = null;
    pts.forEach(function (p) {
      var b = Math.floor((p.mid - from) / size);
      if (!cur || cur.b !== b) {
        cur = { b: b, t: p.t, end: p.end, sec: 0, pin: 0, pout: 0 };
        out.push(cur);
      }
      cur.end = p.end;
      cur.sec += p.sec;
      cur.pin += p.pin;
      cur.pout += p.pout;
    });
    out.forEach(function (c) {
      c.mid = (c.t + c.end) / 2;
      c.inp = c.pin / c.sec;
      c.outp = c.pout / c.sec;
    });
    return out;
  }

  function draw(fig) {
    var plot = fig.querySelector('.plot'), d = fig._data;
    if (!d) return;
    plot.textContent = '';
    if (d.error || d.pts.length === 0) {
      var p = document.createElement('p');
      p.className = 'empty';
      p.textContent = d.error ? 'could not load: ' + d.error : 'no data yet';
      plot.appendChild(p);
      return;
    }
    var W = Math.max(plot.clientWidth, 200), H = Math.max(plot.clientHeight, 120);
    var ml = 46, mr = 8, mt = 8, mb = 20, pw = W - ml - mr, ph = H - mt - mb;
    // d.ymax, when set, is the least top of the y axis: charts drawn side by
    // side share their scale.
    var pts = bucketize(d.pts, d.from, d.to, pw, 2), max = d.ymax || 0;
    pts.forEach(function (p) { max = Math.max(max, p.inp, p.outp); });
    var ystep = max > 0 ? niceStep(max) : 1, ymax = Math.max(ystep, Math.ceil(max / ystep) * ystep);
    function x(t) { return ml + (t - d.from) / (d.to - d.from) * pw; }
    function y(v) { return mt + ph - v / ymax * ph; }

    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': fig.querySelector('.title').textContent + ': packets per second in and out' });
    var grid = el('g', { 'class': 'grid' }, svg), axis = el('g', { 'class': 'axis' }, svg);
    for (var v = 0; v <= ymax + ystep / 2; v += ystep) {
      if (v > 0) el('line', { x1: ml, x2: W - mr, y1: y(v), y2: y(v) }, grid);
      var lt = el('text', { x: ml - 6, y: y(v) + 3.5, 'text-anchor': 'end' }, axis);
      lt.textContent = si(v, '').trim();
    }
    var xt = xTicks(d.from, d.to, d.span);
    xt.ticks.forEach(function (t) {
      el('line', { x1: x(t), x2: x(t), y1: mt, y2: mt + ph }, grid);
      var tx = el('text', { x: x(t), y: H - 5, 'text-anchor': 'middle' }, axis);
      tx.textContent = xt.label(t);
    });
    el('line', { 'class': 'base', x1: ml, x2: W - mr, y1: mt + ph, y2: mt + ph }, svg);

    // Segments: a gap longer than half a step is a time the sensor did not count.
    var segs = [], cur = [];
    pts.forEach(function (p, i) {
      if (i > 0 && p.t - pts[i - 1].end > d.step * 500) { segs.push(cur); cur = []; }
      cur.push(p);
    });
    segs.push(cur);
    ['outp', 'inp'].forEach(function (k) {
      var cls = k === 'inp' ? 'in' : 'out', area = '', line = '';
      segs.forEach(function (s) {
        var pts = s.map(function (p) { return x(p.mid).toFixed(1) + ' ' + y(p[k]).toFixed(1); });
        if (s.length === 1) pts.push((x(s[0].mid) + 0.5).toFixed(1) + ' ' + y(s[0][k]).toFixed(1));
        line += 'M' + pts.join('L');
        area += 'M' + x(s[0].mid).toFixed(1) + ' ' + y(0).toFixed(1) + 'L' + pts.join('L') +
          'L' + x(s[s.length - 1].mid).toFixed(1) + ' ' + y(0).toFixed(1) + 'Z';
      });
      el('path', { 'class': 'area ' + cls, d: area }, svg);
      el('path', { 'class': 'line ' + cls, d: line }, svg);
    });

    var cursor = el('line', { 'class': 'cursor', x1: ml, x2: ml, y1: mt, y2: mt + ph, visibility: 'hidden' }, svg);
    var readout = fig.querySelector('.readout');
    svg.addEventListener('mousemove', function (ev) {
      var r = svg.getBoundingClientRect(), px = (ev.clientX - r.left) / r.width * W;
      var t = d.from + (px - ml) / pw * (d.to - d.from), lo = 0, hi = pts.length - 1;
      while (lo < hi) { var m = (lo + hi) >> 1; if (pts[m].mid < t) lo = m + 1; else hi = m; }
      if (lo > 0 && Math.abs(pts[lo - 1].mid - t) < Math.abs(pts[lo].mid - t)) lo--;
      var p = pts[lo];
      cursor.setAttribute('x1', x(p.mid));
      cursor.setAttribute('x2', x(p.mid));
      cursor.setAttribute('visibility', 'visible');
      readout.textContent = (d.span > 86400 ? dayLabel(p.t) + ' ' : '') + hhmm(p.t) + ' · in ' + si(p.inp, 'pps') + ' · out ' + si(p.outp, 'pps');
    });
    svg.addEventListener('mouseleave', function () {
      cursor.setAttribute('visibility', 'hidden');
      readout.textContent = '';
    });
    plot.appendChild(svg);
  }

  window.peerwatch = {
    si: si, groupDigits: groupDigits, groupFloat: groupFloat, fmtDuration: fmtDuration,
    fmtPercent: fmtPercent, stamp: stamp, getJSON: getJSON, rates: rates, draw: draw
  };
})();
