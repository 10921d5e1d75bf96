/**
 * `segbid compile` as a function: segmentation file + CRM export (+ id map) -> segment store file (+ Redis).
 *
 *   1. read and validate the segmentation (JSON/YAML; every error with its path, SegbidError CONFIG_INVALID);
 *   2. stream the id map, if any, into an IdMap (typed arrays);
 *   3. stream the CRM export through the SegmentCompiler (constant memory in the input size), with a progress
 *      bar on stderr when asked (bytes read of the file);
 *   4. learn lookalikes, build and write the store atomically; optionally fill Redis;
 *   5. return the volume report (the caller prints it).
 * Inputs are files; their format comes from the extension unless given.
 */
import { readFileSync, statSync } from 'node:fs';
import cliProgress from 'cli-progress';
import { SegbidError } from '../../common/errors.js';
import { parseDocument } from '../../config/load.js';
import type { SegmentationDef } from '../../config/types.js';
import { validateSegmentation } from '../rules-schema.js';
import { writeStore, type SegmentStore } from '../segment-store.js';
import { writeStoreToRedis } from '../redis-store.js';
import { ID_MAP_COLUMNS, IdMap } from './id-map.js';
import { formatOfPath, openInput, readRecords, type ReadStats, type RecordFormat } from './records.js';
import { CRM_ID_COLUMN, OWN_KEY_COLUMNS, SegmentCompiler, type CompileReport } from './segment-compiler.js';

export interface CompileFilesOptions {
  segments: string;
  crm: string;
  ids?: string;
  out: string;
  toRedis?: string;
  redisTtlSeconds?: number;
  eidSource?: string | null;
  crmFormat?: RecordFormat;
  idsFormat?: RecordFormat;
  /** Fixed header timestamp for reproducible stores (default: now). */
  createdAt?: string;
  /** Show a progress bar on stderr. */
  progress?: boolean;
  lookalikeMinSupport?: number;
}

export interface CompileFilesResult {
  report: CompileReport;
  store: SegmentStore;
  crm: ReadStats;
  ids: ReadStats | null;
  redis: { keys: number; ms: number } | null;
  ms: number;
}

export function readSegmentation(path: string): SegmentationDef {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SegbidError('CONFIG_UNREADABLE', `cannot read ${path}: ${(e as Error).message}`);
  }
  return validateSegmentation(parseDocument(text, path), path);
}

function inputSize(path: string): number {
  try {
    return statSync(path).size;
  } catch (e) {
    throw new SegbidError('CONFIG_UNREADABLE', `cannot read ${path}: ${(e as Error).message}`);
  }
}

export async function compileFiles(options: CompileFilesOptions): Promise<CompileFilesResult> {
  const started = performance.now();
  const def = readSegmentation(options.segments);
  let idMap: IdMap | null = null;
  let idStats: ReadStats | null = null;
  if (options.ids) {
    inputSize(options.ids);
    idMap = new IdMap(options.eidSource ?? null);
    const map = idMap;
    idStats = await readRecords(openInput(options.ids), options.idsFormat ?? formatOfPath(options.ids), ID_MAP_COLUMNS, (v) => map.add(v), {
      source: options.ids,
    });
    idMap.seal();
  }
  const compiler = new SegmentCompiler(def, {
    eidSource: options.eidSource ?? null,
    idMap,
    lookalikeMinSupport: options.lookalikeMinSupport,
  });
  const total = inputSize(options.crm);
  const bar = options.progress
    ? new cliProgress.SingleBar(
        {
          format: 'compile |{bar}| {percentage}% | {mb}/{totalMb} MB | {records} records',
          stream: process.stderr,
          hideCursor: true,
          clearOnComplete: true,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      )
    : null;
  const mb = (b: number) => (b / 1048576).toFixed(1);
  bar?.start(total, 0, { mb: '0.0', totalMb: mb(total), records: 0 });
  let crmStats: ReadStats;
  try {
    crmStats = await readRecords(openInput(options.crm), options.crmFormat ?? formatOfPath(options.crm), compiler.columns, (v) => compiler.addRecord(v), {
      source: options.crm,
      onProgress: bar ? (bytes, records) => bar.update(bytes, { mb: mb(bytes), records: records.toLocaleString('en-US') }) : undefined,
    });
  } finally {
    bar?.stop();
  }
  const { store, report } = compiler.finish(options.createdAt);
  report.storeBytes = writeStore(options.out, store);
  if (crmStats.malformed > 0) {
    report.notes.push(`${crmStats.malformed} malformed CRM records skipped (lines ${crmStats.malformedLines.join(', ')}${crmStats.malformed > crmStats.malformedLines.length ? ', ...' : ''})`);
  }
  const keyColumns: readonly string[] = idMap ? [CRM_ID_COLUMN] : OWN_KEY_COLUMNS;
  const missing = crmStats.missingColumns.filter((c) => !keyColumns.includes(c));
  if (missing.length > 0) report.notes.push(`CRM export has no column ${missing.join(', ')} (read as missing values)`);
  if (crmStats.records > 0 && keyColumns.every((c) => crmStats.missingColumns.includes(c))) {
    report.notes.push(`CRM export has no key column (${keyColumns.join(', ')}): no user is reachable at bid time`);
  }
  if (idMap && idStats) {
    for (const [reason, count] of idMap.skipped) report.skippedKeys[`id map: ${reason}`] = count;
    if (idStats.malformed > 0) report.notes.push(`${idStats.malformed} malformed id-map records skipped`);
  }
  let redis: { keys: number; ms: number } | null = null;
  if (options.toRedis) redis = await writeStoreToRedis(store, options.toRedis, { ttlSeconds: options.redisTtlSeconds });
  return { report, store, crm: crmStats, ids: idStats, redis, ms: performance.now() - started };
}
