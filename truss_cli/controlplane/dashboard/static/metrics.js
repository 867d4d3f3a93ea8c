// The Metrics tab (templates/model_metrics.html): reads GET /v1/models/{id}/metrics (the URL in
// #metrics-view's data-metrics-url) with the session cookie every 10 s and draws four uPlot
// charts. Times are the buckets' starts in unix seconds, shown in UTC like the Logs tab; a null
// (no requests in a bucket, or before the control plane started) is a gap, not a zero.

(function () {
  const view = document.getElementById('metrics-view');
  const picker = document.getElementById('metrics-deployment');
  if (picker) { picker.addEventListener('change', function () { picker.form.submit(); }); }
  if (!view || typeof uPlot === 'undefined') { return; }
  const REFRESH_MS = 10000;
  const state = document.getElementById('metrics-state');
  const empty = document.getElementById('metrics-empty');

  function fixed(digits, unit) {
    return function (u, v) { return v == null ? '–' : v.toFixed(digits) + unit; };
  }
  function percent(u, v) { return v == null ? '–' : (v * 100).toFixed(1) + ' %'; }
  // Zero at the bottom, and some height when every value is 0 (else uPlot centres a flat line).
  function fromZero(top) {
    return function (u, min, max) { return [0, Math.max(max || 0, top) * 1.1]; };
  }

  // Dots as well as lines: a lone bucket between gaps (nulls) has no line to draw.
  const DOTS = { show: true, size: 4 };
  const CHARTS = {
    'chart-requests': {
      series: [{ label: 'requests/s', stroke: '#2f5bea', fill: 'rgba(47, 91, 234, 0.12)', value: fixed(2, ''), points: DOTS }],
      range: fromZero(1),
    },
    'chart-errors': {
      series: [{ label: 'error rate', stroke: '#dc2626', value: percent, points: DOTS }],
      range: function () { return [0, 1]; },
      axis: function (u, values) { return values.map(function (v) { return Math.round(v * 100) + '%'; }); },
    },
    'chart-latency': {
      series: [
        { label: 'p50', stroke: '#0d9488', value: fixed(1, ' ms'), points: DOTS },
        { label: 'p95', stroke: '#d97706', value: fixed(1, ' ms'), points: DOTS },
      ],
      range: fromZero(1),
    },
    'chart-replicas': {
      series: [{ label: 'replicas', stroke: '#7c3aed', value: fixed(0, ''), points: DOTS }],
      range: fromZero(1),
      stepped: true,
    },
  };
  const plots = {};

  function utc(ts) { return uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'); }
  function hhmm(u, splits) { return splits.map(function (ts) { return new Date(ts * 1000).toISOString().slice(11, 16); }); }
  function hhmmss(u, ts) { return ts == null ? '--' : new Date(ts * 1000).toISOString().slice(11, 19); }

  function options(element, chart) {
    const series = chart.series.map(function (s) {
      const copy = Object.assign({ width: 2, spanGaps: false }, s);
      if (chart.stepped) { copy.paths = uPlot.paths.stepped({ align: 1 }); }
      return copy;
    });
    const yAxis = { size: 56 };
    if (chart.axis) { yAxis.values = chart.axis; }
    return {
      width: Math.max(element.clientWidth, 240),
      height: 200,
      tzDate: utc,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: chart.range } },
      axes: [{ values: hhmm }, yAxis],
      series: [{ label: 'UTC', value: hhmmss }].concat(series),
    };
  }

  function dataFor(element, body) {
    const columns = element.dataset.series.split(' ');
    return [body.series.time].concat(columns.map(function (name) { return body.series[name]; }));
  }

  function draw(body) {
    Object.keys(CHARTS).forEach(function (id) {
      const element = document.getElementById(id);
      const data = dataFor(element, body);
      if (plots[id]) {
        plots[id].setData(data);
      } else {
        plots[id] = new uPlot(options(element, CHARTS[id]), data, element);
      }
    });
    const requests = body.series.requests.reduce(function (sum, n) { return sum + (n || 0); }, 0);
    const errors = body.series.errors.reduce(function (sum, n) { return sum + (n || 0); }, 0);
    // What a reader (or a test) can check without reading the canvas: the window's totals.
    const requestsChart = document.getElementById('chart-requests');
    requestsChart.dataset.requests = String(requests);
    requestsChart.dataset.errors = String(errors);
    empty.hidden = requests > 0;
    const at = new Date().toISOString().slice(11, 19);
    showState('live', plural(requests, 'request') + ', ' + plural(errors, 'error') + ' in the last hour · updated ' +
      at + ' UTC');
  }

  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }

  function showState(name, text) {
    state.dataset.state = name;
    state.textContent = text;
  }

  async function refresh() {
    let answer;
    try {
      answer = await fetch(view.dataset.metricsUrl, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    } catch (error) {
      showState('failed', 'could not reach the control plane (' + error.message + '); retrying in 10 s');
      return;
    }
    if (!answer.ok) {
      let message = answer.status + ' ' + answer.statusText;
      try {
        const body = await answer.json();
        message = body.error || message;
      } catch (ignored) { /* not JSON: the status says it */ }
      showState('failed', answer.status === 401 ? 'signed out: reload the page to sign in' : message);
      return;
    }
    draw(await answer.json());
  }

  window.addEventListener('resize', function () {
    Object.keys(plots).forEach(function (id) {
      const element = document.getElementById(id);
      plots[id].setSize({ width: Math.max(element.clientWidth, 240), height: 200 });
    });
  });

  refresh();
  setInterval(function () { if (!document.hidden) { refresh(); } }, REFRESH_MS);
})();
