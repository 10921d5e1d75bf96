/**
 * The trader console: one static page (HTML, CSS, JS as strings) served by the operations port at /console
 * (src/server/console-routes.ts). No build step, nothing fetched from the internet: the page loads uPlot from
 * /console/uplot.js and /console/uplot.css (copied from node_modules at server start) and its own script.
 *
 * Contract of the page (src/admin/console/console-script.ts):
 *   - asks for an admin token (kept in sessionStorage only, sent as `Authorization: Bearer`);
 *   - polls /admin/config, /admin/kpis (segment and line_item dimensions, discrepancies included), the
 *     increments of /admin/history (the server's time series: spend vs pacing target per campaign, arm shares
 *     and reasons, win rate and shading per line item) and the unauthenticated /metrics every few seconds
 *     (`?every=<ms>` overrides, at least 500 ms);
 *   - every value from the server reaches the DOM through textContent (never innerHTML with data);
 *   - pause/resume = PATCH /admin/line-items/:id {"active": ...}; a 403 (read-only token) is shown as is.
 */
export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>segbid · trader console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/uplot.css">
<link rel="stylesheet" href="/console/console.css">
</head>
<body>
<header>
  <h1>segbid <span class="sub">trader console</span></h1>
  <div id="status" class="status" role="status"></div>
  <button id="logout" type="button" class="quiet" hidden>Sign out</button>
</header>
<div id="flash" class="flash" role="alert" hidden></div>
<section id="login" class="card login" hidden>
  <h2>Sign in</h2>
  <p>Paste an admin token of this bidder (<code>SEGBID_ADMIN_TOKENS</code>). A read token shows everything; pausing a line item needs a write token.</p>
  <form id="login-form">
    <label for="token">Token</label>
    <input id="token" name="token" type="password" autocomplete="off" required minlength="16">
    <button type="submit">Sign in</button>
  </form>
  <p id="login-error" class="error" hidden></p>
</section>
<main id="app" hidden>
  <section class="card live">
    <h2>Live</h2>
    <div class="tiles">
      <div class="tile"><span class="label">Requests / s</span><span id="qps" class="value">–</span></div>
      <div class="tile"><span class="label">Bids / s</span><span id="bps" class="value">–</span></div>
      <div class="tile"><span class="label">No-bid share</span><span id="nobid-share" class="value">–</span></div>
      <div class="tile"><span class="label">Mean decision</span><span id="decision" class="value">–</span></div>
      <div class="tile"><span class="label">Win rate</span><span id="total-winrate" class="value">–</span></div>
      <div class="tile"><span class="label">Spend</span><span id="total-spend" class="value">–</span></div>
    </div>
    <h3>No-bid reasons <span class="hint">(since start; per second over the last poll)</span></h3>
    <table id="reasons"><thead><tr><th>Outcome</th><th>Reason</th><th class="num">Total</th><th class="num">/ s</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="card chart"><h2>Win rate <span class="hint">(wins / bids; bids are tallied in batches, so a fresh point can overshoot)</span></h2><div id="chart-winrate" class="plot"></div></section>
  <section class="card chart"><h2>Spend <span class="hint" id="currency"></span></h2><div id="chart-spend" class="plot"></div></section>
  <section class="card wide" id="pacing">
    <h2>Spend and pacing <span class="hint">(per campaign, today: spend booked vs the pacing target curve)</span></h2>
    <p class="hint" id="pacing-note"></p>
    <div id="pacing-charts" class="charts-grid"></div>
  </section>
  <section class="card wide" id="allocation">
    <h2>Test-and-learn allocation <span class="hint">(per campaign: each arm's share of the spend over time, stacked)</span></h2>
    <p class="hint" id="allocation-note">Explore: budget kept for arms with too little evidence; exploit: share from the posterior (Thompson); guard rail: a segment's minimum or maximum share applied last. The dashed line is the total share in exploration.</p>
    <div id="allocation-charts" class="charts-grid"></div>
  </section>
  <section class="card wide" id="bidding">
    <h2>Win rate and shading <span class="hint">(per line item)</span></h2>
    <p class="hint" id="bidding-note"></p>
    <div id="bidding-charts" class="charts-grid"></div>
  </section>
  <section class="card wide">
    <h2>Segmentation tree</h2>
    <p class="hint" id="tree-note"></p>
    <div class="scroll"><table id="tree"><thead></thead><tbody></tbody></table></div>
  </section>
  <section class="card wide">
    <h2>Line items</h2>
    <div class="scroll"><table id="line-items"><thead></thead><tbody></tbody></table></div>
  </section>
  <section class="card wide">
    <h2>Discrepancies <span class="hint" id="disc-threshold"></span></h2>
    <p class="hint">Wins (nurl) vs billed (burl) vs rendered (pixel), per day and line item. Flagged rows are over the threshold.</p>
    <div class="scroll"><table id="discrepancies"><thead><tr><th>Day</th><th>Line item</th><th class="num">Wins</th><th class="num">Billed</th><th class="num">Rendered</th><th class="num">Wins vs billed</th><th class="num">Billed vs rendered</th><th>Flag</th></tr></thead><tbody></tbody></table></div>
  </section>
</main>
<script src="/console/uplot.js"></script>
<script src="/console/console.js"></script>
</body>
</html>
`;

export const CONSOLE_CSS = `:root {
  --bg: #f5f6f8; --card: #fff; --ink: #1d2330; --muted: #647084; --line: #e1e4ea; --accent: #2f6fdf;
  --ok: #1f8a4c; --warn: #b3261e; --paused: #8a5a00;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 14px; color: var(--ink); background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
header { display: flex; align-items: center; gap: 16px; padding: 10px 20px; background: #1d2330; color: #fff; }
header h1 { font-size: 18px; margin: 0; font-weight: 600; }
header .sub { font-weight: 400; color: #aeb6c6; }
header .status { margin-left: auto; color: #aeb6c6; font-size: 12px; }
button { font: inherit; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 4px; padding: 4px 10px; cursor: pointer; }
button.quiet { background: transparent; border-color: #aeb6c6; color: #fff; }
button.resume { background: #fff; color: var(--accent); }
button:disabled { opacity: .5; cursor: default; }
main { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 14px; padding: 14px 20px 30px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; min-width: 0; }
.card.wide { grid-column: 1 / -1; }
.card h2 { font-size: 15px; margin: 0 0 8px; }
.card h3 { font-size: 13px; margin: 12px 0 6px; }
.hint { color: var(--muted); font-size: 12px; font-weight: 400; margin: 0 0 6px; }
.login { max-width: 460px; margin: 60px auto; }
.login form { display: flex; gap: 8px; align-items: center; }
.login input { flex: 1; font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 4px; }
.error { color: var(--warn); }
.flash { margin: 10px 20px 0; padding: 8px 12px; border-radius: 4px; background: #fdecea; color: var(--warn); border: 1px solid #f3c1bc; }
.flash.info { background: #e8f1fd; color: #174a9c; border-color: #bcd3f5; }
.tiles { display: grid; grid-template-columns: repeat(3, 1fr); gap: 8px; }
.tile { border: 1px solid var(--line); border-radius: 4px; padding: 6px 8px; }
.tile .label { display: block; color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .03em; }
.tile .value { font-size: 18px; font-variant-numeric: tabular-nums; }
.plot { min-height: 220px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
#line-items button { min-width: 70px; }
td.muted { color: var(--muted); }
tr.total td { font-weight: 600; }
tr.flagged td { background: #fdf3f2; }
.state-active { color: var(--ok); }
.state-paused { color: var(--paused); font-weight: 600; }
.kind { display: inline-block; font-size: 11px; color: var(--muted); border: 1px solid var(--line); border-radius: 3px; padding: 0 4px; margin-left: 6px; }
.charts-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 12px; }
.mini { border: 1px solid var(--line); border-radius: 4px; padding: 8px 10px; min-width: 0; }
.mini h3 { margin: 0 0 2px; font-size: 13px; }
.mini .summary { color: var(--muted); font-size: 12px; margin: 0 0 6px; font-variant-numeric: tabular-nums; }
.mini .plot { min-height: 200px; }
.mini table { margin-top: 6px; font-size: 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: baseline; }
.reason { display: inline-block; font-size: 11px; border-radius: 3px; padding: 0 5px; border: 1px solid var(--line); }
.reason-explore { background: #fff4e0; color: #8a5a00; border-color: #f0d6a8; }
.reason-exploit { background: #e8f1fd; color: #174a9c; border-color: #bcd3f5; }
.reason-guard_rail_min, .reason-guard_rail_max { background: #fdecea; color: var(--warn); border-color: #f3c1bc; }
@media (max-width: 1000px) { main { grid-template-columns: 1fr; } }
`;
