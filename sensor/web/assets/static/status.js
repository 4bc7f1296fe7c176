// peerwatch status page: loads the packets/s charts from the JSON API and
// refreshes the live numbers. Charts and formatting are chart.js's.
(function () {
  'use strict';

  var pw = window.peerwatch;
  var si = pw.si, groupDigits = pw.groupDigits, groupFloat = pw.groupFloat;
  var fmtDuration = pw.fmtDuration, fmtPercent = pw.fmtPercent, stamp = pw.stamp;
  var getJSON = pw.getJSON, rates = pw.rates, draw = pw.draw;
  var body = document.body;
  // The sensor's clock, not the viewer's: the charts end at the sensor's now.
  var skew = Number(body.dataset.now || Date.now()) - Date.now();
  var refreshSeconds = Math.max(5, Number(body.dataset.refresh) || 10);

  function now() { return Date.now() + skew; }

  function load(fig) {
    var span = Number(fig.dataset.span), step = Number(fig.dataset.step) || 60;
    var to = now(), from = to - span * 1000;
    var url = '/api/v1/series?key=' + encodeURIComponent(fig.dataset.key) + '&level=' + encodeURIComponent(fig.dataset.level) +
      '&from=' + Math.floor(from / 1000) + '&to=' + Math.ceil(to / 1000);
    return getJSON(url).then(function (j) {
      fig._data = { from: from, to: to, span: span, step: step, pts: rates(j.points || [], step) };
    }, function (err) {
      fig._data = { error: err.message, pts: [] };
    }).then(function () { draw(fig); });
  }

  var charts = Array.prototype.slice.call(document.querySelectorAll('figure.chart'));
  function loadAll() {
    return Promise.all(charts.map(load)).then(function () {
      body.dataset.charts = 'ready';
    });
  }

  // --- live numbers

  function setNum(name, text, title) {
    var host = document.querySelector('[data-live="' + name + '"]');
    if (!host) return;
    var n = host.querySelector('.num') || host;
    n.textContent = text;
    if (title) n.setAttribute('title', title);
  }

  function refresh() {
    getJSON('/api/v1/status').then(function (st) {
      var l = st.latest;
      if (l && document.getElementById('live-empty')) { location.reload(); return; }
      if (l) {
        var sec = l.seconds;
        setNum('pps-in', si(l.packets_per_second.in, 'pps'), groupFloat(l.packets_per_second.in) + ' packets/s (' + groupDigits(l.remote.packets_in) + ' packets in ' + groupFloat(sec) + ' s)');
        setNum('pps-out', si(l.packets_per_second.out, 'pps'), groupFloat(l.packets_per_second.out) + ' packets/s (' + groupDigits(l.remote.packets_out) + ' packets in ' + groupFloat(sec) + ' s)');
        setNum('bps-in', si(l.bits_per_second.in, 'b/s'), groupFloat(l.bits_per_second.in) + ' bits/s (' + groupDigits(l.remote.bytes_in) + ' bytes in ' + groupFloat(sec) + ' s)');
        setNum('bps-out', si(l.bits_per_second.out, 'b/s'), groupFloat(l.bits_per_second.out) + ' bits/s (' + groupDigits(l.remote.bytes_out) + ' bytes in ' + groupFloat(sec) + ' s)');
        var total = l.remote.packets_in + l.remote.packets_out;
        setNum('tunnel', fmtPercent(l.remote.classes.tunnel, total), groupDigits(l.remote.classes.tunnel) + ' of ' + groupDigits(total) + ' packets');
        setNum('interval', fmtDuration(sec));
        setNum('interval-end', stamp(Date.parse(l.end)), l.end);
      }
      if (st.drain_lag_seconds != null) setNum('drain-lag', fmtDuration(Math.round(st.drain_lag_seconds * 10) / 10), 'now − last drain = ' + st.drain_lag_seconds.toFixed(3) + 's');
      var inv = document.querySelector('[data-live="invariant"]');
      if (inv) {
        inv.textContent = st.invariant.ok ? 'OK' : 'BROKEN';
        inv.className = 'pill ' + (st.invariant.ok ? 'ok' : 'bad');
      }
    }, function () { /* keep the last numbers; the next refresh retries */ });
  }

  var resizeTimer;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { charts.forEach(draw); }, 150);
  });

  loadAll();
  setInterval(refresh, refreshSeconds * 1000);
  setInterval(loadAll, 60 * 1000);
})();
