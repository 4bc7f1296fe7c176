// collectord's fleet dashboard: draws the packets/s charts of the fleet from
// the series API with chart.js, and reloads the page every minute. Each
// chart names its series URL in data-src; its time axis is the span the
// answer covers.
(function () {
  'use strict';

  var pw = window.peerwatch, body = document.body;
  var charts = Array.prototype.slice.call(document.querySelectorAll('figure.chart[data-src]'));

  function load(fig) {
    return pw.getJSON(fig.dataset.src).then(function (j) {
      var from = Date.parse(j.from), to = Date.parse(j.to), step = j.step_seconds || 60;
      fig._data = { from: from, to: to, span: (to - from) / 1000, step: step, pts: pw.rates(j.points || [], step) };
    }, function (err) {
      fig._data = { error: err.message, pts: [] };
    }).then(function () { pw.draw(fig); });
  }

  // Charts of one data-group (the sensors of "who sees") share the top of
  // their y axis, so that their curves compare at a glance.
  function shareScale() {
    var groups = {};
    charts.forEach(function (fig) {
      var g = fig.dataset.group, d = fig._data;
      if (!g || !d || d.error) return;
      d.pts.forEach(function (p) { groups[g] = Math.max(groups[g] || 0, p.inp, p.outp); });
    });
    charts.forEach(function (fig) {
      if (fig.dataset.group && fig._data) {
        fig._data.ymax = groups[fig.dataset.group] || 0;
        pw.draw(fig);
      }
    });
  }

  function loadAll() {
    return Promise.all(charts.map(load)).then(function () {
      shareScale();
      body.dataset.charts = 'ready';
    });
  }

  // Picking a country shows it at once; the button stays for keyboards
  // and for browsers without scripts.
  var select = document.getElementById('country-select');
  if (select) {
    select.addEventListener('change', function () { select.form.submit(); });
  }

  var resizeTimer;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { charts.forEach(pw.draw); }, 150);
  });

  loadAll();
  var every = Math.max(15, Number(body.dataset.refresh) || 60);
  setInterval(function () {
    if (document.visibilityState === 'visible') location.reload();
  }, every * 1000);
})();
