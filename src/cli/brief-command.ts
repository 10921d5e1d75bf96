/**
 * `segbid brief [--config FILE] [--kpis-from DIR] --out DIR`
 *
 * Writes brief.html and brief.md (src/admin/brief.ts) for buyers and partners: the segmentation tree with
 * volumes, each segment's strategy and messages, budgets and guard rails, the KPIs with their definitions and
 * measurement, and, with --kpis-from, the KPIs rebuilt from the event log. Exit codes, as `segbid compile`:
 * 0 on success (warnings on stderr); 2 when the config cannot be read or is one the bidder would refuse (the
 * same full validation as `serve`, every error by path, each printed once), or the output folder cannot be
 * written (one line).
 */
import type { Command } from 'commander';
import { SegbidError } from '../common/errors.js';
import { DEMO_CONFIG } from '../common/paths.js';
import { ensureDemoStore } from '../fixtures/ensure-demo.js';
import { BriefOutputError, writeBrief } from '../admin/brief.js';

interface BriefOptions {
  config?: string;
  kpisFrom?: string;
  out: string;
}

export function registerBriefCommand(program: Command): void {
  program
    .command('brief')
    .description('write the buyers\' brief (brief.html, brief.md): segmentation tree, strategy per segment, budgets, KPI definitions')
    .option('--config <file>', 'trader configuration; default: $SEGBID_CONFIG, else the embedded demo')
    .option('--kpis-from <dir>', 'event log directory: add the KPIs measured so far')
    .requiredOption('--out <dir>', 'output folder')
    .action((opts: BriefOptions) => {
      let configPath = opts.config ?? process.env.SEGBID_CONFIG;
      if (!configPath) {
        configPath = DEMO_CONFIG;
        ensureDemoStore();
      }
      try {
        const written = writeBrief({ configPath, outDir: opts.out, kpisFrom: opts.kpisFrom });
        for (const w of written.warnings) process.stderr.write(`segbid brief: ${w}\n`);
        process.stdout.write(`brief written: ${written.html}\n               ${written.markdown}\n`);
      } catch (e) {
        // A SegbidError's message already lists its details, one per line.
        if (e instanceof SegbidError) {
          process.stderr.write(`segbid brief: ${e.code}: ${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        if (e instanceof BriefOutputError) {
          process.stderr.write(`segbid brief: ${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw e;
      }
    });
}
