/**
 * The `segbid` command line (commander): `serve` runs the bidder, `demo` (re)writes the demo fixtures.
 * Without --config / SEGBID_CONFIG, `serve` runs the embedded demo under fixtures/demo, writing its segment
 * store first when it is missing (it is generated, not committed).
 */
import { Command, InvalidArgumentError } from 'commander';
import { pino } from 'pino';
import { DEMO_CONFIG, DEMO_DIR } from '../common/paths.js';
import { writeDemo } from '../fixtures/demo.js';
import { ensureDemoStore } from '../fixtures/ensure-demo.js';
import { availableParallelism } from 'node:os';
import { startBidder } from '../server/start.js';
import { startCluster } from '../server/cluster.js';
import { SegbidError } from '../common/errors.js';
import { registerReconcileCommand } from './reconcile-command.js';
import { registerCompileCommand } from './compile-command.js';
import { registerBriefCommand } from './brief-command.js';
import { BIDDER_NODE_FLAGS, HUGE_PAGE_TUNABLE, runsWithBidderFlags, runsWithHugePages } from '../common/node-flags.js';

/**
 * An option's parser: a number in [min, max] (an integer when `integer`), else commander's InvalidArgumentError
 * with `rule` (fromEnv reuses it for the environment variable of the same option).
 */
function numberIn(rule: string, min: number, max: number, integer: boolean): (value: string) => number {
  return (value) => {
    const n = Number(value);
    const shaped = integer ? Number.isSafeInteger(n) : Number.isFinite(n);
    if (value.trim() === '' || !shaped || n < min || n > max) throw new InvalidArgumentError(rule);
    return n;
  };
}

const port = numberIn('a port is an integer 0-65535', 0, 65535, true);
const workerCount = numberIn('workers is an integer 1-256', 1, 256, true);
const snapshotSec = numberIn('state-snapshot-sec is a number 1-3600', 1, 3600, false);
const historySec = numberIn('history-every-sec is a number 0.1-3600', 0.1, 3600, false);
const instanceCount = numberIn('instances is an integer 1-10000', 1, 10000, true);
const userCount = numberIn('users is a positive integer', 1, Number.MAX_SAFE_INTEGER, true);

/** A user's mistake on the command line or in the environment: one line on stderr, exit 2 (no stack). */
function userError(message: string): never {
  process.stderr.write(`segbid: ${message}\n`);
  process.exit(2);
}

/**
 * An environment variable read with the parser of its command-line option; unset or empty: undefined. A bad
 * value is a user error (exit 2), never a silent default.
 */
function fromEnv<T>(name: string, parse: (value: string) => T): T | undefined {
  const value = process.env[name];
  if (value === undefined || value === '') return undefined;
  try {
    return parse(value);
  } catch (e) {
    if (!(e instanceof InvalidArgumentError)) throw e;
    userError(`${name}: ${e.message} (got ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '...' : value)})`);
  }
}

const program = new Command();
program.name('segbid').description('Real-time bidding decision engine on strategic segmentation').showHelpAfterError();

program
  .command('serve', { isDefault: true })
  .description('run the bidder: bid port (OpenRTB) and operations port (metrics, health)')
  .option('--config <file>', 'trader configuration (JSON or YAML); default: $SEGBID_CONFIG, else the embedded demo')
  .option('--port <port>', 'bid port (default $PORT or 8080)', port)
  .option('--admin-port <port>', 'operations port (default $ADMIN_PORT or 8081)', port)
  .option('--host <host>', 'listen address', process.env.HOST ?? '0.0.0.0')
  .option('--allow-uws-fallback', 'run even if uWebSockets.js fell back to its slow pure-JS server', false)
  .option('--workers <n>', 'bid worker threads on the shared port (default $SEGBID_WORKERS or the number of cores; 1 = no threads)', workerCount)
  .option('--event-log <dir>', 'durable event log directory ($SEGBID_EVENT_LOG_DIR, default var/events; "none" to disable)')
  .option('--event-log-fsync <policy>', 'always | interval:<ms> | never ($SEGBID_EVENT_LOG_FSYNC, default interval:1000)')
  .option('--state-dir <dir>', 'budget ledger journal and learning-state snapshots ($SEGBID_STATE_DIR, default var/state; "none" for memory only)')
  .option('--state-snapshot-sec <n>', 'state snapshot period in seconds ($SEGBID_STATE_SNAPSHOT_SEC, default 15)', snapshotSec)
  .option('--history-every-sec <n>', 'sampling period of the console\'s curves (GET /admin/history: an hour of points at the default) in seconds ($SEGBID_HISTORY_EVERY_SEC, default 5)', historySec)
  .option('--redis <url>', 'Redis shared by every bidder instance: campaign budgets are leased from it in slices, frequency caps and learning statistics are shared through it ($SEGBID_REDIS_URL)')
  .option('--instances <m>', 'bidder instances behind the load balancer, for pacing: each paces toward 1/M of every campaign\'s day ($SEGBID_INSTANCES, default 1)', instanceCount)
  .option('--segments-redis <url>', 'Redis segment store (filled by `segbid compile --to-redis`): users the local store does not know are looked up there before the decision ($SEGBID_SEGMENTS_REDIS_URL)')
  .option('--segments-redis-budget-ms <ms>', 'longest wait for one Redis segment lookup (default 10; each request waits at most tmax/4)', numberIn('segments-redis-budget-ms is a number 1-1000', 1, 1000, false))
  // `serve` is the default command: `segbid frobnicate` lands here with "frobnicate" as an operand.
  .allowExcessArguments(true)
  .action(async (opts: { config?: string; port?: number; adminPort?: number; host: string; allowUwsFallback: boolean; workers?: number; eventLog?: string; eventLogFsync?: string; stateDir?: string; stateSnapshotSec?: number; historyEverySec?: number; redis?: string; instances?: number; segmentsRedis?: string; segmentsRedisBudgetMs?: number }, cmd: Command) => {
    if (cmd.args.length > 0) {
      const got = JSON.stringify(cmd.args[0]);
      if (program.args[0] === 'serve') userError(`serve takes no arguments (got ${got}); see segbid serve --help`);
      userError(`unknown command ${got}; commands: ${program.commands.map((c) => c.name()).join(', ')} (serve is the default); see segbid --help`);
    }
    // The environment is checked like the options, before anything is started or written.
    const envPort = fromEnv('PORT', port);
    const envAdminPort = fromEnv('ADMIN_PORT', port);
    const envWorkers = fromEnv('SEGBID_WORKERS', workerCount);
    const envSnapshotSec = fromEnv('SEGBID_STATE_SNAPSHOT_SEC', snapshotSec);
    const envHistorySec = fromEnv('SEGBID_HISTORY_EVERY_SEC', historySec);
    const envInstances = fromEnv('SEGBID_INSTANCES', instanceCount);
    const logger = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { service: 'segbid', pid: process.pid } });
    let configPath = opts.config ?? process.env.SEGBID_CONFIG;
    if (!configPath) {
      configPath = DEMO_CONFIG;
      ensureDemoStore();
    }
    try {
      const eventLog = opts.eventLog ?? process.env.SEGBID_EVENT_LOG_DIR ?? 'var/events';
      const stateDir = opts.stateDir ?? process.env.SEGBID_STATE_DIR ?? 'var/state';
      const segmentsRedisUrl = opts.segmentsRedis ?? process.env.SEGBID_SEGMENTS_REDIS_URL ?? null;
      const workers = opts.workers ?? envWorkers ?? availableParallelism();
      const common = {
        configPath,
        host: opts.host,
        port: opts.port ?? envPort ?? 8080,
        adminPort: opts.adminPort ?? envAdminPort ?? 8081,
        allowUwsFallback: opts.allowUwsFallback || process.env.SEGBID_ALLOW_UWS_FALLBACK === '1',
        logger,
        signals: true,
        eventLogDir: eventLog === 'none' ? null : eventLog,
        eventLogFsync: opts.eventLogFsync ?? process.env.SEGBID_EVENT_LOG_FSYNC,
        stateDir: stateDir === 'none' ? null : stateDir,
        stateSnapshotMs: (opts.stateSnapshotSec ?? envSnapshotSec ?? 15) * 1000,
        historyEveryMs: Math.round((opts.historyEverySec ?? envHistorySec ?? 5) * 1000),
        redisUrl: opts.redis ?? process.env.SEGBID_REDIS_URL ?? null,
        segmentsRedisUrl,
        segmentsRedisBudgetMs: opts.segmentsRedisBudgetMs,
        paceShare: 1 / (opts.instances ?? envInstances ?? 1),
      };
      if (process.platform === 'linux' && !runsWithHugePages()) {
        logger.info({ expected: `GLIBC_TUNABLES=${HUGE_PAGE_TUNABLE}` }, 'started without huge pages for the segment store: a big store pays a TLB miss per lookup (npm start, bin/segbid and the Docker image set it)');
      }
      if (!runsWithBidderFlags()) {
        logger.info({ expected: BIDDER_NODE_FLAGS }, 'node started without the bidder heap flags: RSS will swing with the young generation (npm start, bin/segbid and the Docker image pass them)');
      }
      const running = workers > 1 ? await startCluster({ ...common, workers }) : await startBidder(common);
      process.stdout.write(
        `segbid bid port:        http://${opts.host}:${running.bidPort}/openrtb2/bid (${workers > 1 ? `${workers} worker threads` : 'single thread'})\n` +
          `segbid operations port: http://${opts.host}:${running.adminPort}/metrics  /healthz  /readyz\n`,
      );
    } catch (e) {
      if (e instanceof SegbidError) {
        logger.fatal({ code: e.code, details: e.details }, e.message);
        process.stderr.write(`segbid: ${e.code}: ${e.message}\n`);
        process.exit(2);
      }
      throw e;
    }
  });

program
  .command('demo')
  .description('write the demo segmentation, config and segment store (deterministic)')
  .option('--dir <dir>', 'output folder', DEMO_DIR)
  .option('--users <n>', 'demo CRM users', userCount, 100_000)
  .action((opts: { dir: string; users: number }) => {
    writeDemo(opts.dir, { users: opts.users });
    process.stdout.write(`demo fixtures written to ${opts.dir}\n`);
  });

registerCompileCommand(program);
registerReconcileCommand(program);
registerBriefCommand(program);
await program.parseAsync(process.argv);
