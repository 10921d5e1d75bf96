/**
 * Self-contained SVG charts for the simulator report (no library): line charts, a stacked area chart and a
 * grouped bar chart. Plain string building; the output is embedded inline in sim-results/report.html.
 */
export interface Series {
  name: string;
  color: string;
  points: [number, number][];
  dashed?: boolean;
}

const W = 760;
const H = 300;
const M = { l: 60, r: 170, t: 30, b: 40 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function frame(title: string, xLabel: string, yLabel: string, xMax: number, yMax: number, yFmt: (v: number) => string): string {
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  let s = `<text x="${M.l}" y="18" font-size="14" font-weight="bold">${esc(title)}</text>`;
  s += `<line x1="${M.l}" y1="${M.t + ph}" x2="${M.l + pw}" y2="${M.t + ph}" stroke="#333"/><line x1="${M.l}" y1="${M.t}" x2="${M.l}" y2="${M.t + ph}" stroke="#333"/>`;
  for (let i = 0; i <= 4; i++) {
    const y = M.t + ph - (ph * i) / 4;
    s += `<line x1="${M.l}" y1="${y}" x2="${M.l + pw}" y2="${y}" stroke="#ddd"/><text x="${M.l - 6}" y="${y + 4}" font-size="10" text-anchor="end">${esc(yFmt((yMax * i) / 4))}</text>`;
  }
  const xt = xMax <= 24 ? 6 : 5;
  for (let i = 0; i <= xt; i++) {
    const x = M.l + (pw * i) / xt;
    s += `<text x="${x}" y="${M.t + ph + 14}" font-size="10" text-anchor="middle">${esc(String(Math.round(((xMax * i) / xt) * 10) / 10))}</text>`;
  }
  s += `<text x="${M.l + pw / 2}" y="${H - 6}" font-size="11" text-anchor="middle">${esc(xLabel)}</text>`;
  s += `<text x="14" y="${M.t + ph / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 14 ${M.t + ph / 2})">${esc(yLabel)}</text>`;
  return s;
}

function legend(items: { name: string; color: string; dashed?: boolean }[]): string {
  return items
    .map((it, i) => {
      const y = M.t + 10 + i * 16;
      const x = W - M.r + 12;
      return `<line x1="${x}" y1="${y}" x2="${x + 18}" y2="${y}" stroke="${it.color}" stroke-width="3"${it.dashed ? ' stroke-dasharray="5 3"' : ''}/><text x="${x + 24}" y="${y + 4}" font-size="10">${esc(it.name)}</text>`;
    })
    .join('');
}

export function lineChart(title: string, xLabel: string, yLabel: string, series: Series[], yFmt: (v: number) => string = (v) => v.toFixed(2)): string {
  const xMax = Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[0])));
  const yMax = Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[1]))) * 1.05;
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  let s = frame(title, xLabel, yLabel, xMax, yMax, yFmt);
  for (const se of series) {
    const d = se.points.map((p, i) => `${i ? 'L' : 'M'}${(M.l + (p[0] / xMax) * pw).toFixed(1)},${(M.t + ph - (p[1] / yMax) * ph).toFixed(1)}`).join('');
    s += `<path d="${d}" fill="none" stroke="${se.color}" stroke-width="2"${se.dashed ? ' stroke-dasharray="5 3"' : ''}/>`;
  }
  s += legend(series);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">${s}</svg>`;
}

/** Stacked areas of shares (each x: values summing to about 1). */
export function stackedChart(title: string, xLabel: string, names: string[], colors: string[], xs: number[], rows: number[][]): string {
  const xMax = Math.max(1e-9, ...xs);
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  let s = frame(title, xLabel, 'share', xMax, 1, (v) => `${Math.round(v * 100)}%`);
  const base = xs.map(() => 0);
  names.forEach((name, k) => {
    const top = xs.map((_, i) => base[i] + rows[i][k]);
    const X = (i: number) => (M.l + (xs[i] / xMax) * pw).toFixed(1);
    const Y = (v: number) => (M.t + ph - Math.min(1, v) * ph).toFixed(1);
    let d = xs.map((_, i) => `${i ? 'L' : 'M'}${X(i)},${Y(top[i])}`).join('');
    for (let i = xs.length - 1; i >= 0; i--) d += `L${X(i)},${Y(base[i])}`;
    s += `<path d="${d}Z" fill="${colors[k]}" fill-opacity="0.8" stroke="none"/>`;
    for (let i = 0; i < xs.length; i++) base[i] = top[i];
  });
  s += legend(names.map((n, k) => ({ name: n, color: colors[k] })));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">${s}</svg>`;
}

/** Grouped bars: groups (x) x members (colored). */
export function barChart(title: string, yLabel: string, groups: string[], members: string[], colors: string[], values: number[][], yFmt: (v: number) => string): string {
  const yMax = Math.max(1e-9, ...values.flat()) * 1.1;
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  let s = frame(title, '', yLabel, 1, yMax, yFmt).replace(/<text x="[^"]*" y="[^"]*" font-size="10" text-anchor="middle">[^<]*<\/text>/g, '');
  const gw = pw / groups.length;
  const bw = (gw * 0.8) / members.length;
  groups.forEach((g, i) => {
    members.forEach((_, k) => {
      const v = values[i][k];
      const h = (v / yMax) * ph;
      s += `<rect x="${(M.l + i * gw + gw * 0.1 + k * bw).toFixed(1)}" y="${(M.t + ph - h).toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="${colors[k]}"/>`;
    });
    s += `<text x="${(M.l + i * gw + gw / 2).toFixed(1)}" y="${M.t + ph + 14}" font-size="10" text-anchor="middle">${esc(g)}</text>`;
  });
  s += legend(members.map((n, k) => ({ name: n, color: colors[k] })));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">${s}</svg>`;
}
