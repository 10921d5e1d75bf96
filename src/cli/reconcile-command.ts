/**
 * `segbid reconcile --report FILE [--threshold 0.05] [--kpis-from LOG_DIR] [--map ...] [--measure billed] [--json]`
 *
 * Rebuilds the bidder's counts from the event log (the same KpiStore.apply path as live), compares them with
 * an external CSV report per day and line item or deal (columns: src/events/reconcile.ts), prints the gap of
 * each row (absolute and relative) and flags the rows over the threshold. Exit code 0 whatever the gaps (a
 * discrepancy is information, not a failure); 1 only when an input cannot be read.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { SegbidError } from '../common/errors.js';
import { replayEventLog } from '../events/event-log.js';
import { KpiStore } from '../events/kpis.js';
import { formatReconcile, parseExternalReport, parseMapping, reconcile, type ImpressionMeasure } from '../events/reconcile.js';

function threshold(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('a threshold is a non-negative fraction, e.g. 0.05 for 5%');
  return n;
}

interface ReconcileOptions {
  report: string;
  threshold: number;
  kpisFrom: string;
  map?: string;
  measure: ImpressionMeasure;
  json: boolean;
}

export function registerReconcileCommand(program: Command): void {
  program
    .command('reconcile')
    .description('compare an external report (CSV per day and line item or deal) with the counts rebuilt from the event log; flag gaps over the threshold')
    .requiredOption('--report <file>', 'external report, CSV with a header: date, line_item or deal, impressions, spend')
    .option('--threshold <fraction>', 'relative gap above which a row is flagged', threshold, 0.05)
    .option('--kpis-from <dir>', 'event log directory ($SEGBID_EVENT_LOG_DIR sets the default)', process.env.SEGBID_EVENT_LOG_DIR ?? 'var/events')
    .option('--map <mapping>', 'header mapping, e.g. "date=Day,line_item=Campaign,impressions=Paid Imps,spend=Cost"')
    .addOption(new Option('--measure <which>', 'bidder impressions compared: billed (burl), rendered (pixel) or wins').choices(['billed', 'rendered', 'wins']).default('billed'))
    .option('--json', 'print the result as JSON', false)
    .action((opts: ReconcileOptions) => {
      try {
        let text: string;
        try {
          text = readFileSync(opts.report, 'utf8');
        } catch (e) {
          throw new SegbidError('RECONCILE_INPUT', `cannot read report ${opts.report}: ${(e as Error).message}`);
        }
        const report = parseExternalReport(text, opts.map !== undefined ? parseMapping(opts.map) : {});
        // Daily tables only: no need for the segmentation or exchanges, but no cap on keys either.
        const store = new KpiStore({ maxKeysPerDimension: Number.MAX_SAFE_INTEGER, maxDays: Number.MAX_SAFE_INTEGER, discrepancyThreshold: opts.threshold });
        // A bidder with --workers N logs into worker-0 ... worker-(N-1) under its log directory: all of them count.
        let segments = 0;
        let corrupt = 0;
        for (const dir of eventLogDirs(opts.kpisFrom)) {
          const stats = replayEventLog(dir, (r) => store.apply(r));
          segments += stats.segments;
          corrupt += stats.corruptSegments;
        }
        if (segments === 0) process.stderr.write(`segbid reconcile: no event log segment in ${opts.kpisFrom}: the bidder counts are all zero\n`);
        if (corrupt > 0) process.stderr.write(`segbid reconcile: ${corrupt} damaged segment(s) in ${opts.kpisFrom}: their tails were skipped\n`);
        const result = reconcile(report, store, { threshold: opts.threshold, measure: opts.measure });
        process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : formatReconcile(result));
      } catch (e) {
        if (e instanceof SegbidError) {
          process.stderr.write(`segbid reconcile: ${e.code}: ${e.message}\n`);
          process.exitCode = 1;
          return;
        }
        throw e;
      }
    });
}

/** The log directory and its workers' subdirectories (`worker-<n>`, written by `serve --workers N`), sorted. */
export function eventLogDirs(dir: string): string[] {
  let workers: string[] = [];
  try {
    workers = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && /^worker-\d+$/.test(e.name))
      .map((e) => join(dir, e.name))
      .sort();
  } catch {
    // a missing directory: replayEventLog says so (an empty log)
  }
  return [dir, ...workers];
}
