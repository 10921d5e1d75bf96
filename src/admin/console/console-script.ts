/**
 * The trader console's browser script (plain ES2020, no bundler), served as /console/console.js.
 *
 * Contract: reads only the admin API and /metrics of the origin that served it; keeps the token in
 * sessionStorage; inserts server data into the DOM with textContent only; redraws every poll without reloading
 * the page; keeps a client-side time series of the polled totals (win rate, spend) for the uPlot charts.
 * Element ids used by the browser test: #token, #login-form, #tree, #line-items, #discrepancies, #flash,
 * button[data-line-item="<id>"], td[data-kpi="wins"].
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
  });

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
