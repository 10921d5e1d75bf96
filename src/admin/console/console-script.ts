/**
 * The trader console's browser script (plain ES2020, no bundler), served as /console/console.js.
 *
 * Contract: reads only the admin API and /metrics of the origin that served it; keeps the token in
 * sessionStorage; inserts server data into the DOM with textContent only; redraws every poll without reloading
 * the page; keeps a client-side time series of the polled totals (win rate, spend) for the uPlot charts, and a
 * copy of the server's history (/admin/history, fetched by increments: `after` = the last point held; a bidder
 * that restarted answers with a lower `to` and the copy starts over) for the pacing, allocation and
 * win-rate/shading charts, trimmed to the server's ring length.
 * Element ids used by the browser test: #token, #login-form, #tree, #line-items, #discrepancies, #flash,
 * button[data-line-item="<id>"], td[data-kpi="wins"], #pacing-charts / #allocation-charts / #bidding-charts
 * [data-chart="<kind>:<id>"] (each with data-points, the non-null points of its main series).
 */
export const CONSOLE_JS = String.raw`(function () {
  'use strict';
  var TOKEN_KEY = 'segbid.console.token';
  var params = new URLSearchParams(location.search);
  var POLL_MS = Math.max(500, Number(params.get('every')) || 3000);
  var MAX_POINTS = 720;

  var state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    timer: null,
    segmentsSource: null, // 'endpoint' | 'config' | 'none'
    series: { t: [], winRate: [], spend: [], wins: [] },
    prevMetrics: null,
    charts: {},
    hist: emptyHistory(),
    /** key -> {u: uPlot, sig, box} for the history charts. */
    hcharts: {},
    busy: false,
  };

  function $(id) { return document.getElementById(id); }

  /** An element with text content and attributes (never innerHTML). */
  function el(tag, opts, children) {
    var e = document.createElement(tag);
    opts = opts || {};
    if (opts.text !== undefined && opts.text !== null) e.textContent = String(opts.text);
    if (opts.cls) e.className = opts.cls;
    if (opts.attrs) for (var k in opts.attrs) e.setAttribute(k, String(opts.attrs[k]));
    if (opts.style) for (var s in opts.style) e.style[s] = opts.style[s];
    (children || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }

  function fmtInt(v) { return v === null || v === undefined ? '–' : Number(v).toLocaleString('en-US'); }
  function fmtPct(v, digits) { return v === null || v === undefined ? '–' : (v * 100).toFixed(digits === undefined ? 1 : digits) + ' %'; }
  function fmtMoney(v) {
    if (v === null || v === undefined) return '–';
    var a = Math.abs(v);
    return a !== 0 && a < 0.01 ? v.toFixed(5) : a < 100 ? v.toFixed(2) : Math.round(v).toLocaleString('en-US');
  }
  function fmtRatio(v) { return v === null || v === undefined ? '–' : v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(2); }
  function fmtRate(v) { return v === null || v === undefined || !isFinite(v) ? '–' : v < 10 ? v.toFixed(1) : Math.round(v).toLocaleString('en-US'); }

  function flash(message, kind) {
    var f = $('flash');
    if (!message) { f.hidden = true; f.textContent = ''; return; }
    f.className = 'flash' + (kind === 'info' ? ' info' : '');
    f.textContent = message;
    f.hidden = false;
  }

  function api(method, path, body) {
    var init = { method: method, headers: { authorization: 'Bearer ' + state.token } };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (r) {
      return r.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
        return { status: r.status, json: json, text: text };
      });
    });
  }

  function errorText(r) {
    if (r.json && r.json.message) {
      var d = (r.json.details || []).map(function (x) { return (x.path ? x.path + ': ' : '') + x.message; }).filter(function (m) { return m !== r.json.message; });
      return r.status + ' ' + r.json.message + (d.length ? ' (' + d.join('; ') + ')' : '');
    }
    return r.status + ' ' + (r.text || 'error').slice(0, 200);
  }

  // ---------------------------------------------------------------------------------------------- login
  function showLogin(message) {
    stop();
    $('app').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    var err = $('login-error');
    err.hidden = !message;
    err.textContent = message || '';
    $('status').textContent = '';
    $('token').focus();
  }

  function showApp() {
    $('login').hidden = true;
    $('app').hidden = false;
    $('logout').hidden = false;
  }

  $('login-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    state.token = $('token').value.trim();
    api('GET', '/admin/config').then(function (r) {
      if (r.status === 200) {
        sessionStorage.setItem(TOKEN_KEY, state.token);
        $('token').value = '';
        showApp();
        start();
      } else {
        state.token = null;
        showLogin(r.status === 401 ? 'This token is not accepted by the bidder.' : errorText(r));
      }
    }, function (e) { showLogin('Cannot reach the bidder: ' + e.message); });
  });

  $('logout').addEventListener('click', function () {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    flash('');
    showLogin('');
  });

  // ---------------------------------------------------------------------------------------------- polling
  function stop() { if (state.timer) clearTimeout(state.timer); state.timer = null; }
  function start() { stop(); poll(); }
  function schedule() { stop(); state.timer = setTimeout(poll, POLL_MS); }

  function loadSegments(config) {
    if (state.segmentsSource === 'config' || state.segmentsSource === null) {
      if (config && config.segmentation && typeof config.segmentation === 'object') {
        state.segmentsSource = 'config';
        return Promise.resolve({ segments: config.segmentation.segments || [], note: '' });
      }
    }
    if (state.segmentsSource === 'none') return Promise.resolve({ segments: null, note: noteFor(config) });
    return api('GET', '/admin/segmentation').then(function (r) {
      if (r.status === 200 && r.json && Array.isArray(r.json.segments)) {
        state.segmentsSource = 'endpoint';
        return { segments: r.json.segments, note: '' };
      }
      state.segmentsSource = 'none';
      return { segments: null, note: noteFor(config) };
    });
  }

  function noteFor(config) {
    var file = config && typeof config.segmentation === 'string' ? config.segmentation : 'a file';
    return 'The segmentation is read from ' + file + ' and this bidder does not expose its tree: segments are listed flat, each with the KPIs of its subtree.';
  }

  function poll() {
    if (!state.token || state.busy) { schedule(); return; }
    state.busy = true;
    var got = {};
    Promise.all([
      api('GET', '/admin/config').then(function (r) { got.config = r; }),
      api('GET', '/admin/kpis?dimension=segment&discrepancies=0').then(function (r) { got.seg = r; }),
      api('GET', '/admin/kpis?dimension=line_item').then(function (r) { got.li = r; }),
      fetch('/metrics').then(function (r) { return r.text(); }).then(function (t) { got.metrics = t; }, function () { got.metrics = null; }),
      // The history is extra: its failure leaves the other panels alone.
      fetchHistory().then(function (r) { got.history = r; }, function () { got.history = null; }),
    ]).then(function () {
      var failed = [got.config, got.seg, got.li].filter(function (r) { return r.status !== 200; });
      if (failed.some(function (r) { return r.status === 401; })) {
        sessionStorage.removeItem(TOKEN_KEY);
        state.token = null;
        showLogin('The token was refused (401): sign in again.');
        return null;
      }
      if (failed.length) throw new Error(errorText(failed[0]));
      return loadSegments(got.config.json).then(function (seg) {
        render(got.config.json, seg, got.seg.json, got.li.json, got.metrics);
        renderHistory(got.history);
        $('status').textContent = 'refreshed ' + new Date().toLocaleTimeString() + ' · every ' + POLL_MS / 1000 + ' s';
      });
    }).catch(function (e) {
      $('status').textContent = 'refresh failed: ' + e.message;
    }).then(function () {
      state.busy = false;
      if (state.token) schedule();
    });
  }

  // ---------------------------------------------------------------------------------------------- render
  function render(config, seg, segReport, liReport, metricsText) {
    var total = liReport.total;
    var now = Date.now() / 1000;
    var s = state.series;
    s.t.push(now);
    s.winRate.push(total.kpis.win_rate === null || total.kpis.win_rate === undefined ? null : total.kpis.win_rate * 100);
    s.spend.push(total.kpis.spend === undefined ? null : total.kpis.spend);
    s.wins.push(total.counters.wins);
    if (s.t.length > MAX_POINTS) { s.t.shift(); s.winRate.shift(); s.spend.shift(); s.wins.shift(); }
    var currency = (config.bidder && config.bidder.currency) || 'USD';
    $('currency').textContent = '(' + currency + ', cumulative)';
    $('total-winrate').textContent = fmtPct(total.kpis.win_rate);
    $('total-spend').textContent = fmtMoney(total.kpis.spend) + ' ' + currency;
    renderCharts();
    renderTree(config, seg, segReport);
    renderLineItems(config, liReport);
    renderDiscrepancies(liReport.discrepancies);
    if (metricsText) renderMetrics(metricsText);
  }

  function chartOpts(title, label, color, valueFmt) {
    var w = Math.max(240, $('chart-winrate').clientWidth || 300);
    return {
      width: w,
      height: 200,
      legend: { show: true },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.15 : 1]; } } },
      axes: [{ stroke: '#647084', grid: { stroke: '#eef0f4' } }, { stroke: '#647084', grid: { stroke: '#eef0f4' }, size: 64, values: function (u, vals) { return vals.map(valueFmt); } }],
      series: [{}, { label: label, stroke: color, width: 2, fill: color + '22', points: { show: true, size: 4 }, value: function (u, v) { return v === null ? '–' : valueFmt(v); } }],
    };
  }

  function renderCharts() {
    if (typeof uPlot === 'undefined') return;
    var s = state.series;
    var defs = [
      { key: 'winRate', el: 'chart-winrate', label: 'win rate %', color: '#2f6fdf', fmt: function (v) { return v.toFixed(1) + '%'; } },
      { key: 'spend', el: 'chart-spend', label: 'spend', color: '#1f8a4c', fmt: function (v) { return fmtMoney(v); } },
    ];
    defs.forEach(function (d) {
      var data = [s.t.slice(), s[d.key].slice()];
      var c = state.charts[d.key];
      if (!c) {
        $(d.el).textContent = '';
        state.charts[d.key] = new uPlot(chartOpts(d.key, d.label, d.color, d.fmt), data, $(d.el));
      } else {
        c.setData(data);
      }
    });
  }

  window.addEventListener('resize', function () {
    for (var k in state.charts) {
      var c = state.charts[k];
      c.setSize({ width: Math.max(240, c.root.parentNode.clientWidth), height: 200 });
    }
    for (var h in state.hcharts) {
      var u = state.hcharts[h].u;
      u.setSize({ width: Math.max(240, u.root.parentNode.clientWidth), height: 200 });
    }
  });

  // ---------------------------------------------------------------------------------------------- history
  var PALETTE = ['#2f6fdf', '#1f8a4c', '#c0392b', '#8a5a00', '#7b3fb5', '#0e8a8a', '#c2185b', '#5d6b82', '#e07b00', '#3b8e3b'];
  var REASON_TEXT = { explore: 'explore', exploit: 'exploit', guard_rail_min: 'guard rail (min)', guard_rail_max: 'guard rail (max)' };
  var MAX_LINE_ITEM_CHARTS = 24;
  var FIELDS = { campaign: ['spent', 'target', 'exploration'], arm: ['share', 'reason'], lineItem: ['bids', 'wins', 'winRate', 'shading'] };

  function emptyHistory() { return { to: 0, t: [], meta: null, campaigns: {}, lineItems: {}, idle: [], omitted: 0, missing: false }; }

  function fetchHistory() {
    var h = state.hist;
    // Only the line items the page charts (most bids first): the server builds the answer on the bid thread.
    return api('GET', '/admin/history?top=' + MAX_LINE_ITEM_CHARTS + (h.to > 0 ? '&after=' + (h.to - 1) : '')).then(function (r) {
      if (r.status === 200 && r.json && r.json.to < h.to) {
        state.hist = emptyHistory(); // the bidder restarted: its points start again from 0
        return fetchHistory();
      }
      if (r.status === 200 && r.json) mergeHistory(r.json);
      state.hist.missing = r.status === 404;
      return r;
    });
  }

  /** Every series of the copy with its kind: fn(series, kind). */
  function eachSeries(h, fn) {
    for (var c in h.campaigns) {
      fn(h.campaigns[c], 'campaign');
      for (var a in h.campaigns[c].arms) fn(h.campaigns[c].arms[a], 'arm');
    }
    for (var l in h.lineItems) fn(h.lineItems[l], 'lineItem');
  }

  function mergeHistory(r) {
    var h = state.hist;
    if (h.to > 0 && r.from > h.to) h = state.hist = emptyHistory(); // points were missed: start over from these
    h.meta = { everyMs: r.everyMs, windowMs: r.windowMs, currency: r.currency, capacity: r.capacity };
    if (r.t.length) {
      h.idle = r.idleLineItems || [];
      h.omitted = r.omittedLineItems || 0;
    }
    h.to = r.to;
    var n0 = h.t.length, k = r.t.length;
    if (k === 0) return;
    Array.prototype.push.apply(h.t, r.t);
    var take = function (series, field, values) {
      var a = series[field];
      if (!a) { a = series[field] = []; for (var i = 0; i < n0; i++) a.push(null); }
      for (var j = 0; j < k; j++) a.push(values ? values[j] : null);
    };
    r.campaigns.forEach(function (c) {
      var s = h.campaigns[c.id] || (h.campaigns[c.id] = { id: c.id, arms: {} });
      s.name = c.name;
      s.dayBudgetMicros = c.dayBudgetMicros;
      s.armOrder = c.arms.map(function (a) { return a.lineItem; });
      take(s, 'spent', c.spentMicros);
      take(s, 'target', c.targetMicros);
      if (c.exploration !== undefined) take(s, 'exploration', c.exploration); // absent from an older bidder
      s.taken = true;
      c.arms.forEach(function (a) {
        var as = s.arms[a.lineItem] || (s.arms[a.lineItem] = { lineItem: a.lineItem });
        as.segment = a.segment;
        take(as, 'share', a.share);
        take(as, 'reason', a.reason);
        as.taken = true;
      });
    });
    r.lineItems.forEach(function (l) {
      var s = h.lineItems[l.id] || (h.lineItems[l.id] = { id: l.id });
      take(s, 'bids', l.bids);
      take(s, 'wins', l.wins);
      take(s, 'winRate', l.winRate);
      take(s, 'shading', l.shadingFactor);
      s.trials = l.shadingTrials;
      s.taken = true;
    });
    // Series absent from this increment are absent at its points; the copy keeps the server's ring length.
    var drop = Math.max(0, h.t.length - Math.max(MAX_POINTS, r.capacity || 0));
    if (drop > 0) h.t.splice(0, drop);
    eachSeries(h, function (s, kind) {
      FIELDS[kind].forEach(function (f) {
        if (f === 'exploration' && !s[f]) return; // optional: only a series the bidder sends is kept aligned
        if (!s.taken) take(s, f, null);
        if (drop > 0) s[f].splice(0, drop);
      });
      s.taken = false;
    });
  }

  function lastOf(a) {
    for (var i = a.length - 1; i >= 0; i--) if (a[i] !== null && a[i] !== undefined) return a[i];
    return null;
  }
  function countOf(a) { var n = 0; a.forEach(function (v) { if (v !== null && v !== undefined) n++; }); return n; }
  function seconds(t) { return t.map(function (x) { return x / 1000; }); }
  function units(a) { return a.map(function (v) { return v === null ? null : v / 1e6; }); }
  function percent(a) { return a.map(function (v) { return v === null ? null : v * 100; }); }

  /** Mixes a #rrggbb colour with white (an opaque tint, so that stacked areas do not blend). */
  function tint(hex, keep) {
    var n = parseInt(hex.slice(1), 16);
    var ch = function (shift) { return Math.round(((n >> shift) & 255) * keep + 255 * (1 - keep)); };
    return 'rgb(' + ch(16) + ',' + ch(8) + ',' + ch(0) + ')';
  }

  /** The box of one history chart (title, summary, plot), created once per key (first seen, first placed). */
  function chartBox(grid, key, title) {
    var box = grid.querySelector('[data-chart="' + CSS.escape(key) + '"]');
    if (!box) {
      box = el('div', { cls: 'mini', attrs: { 'data-chart': key } }, [el('h3', { text: title }), el('p', { cls: 'summary' }), el('div', { cls: 'plot' }), el('div', { cls: 'extra' })]);
      grid.appendChild(box);
    }
    box.querySelector('h3').textContent = title;
    return box;
  }

  /** Removes the boxes (and their charts) whose key is not kept. */
  function prune(grid, keep) {
    Array.prototype.slice.call(grid.querySelectorAll('[data-chart]')).forEach(function (box) {
      var key = box.getAttribute('data-chart');
      if (keep[key]) return;
      if (state.hcharts[key]) { state.hcharts[key].u.destroy(); delete state.hcharts[key]; }
      box.remove();
    });
  }

  /** Creates the chart, or feeds it new data; recreates it when its series changed (the signature). */
  function upsertChart(box, key, sig, makeOpts, data, mainSeries) {
    var c = state.hcharts[key];
    if (c && c.sig !== sig) { c.u.destroy(); c = null; }
    var plot = box.querySelector('.plot');
    if (!c) {
      plot.textContent = '';
      var opts = makeOpts(Math.max(240, plot.clientWidth || box.clientWidth || 320));
      c = state.hcharts[key] = { u: new uPlot(opts, data, plot), sig: sig };
    } else {
      c.u.setData(data);
    }
    box.setAttribute('data-points', String(countOf(data[mainSeries])));
  }

  /** Legend value: at the cursor, else the series' latest value (instead of a bare dash). */
  function legendValue(fmt) {
    return function (u, v, sidx, idx) {
      var x = idx === null || idx === undefined ? lastOf(u.data[sidx]) : v;
      return x === null || x === undefined ? '–' : fmt(x);
    };
  }
  function pctText(v) { return v.toFixed(1) + '%'; }

  function baseOpts(width, yRange, yFmt) {
    return {
      width: width,
      height: 200,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: yRange } },
      axes: [{ stroke: '#647084', grid: { stroke: '#eef0f4' } }, { stroke: '#647084', grid: { stroke: '#eef0f4' }, size: 64, values: function (u, vals) { return vals.map(yFmt); } }],
      series: [{}],
    };
  }

  function renderHistory(r) {
    if (typeof uPlot === 'undefined') return;
    var h = state.hist;
    if (h.missing || !h.meta) {
      var why = h.missing ? 'This bidder does not serve /admin/history.' : r && r.status ? 'History unavailable: ' + errorText(r) : 'History unavailable.';
      $('pacing-note').textContent = why;
      $('bidding-note').textContent = why;
      return;
    }
    var cur = h.meta.currency || '';
    var every = h.meta.everyMs / 1000;
    var xs = seconds(h.t);
    var pacingGrid = $('pacing-charts'), allocGrid = $('allocation-charts');
    var keepPacing = {}, keepAlloc = {};
    var ids = Object.keys(h.campaigns);
    $('pacing-note').textContent = ids.length
      ? 'Sampled every ' + every + ' s. Spend is what the ledger booked today (' + cur + '); the target is the day budget times the pacing curve at that time.'
      : 'No campaign in this config: budgets, pacing and the test-and-learn allocation show here once campaigns are configured.';
    ids.forEach(function (id) {
      var c = h.campaigns[id];
      // Spend vs target.
      var pkey = 'pacing:' + id;
      keepPacing[pkey] = true;
      var pbox = chartBox(pacingGrid, pkey, c.name + ' (' + id + ')');
      var spent = lastOf(c.spent), target = lastOf(c.target);
      pbox.querySelector('.summary').textContent =
        'spent ' + fmtMoney(spent === null ? null : spent / 1e6) + ' of target ' + fmtMoney(target === null ? null : target / 1e6) +
        (spent !== null && target > 0 ? ' (' + fmtPct(spent / target) + ')' : '') + ' · day budget ' + fmtMoney(c.dayBudgetMicros / 1e6) + ' ' + cur;
      upsertChart(pbox, pkey, 'p', function (w) {
        var o = baseOpts(w, function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; }, fmtMoney);
        o.series.push({ label: 'spent', stroke: '#1f8a4c', width: 2, fill: '#1f8a4c22', points: { show: false }, value: legendValue(fmtMoney) });
        o.series.push({ label: 'target', stroke: '#2f6fdf', width: 2, dash: [6, 4], points: { show: false }, value: legendValue(fmtMoney) });
        return o;
      }, [xs, units(c.spent), units(c.target)], 1);

      // Arm shares, stacked: series j is the sum of the shares of arms 0..j, drawn from the top down with
      // opaque fills, so the band between two curves is one arm's share.
      var akey = 'allocation:' + id;
      keepAlloc[akey] = true;
      var abox = chartBox(allocGrid, akey, c.name + ' (' + id + ')');
      var arms = (c.armOrder || Object.keys(c.arms)).map(function (li) { return c.arms[li]; }).filter(Boolean);
      var n = h.t.length;
      var cum = [], explore = [], guard = [], anyGuard = false;
      arms.forEach(function (a, j) {
        var row = [];
        for (var i = 0; i < n; i++) {
          var v = a.share[i];
          var below = j > 0 ? cum[j - 1][i] : 0;
          row.push(v === null || below === null ? null : below + v * 100);
        }
        cum.push(row);
      });
      for (var i = 0; i < n; i++) {
        var e = null, g = null;
        arms.forEach(function (a) {
          if (a.share[i] === null) return;
          e = (e || 0) + (a.reason[i] === 'explore' ? a.share[i] * 100 : 0);
          var isGuard = a.reason[i] === 'guard_rail_min' || a.reason[i] === 'guard_rail_max';
          if (isGuard) anyGuard = true;
          g = (g || 0) + (isGuard ? a.share[i] * 100 : 0);
        });
        // The campaign's exploration part (an arm labelled explore also holds its exploitation part, so the sum
        // of their shares overstates it); a bidder that does not send it: that sum.
        var ex = c.exploration ? c.exploration[i] : undefined;
        explore.push(ex === undefined ? e : ex === null ? null : ex * 100);
        guard.push(g);
      }
      var data = [xs];
      for (var j = arms.length - 1; j >= 0; j--) data.push(cum[j]);
      data.push(explore);
      if (anyGuard) data.push(guard);
      var sig = arms.map(function (a) { return a.lineItem; }).join(',') + (anyGuard ? '+g' : '');
      var exploring = lastOf(explore);
      abox.querySelector('.summary').textContent = arms.length + ' arms · exploration ' + (exploring === null ? '–' : exploring.toFixed(1) + ' %') + ' of the spend now';
      upsertChart(abox, akey, sig, function (w) {
        var o = baseOpts(w, function () { return [0, 100]; }, function (v) { return v + '%'; });
        var m = arms.length;
        // An arm's own share is its curve minus the one under it (series m is the bottom arm).
        var armShare = function (u, v, sidx, idx) {
          var i = idx;
          if (i === null || i === undefined) for (i = u.data[sidx].length - 1; i >= 0 && u.data[sidx][i] === null; i--);
          var top = i >= 0 ? u.data[sidx][i] : null;
          if (top === null || top === undefined) return '–';
          return (top - (sidx < m ? u.data[sidx + 1][i] || 0 : 0)).toFixed(1) + '%';
        };
        for (var j = m - 1; j >= 0; j--) {
          var color = PALETTE[j % PALETTE.length];
          o.series.push({ label: arms[j].lineItem, stroke: color, width: 1, fill: tint(color, 0.45), points: { show: false }, value: armShare });
        }
        o.series.push({ label: 'explore (total)', stroke: '#1d2330', width: 2, dash: [5, 4], points: { show: false }, value: legendValue(pctText) });
        if (anyGuard) o.series.push({ label: 'guard rails (total)', stroke: '#b3261e', width: 2, dash: [2, 3], points: { show: false }, value: legendValue(pctText) });
        return o;
      }, data, 1);
      // The arms now: share and reason, as text.
      var table = el('table', {}, [el('thead', {}, [el('tr', {}, [el('th', { text: 'Arm' }), el('th', { text: 'Segment' }), el('th', { text: 'Share', cls: 'num' }), el('th', { text: 'Reason' })])])]);
      var body = el('tbody');
      arms.forEach(function (a, j) {
        var reason = lastOf(a.reason), share = lastOf(a.share);
        var name = el('td');
        name.appendChild(el('span', { cls: 'swatch', style: { background: PALETTE[j % PALETTE.length] } }));
        name.appendChild(document.createTextNode(a.lineItem));
        var tr = el('tr', { attrs: { 'data-arm': a.lineItem, 'data-reason': reason || '' } }, [name, el('td', { text: a.segment || '–' }), el('td', { text: share === null ? '–' : fmtPct(share), cls: 'num' })]);
        var rc = el('td');
        rc.appendChild(el('span', { text: reason ? REASON_TEXT[reason] || reason : '–', cls: 'reason reason-' + (reason || 'none') }));
        tr.appendChild(rc);
        body.appendChild(tr);
      });
      table.appendChild(body);
      var extra = abox.querySelector('.extra');
      extra.textContent = '';
      extra.appendChild(table);
    });
    prune(pacingGrid, keepPacing);
    prune(allocGrid, keepAlloc);
    $('allocation-note').hidden = ids.length === 0;

    // Win rate and shading per line item: those with bids (most first), or with shading feedback.
    var grid = $('bidding-charts');
    var keep = {};
    var all = Object.keys(h.lineItems).map(function (k) { return h.lineItems[k]; });
    // Charted: the line items of the latest point (the server's top by bids); a line item that left it has a
    // null there.
    var active = all.filter(function (l) { var b = l.bids[l.bids.length - 1]; return b !== null && (b > 0 || l.trials > 0); });
    active.sort(function (a, b) { return (lastOf(b.bids) || 0) - (lastOf(a.bids) || 0); });
    var idle = h.idle; // the server's: no bid in its ring and no shading feedback
    var shown = active.slice(0, MAX_LINE_ITEM_CHARTS);
    var windowS = h.meta.windowMs / 1000;
    $('bidding-note').textContent =
      'Win rate: wins / bids over the last ' + windowS + ' s (bids are tallied every second and wins arrive one by one, so a point is capped at 100 %). ' +
      'Shading: the bid as a share of the value in first-price auctions, learned from win and loss notices (second-price bids are the value).' +
      (h.omitted > 0 || active.length > shown.length ? ' Showing the ' + shown.length + ' line items with most bids; ' + (h.omitted + active.length - shown.length) + ' more bid too.' : '') +
      (idle.length ? ' No bid yet: ' + idle.join(', ') + '.' : '');
    shown.forEach(function (l) {
      var key = 'line-item:' + l.id;
      keep[key] = true;
      var box = chartBox(grid, key, l.id);
      // The win rate now: the latest point (null: too few bids in the window), not the last one that had a rate.
      var wr = l.winRate.length ? l.winRate[l.winRate.length - 1] : null, sh = lastOf(l.shading);
      var windowSec = h.meta ? Math.round(h.meta.windowMs / 1000) : 60;
      box.querySelector('.summary').textContent =
        'bids ' + fmtInt(lastOf(l.bids)) + ' · wins ' + fmtInt(lastOf(l.wins)) + ' · win rate ' + (wr === null || wr === undefined ? '– (few bids in the last ' + windowSec + ' s)' : fmtPct(wr)) +
        ' · bids ' + fmtPct(sh) + ' of value' + (l.trials > 0 ? ' (learned)' : ' (prior)');
      upsertChart(box, key, 'w', function (w) {
        var o = baseOpts(w, function () { return [0, 100]; }, function (v) { return v + '%'; });
        o.series.push({ label: 'win rate', stroke: '#2f6fdf', width: 2, points: { show: true, size: 3 }, value: legendValue(pctText) });
        o.series.push({ label: 'bid / value', stroke: '#e07b00', width: 2, dash: [6, 3], points: { show: false }, value: legendValue(pctText) });
        return o;
      }, [xs, percent(l.winRate), percent(l.shading)], 1);
    });
    prune(grid, keep);
  }

  var KPI_COLUMNS = [
    { kpi: 'bids', label: 'Bids', fmt: fmtInt },
    { kpi: 'wins', label: 'Wins', fmt: fmtInt },
    { kpi: 'win_rate', label: 'Win rate', fmt: fmtPct },
    { kpi: 'impressions', label: 'Imps', fmt: fmtInt },
    { kpi: 'clicks', label: 'Clicks', fmt: fmtInt },
    { kpi: 'ctr', label: 'CTR', fmt: function (v) { return fmtPct(v, 2); } },
    { kpi: 'conversions', label: 'Conv.', fmt: fmtInt },
    { kpi: 'spend', label: 'Spend', fmt: fmtMoney },
    { kpi: 'cpm', label: 'CPM', fmt: fmtMoney },
    { kpi: 'cpa', label: 'CPA', fmt: fmtMoney },
    { kpi: 'roas', label: 'ROAS', fmt: fmtRatio },
  ];

  function kpiHeader(thead, before, after, definitions) {
    thead.textContent = '';
    var tr = el('tr');
    before.forEach(function (h) { tr.appendChild(el('th', { text: h })); });
    KPI_COLUMNS.forEach(function (c) {
      var def = definitions && definitions[c.kpi];
      tr.appendChild(el('th', { text: c.label, cls: 'num', attrs: def ? { title: def.formula } : {} }));
    });
    (after || []).forEach(function (h) { tr.appendChild(el('th', { text: h })); });
    thead.appendChild(tr);
  }

  function kpiCells(tr, row) {
    KPI_COLUMNS.forEach(function (c) {
      var v = row ? row.kpis[c.kpi] : null;
      tr.appendChild(el('td', { text: row ? c.fmt(v) : '–', cls: 'num' + (row ? '' : ' muted'), attrs: { 'data-kpi': c.kpi } }));
    });
  }

  function targetingText(t) {
    if (t === undefined || t === null) return 'everyone';
    if (typeof t === 'string') return t;
    if (t.all) return t.all.length === 1 ? targetingText(t.all[0]) : '(' + t.all.map(targetingText).join(' and ') + ')';
    if (t.any) return t.any.length === 1 ? targetingText(t.any[0]) : '(' + t.any.map(targetingText).join(' or ') + ')';
    if (t.none) return 'not ' + (t.none.length === 1 ? targetingText(t.none[0]) : '(' + t.none.map(targetingText).join(' or ') + ')');
    return JSON.stringify(t);
  }

  /** Segment ids a targeting expression names, each with whether it is excluded (under an odd number of none). */
  function mentions(t, out, negated) {
    if (typeof t === 'string') out.push({ id: t, excluded: !!negated });
    else if (t && typeof t === 'object') {
      ['all', 'any'].forEach(function (k) { (t[k] || []).forEach(function (x) { mentions(x, out, negated); }); });
      (t.none || []).forEach(function (x) { mentions(x, out, !negated); });
    }
    return out;
  }

  function renderTree(config, seg, report) {
    var table = $('tree');
    kpiHeader(table.tHead, ['Segment', 'Line items'], [], report.definitions);
    var body = table.tBodies[0];
    body.textContent = '';
    $('tree-note').textContent = seg.note || 'KPIs of a node include its whole subtree (every event counts for the user\'s segment and its ancestors).';
    var byKey = {};
    report.rows.forEach(function (r) { byKey[r.key] = r; });
    var targeting = {};
    (config.lineItems || []).forEach(function (li) {
      mentions(li.targeting, [], false).forEach(function (m) { (targeting[m.id] = targeting[m.id] || []).push(m.excluded ? 'not ' + li.id : li.id); });
    });
    var shown = {};
    var addRow = function (id, name, kind, depth) {
      shown[id] = true;
      var tr = el('tr', { attrs: { 'data-segment': id } });
      var cell = el('td', { style: { paddingLeft: 8 + depth * 18 + 'px' } });
      cell.appendChild(el('span', { text: (depth > 0 ? '└ ' : '') + (name || id), attrs: { title: id } }));
      if (kind) cell.appendChild(el('span', { text: kind, cls: 'kind' }));
      tr.appendChild(cell);
      tr.appendChild(el('td', { text: (targeting[id] || []).join(', ') || '–', cls: targeting[id] ? '' : 'muted' }));
      kpiCells(tr, byKey[id]);
      body.appendChild(tr);
    };
    if (seg.segments) {
      var children = {};
      var ids = {};
      seg.segments.forEach(function (s) { ids[s.id] = true; });
      seg.segments.forEach(function (s) {
        var p = s.parent && ids[s.parent] ? s.parent : '';
        (children[p] = children[p] || []).push(s);
      });
      var walk = function (parent, depth) {
        (children[parent] || []).forEach(function (s) {
          if (shown[s.id] || depth > 31) return;
          addRow(s.id, s.name, s.kind, depth);
          walk(s.id, depth + 1);
        });
      };
      walk('', 0);
    }
    report.rows.forEach(function (r) {
      if (!shown[r.key]) addRow(r.key, r.key === '(none)' ? 'users in no segment' : r.key, r.key === '(none)' || r.key === 'other' ? '' : seg.segments ? 'not in tree' : '', 0);
    });
    var tr = el('tr', { cls: 'total' });
    tr.appendChild(el('td', { text: 'All traffic' }));
    tr.appendChild(el('td', { text: '' }));
    kpiCells(tr, report.total);
    body.appendChild(tr);
  }

  function renderLineItems(config, report) {
    var table = $('line-items');
    kpiHeader(table.tHead, ['Line item', 'Targeting', 'Bid CPM', 'State', ''], [], report.definitions);
    var body = table.tBodies[0];
    body.textContent = '';
    var byKey = {};
    report.rows.forEach(function (r) { byKey[r.key] = r; });
    (config.lineItems || []).forEach(function (li) {
      var active = li.active !== false;
      var tr = el('tr', { attrs: { 'data-line-item': li.id } });
      var name = el('td');
      name.appendChild(el('div', { text: li.id }));
      if (li.name) name.appendChild(el('div', { text: li.name, cls: 'hint' }));
      tr.appendChild(name);
      tr.appendChild(el('td', { text: targetingText(li.targeting) }));
      tr.appendChild(el('td', { text: li.bid && typeof li.bid.cpm === 'number' ? li.bid.cpm.toFixed(2) : '–', cls: 'num' }));
      tr.appendChild(el('td', { text: active ? 'active' : 'paused', cls: active ? 'state-active' : 'state-paused', attrs: { 'data-state': active ? 'active' : 'paused' } }));
      var button = el('button', { text: active ? 'Pause' : 'Resume', cls: active ? '' : 'resume', attrs: { type: 'button', 'data-line-item': li.id } });
      button.addEventListener('click', function () { setActive(li.id, !active, button); });
      var cell = el('td');
      cell.appendChild(button);
      tr.appendChild(cell);
      kpiCells(tr, byKey[li.id]);
      body.appendChild(tr);
    });
  }

  function setActive(id, active, button) {
    button.disabled = true;
    api('PATCH', '/admin/line-items/' + encodeURIComponent(id), { active: active }).then(function (r) {
      if (r.status === 200) {
        flash(id + (active ? ' resumed' : ' paused') + (r.json && r.json.version ? ' (config version ' + r.json.version.id + ')' : '') + '.', 'info');
      } else if (r.status === 403) {
        flash('Refused (403): this token is read-only; pausing or resuming a line item needs a write token. ' + errorText(r));
      } else {
        flash('Could not change ' + id + ': ' + errorText(r));
      }
      button.disabled = false;
      start();
    }, function (e) {
      button.disabled = false;
      flash('Could not reach the bidder: ' + e.message);
    });
  }

  function renderDiscrepancies(d) {
    var body = $('discrepancies').tBodies[0];
    body.textContent = '';
    var rows = (d && d.rows) || [];
    $('disc-threshold').textContent = d ? '(threshold ' + (d.threshold * 100).toFixed(1) + ' %)' : '';
    if (!rows.length) {
      var tr0 = el('tr');
      tr0.appendChild(el('td', { text: 'No delivered line item yet.', cls: 'muted', attrs: { colspan: 8 } }));
      body.appendChild(tr0);
      return;
    }
    rows.forEach(function (r) {
      var tr = el('tr', { cls: r.flagged ? 'flagged' : '' });
      [r.day, r.lineItem].forEach(function (v) { tr.appendChild(el('td', { text: v })); });
      [r.wins, r.billed, r.impressions].forEach(function (v) { tr.appendChild(el('td', { text: fmtInt(v), cls: 'num' })); });
      [r.winsVsBilled, r.billedVsRendered].forEach(function (v) { tr.appendChild(el('td', { text: fmtPct(v), cls: 'num' })); });
      tr.appendChild(el('td', { text: r.flagged ? 'over threshold' : 'ok', cls: r.flagged ? 'error' : 'state-active' }));
      body.appendChild(tr);
    });
  }

  // ---------------------------------------------------------------------------------------------- /metrics
  /** Prometheus text -> [{name, labels, value}] (comments skipped). */
  function parseMetrics(text) {
    var out = [];
    text.split('\n').forEach(function (line) {
      if (!line || line.charAt(0) === '#') return;
      var m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) return;
      var labels = {};
      if (m[3]) {
        var re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g, l;
        while ((l = re.exec(m[3])) !== null) labels[l[1]] = l[2].replace(/\\"/g, '"').replace(/\\n/g, ' ').replace(/\\\\/g, '\\');
      }
      out.push({ name: m[1], labels: labels, value: Number(m[4]) });
    });
    return out;
  }

  function renderMetrics(text) {
    var samples = parseMetrics(text);
    var now = Date.now() / 1000;
    var req = {};
    var decisionSum = 0, decisionCount = 0;
    samples.forEach(function (s) {
      if (s.name === 'segbid_bid_requests_total') req[(s.labels.outcome || '') + '\u0000' + (s.labels.reason || '')] = s.value;
      else if (s.name === 'segbid_decision_seconds_sum') decisionSum += s.value;
      else if (s.name === 'segbid_decision_seconds_count') decisionCount += s.value;
    });
    var prev = state.prevMetrics;
    var dt = prev ? now - prev.at : 0;
    var sum = function (map, pred) { var t = 0; for (var k in map) if (pred(k)) t += map[k]; return t; };
    var all = function () { return true; };
    var isBid = function (k) { return k.split('\u0000')[0] === 'bid'; };
    var isNoBid = function (k) { return k.split('\u0000')[0] !== 'bid'; };
    var totalNow = sum(req, all);
    if (prev && dt > 0) {
      var d = function (pred) { return Math.max(0, sum(req, pred) - sum(prev.req, pred)); };
      var dAll = d(all);
      $('qps').textContent = fmtRate(dAll / dt);
      $('bps').textContent = fmtRate(d(isBid) / dt);
      $('nobid-share').textContent = dAll > 0 ? fmtPct(d(isNoBid) / dAll) : totalNow > 0 ? fmtPct(sum(req, isNoBid) / totalNow) : '–';
      var dc = decisionCount - prev.decisionCount;
      var mean = dc > 0 ? (decisionSum - prev.decisionSum) / dc : decisionCount > 0 ? decisionSum / decisionCount : null;
      $('decision').textContent = mean === null ? '–' : (mean * 1e6).toFixed(0) + ' µs';
    } else {
      $('nobid-share').textContent = totalNow > 0 ? fmtPct(sum(req, isNoBid) / totalNow) : '–';
    }
    var body = $('reasons').tBodies[0];
    body.textContent = '';
    Object.keys(req).sort(function (a, b) { return req[b] - req[a]; }).forEach(function (k) {
      if (isBid(k) || req[k] === 0) return;
      var parts = k.split('\u0000');
      var tr = el('tr');
      tr.appendChild(el('td', { text: parts[0] }));
      tr.appendChild(el('td', { text: parts[1] || '–' }));
      tr.appendChild(el('td', { text: fmtInt(req[k]), cls: 'num' }));
      tr.appendChild(el('td', { text: prev && dt > 0 ? fmtRate(Math.max(0, req[k] - (prev.req[k] || 0)) / dt) : '–', cls: 'num' }));
      body.appendChild(tr);
    });
    if (!body.children.length) {
      var tr0 = el('tr');
      tr0.appendChild(el('td', { text: 'No no-bid yet.', cls: 'muted', attrs: { colspan: 4 } }));
      body.appendChild(tr0);
    }
    state.prevMetrics = { at: now, req: req, decisionSum: decisionSum, decisionCount: decisionCount };
  }

  // ---------------------------------------------------------------------------------------------- start
  if (state.token) { showApp(); start(); } else showLogin('');
})();
`;
