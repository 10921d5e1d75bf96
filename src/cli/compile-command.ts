/**
 * `segbid compile`: compiles the strategic segmentation over a CRM export into a segment store file (and
 * optionally fills a Redis segment store), then prints the volume report per segment on stdout.
 *
 *   segbid compile --segments segmentation.json --crm crm.csv [--ids ids.csv] --out segments.store \
 *                  [--to-redis redis://127.0.0.1:6379] [--min-activation 1000] [--eid-source crm.example]
 *
 * Exit codes: 0 done (warnings included), 2 invalid input (segmentation, unreadable files: SegbidError),
 * 1 anything else (e.g. Redis unreachable for --to-redis; the store file is written before Redis is tried).
 * The progress bar goes to stderr, only on a TTY and not under CI=true.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { SegbidError } from '../common/errors.js';
import { compileFiles } from '../segments/compiler/compile-files.js';
import { formatReport } from '../segments/compiler/report.js';

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('a non-negative integer');
  return n;
}

function isoDate(value: string): string {
  if (Number.isNaN(Date.parse(value))) throw new InvalidArgumentError('an ISO 8601 timestamp');
  return value;
}

interface CompileOptions {
  segments: string;
  crm: string;
  ids?: string;
  out: string;
  toRedis?: string;
  redisTtl?: number;
  minActivation: number;
  eidSource?: string;
  crmFormat?: 'csv' | 'ndjson';
  idsFormat?: 'csv' | 'ndjson';
  createdAt?: string;
  progress: boolean;
}

export function registerCompileCommand(program: Command): void {
  program
    .command('compile')
    .description('compile the segmentation over a CRM export into a segment store (and Redis), print the volume report')
    .requiredOption('--segments <file>', 'segmentation tree with rules (JSON or YAML)')
    .requiredOption('--crm <file>', 'CRM export: CSV with a header line (.csv) or NDJSON (.ndjson/.jsonl)')
    .option('--ids <file>', 'id map (CSV/NDJSON: crm_id, kind, value[, source]); default: the CRM columns buyeruid, ifa, email_sha256')
    .requiredOption('--out <file>', 'segment store file to write')
    .option('--to-redis <url>', 'also fill a Redis segment store (keys sgb:<hi>:<lo>, header sgb:header)')
    .option('--redis-ttl <seconds>', 'expire the Redis keys after this many seconds', nonNegativeInt)
    .option('--min-activation <n>', 'warn about segments with fewer activable users', nonNegativeInt, 1000)
    .option('--eid-source <source>', 'eid source of hashed emails (email_sha256 keys), e.g. your CRM domain')
    .addOption(new Option('--crm-format <format>', 'CRM format when the extension does not tell').choices(['csv', 'ndjson']))
    .addOption(new Option('--ids-format <format>', 'id map format when the extension does not tell').choices(['csv', 'ndjson']))
    .option('--created-at <iso>', 'header timestamp, for byte-identical reproducible stores', isoDate)
    .option('--no-progress', 'no progress bar')
    .action(async (opts: CompileOptions) => {
      const progress = opts.progress && process.stderr.isTTY === true && process.env.CI !== 'true';
      try {
        const result = await compileFiles({
          segments: opts.segments,
          crm: opts.crm,
          ids: opts.ids,
          out: opts.out,
          toRedis: opts.toRedis,
          redisTtlSeconds: opts.redisTtl,
          eidSource: opts.eidSource ?? null,
          crmFormat: opts.crmFormat,
          idsFormat: opts.idsFormat,
          createdAt: opts.createdAt,
          progress,
        });
        process.stdout.write(formatReport(result.report, opts.minActivation));
        process.stdout.write(
          `wrote ${opts.out} (${result.store.header.keyCount.toLocaleString('en-US')} keys, ${result.report.storeBytes.toLocaleString('en-US')} bytes, ` +
            `the volumes above in its header)` +
            (result.redis ? `; Redis: ${result.redis.keys.toLocaleString('en-US')} keys in ${(result.redis.ms / 1000).toFixed(1)} s` : '') +
            ` in ${(result.ms / 1000).toFixed(1)} s\n`,
        );
      } catch (e) {
        if (e instanceof SegbidError) {
          process.stderr.write(`segbid compile: ${e.code}: ${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        process.stderr.write(`segbid compile: ${(e as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
