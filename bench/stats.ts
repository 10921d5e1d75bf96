/**
 * Small helpers shared by the benches: percentiles of raw samples, medians across rounds, the machine
 * description printed with every result, and number formatting for the tables. No I/O besides reading os info.
 */
import { cpus, totalmem, platform, arch, release, loadavg } from 'node:os';

/** Percentile (q in [0, 100]) of samples sorted ascending; nearest-rank, so it is always an observed value. */
export function percentileSorted(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((q / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Sorts a copy of the first `n` samples (a typed array sorts numerically, unlike Array#sort). */
export function sortedSamples(samples: Float64Array, n = samples.length): Float64Array {
  return samples.slice(0, n).sort();
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** A growable sample buffer: recording a value is one typed-array store, no allocation per sample. */
export class Samples {
  private buf: Float64Array;
  length = 0;
  constructor(capacity = 1 << 16) {
    this.buf = new Float64Array(capacity);
  }
  push(v: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }
  reset(): void {
    this.length = 0;
  }
  sorted(): Float64Array {
    return sortedSamples(this.buf, this.length);
  }
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memGiB: number;
  node: string;
  v8: string;
  os: string;
  /** 1-minute load average when the bench started: above ~0.5 something else was running. */
  loadAvg1: number;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    v8: process.versions.v8,
    os: `${platform()} ${release()} ${arch()}`,
    loadAvg1: Math.round(loadavg()[0] * 100) / 100,
  };
}

export function describeMachine(m: MachineInfo): string {
  return `machine: ${m.cpus} cpus (${m.cpuModel}), ${m.memGiB} GiB, ${m.os}, node ${m.node} (v8 ${m.v8}), load average ${m.loadAvg1}`;
}

/** Fixed decimals, for table cells. */
export function fmt(v: number, digits = 2): string {
  return Number.isFinite(v) ? v.toFixed(digits) : '-';
}

/** Renders rows as a space-aligned text table (first row = header). */
export function textTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ')).join('\n');
}

/** Renders rows as a Markdown table (first row = header). */
export function markdownTable(rows: readonly (readonly string[])[]): string {
  const [head, ...body] = rows;
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`];
  for (const row of body) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}
