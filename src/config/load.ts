/**
 * Reads a configuration file (JSON or YAML), validates it against the schema with every error reported by
 * path, resolves the files it points at (segmentation, segment store) relative to itself, and compiles it.
 * Throws SegbidError with all details; never returns a half-valid config.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve, extname } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { SegbidError, type ErrorDetail } from '../common/errors.js';
import { configSchema, segmentationSchema } from './schema.js';
import type { SegbidConfig, SegmentationDef } from './types.js';
import { validateSegmentation } from '../segments/rules-schema.js';
import { documentLimitErrors } from './document-limits.js';

const ajv = new Ajv({ allErrors: true, strict: false });
const validateConfigSchema = ajv.compile(configSchema);
const validateSegmentationSchema = ajv.compile(segmentationSchema);

function ajvDetails(errors: ErrorObject[] | null | undefined, prefix = ''): ErrorDetail[] {
  const out: ErrorDetail[] = [];
  const all = errors ?? [];
  for (const e of all) {
    // anyOf branches repeat the same complaint per branch; keep the most specific line per path.
    if (e.keyword === 'anyOf' || e.keyword === 'if') continue;
    // A branch of an anyOf that failed only on its type ("must be string") while another branch got deeper
    // into the value is noise: the trader meant the other branch.
    if (e.keyword === 'type' && e.schemaPath.includes('/anyOf/') && all.some((o) => o.instancePath.startsWith(e.instancePath + '/'))) continue;
    if (e.keyword === 'propertyNames') continue; // reported through the inner error, which names the key
    let message = e.message ?? 'invalid';
    const propertyName = (e as ErrorObject & { propertyName?: string }).propertyName;
    if (propertyName !== undefined) message = `key "${propertyName}" ${message}`;
    if (e.keyword === 'additionalProperties') message = `unknown property "${(e.params as { additionalProperty: string }).additionalProperty}"`;
    if (e.keyword === 'enum') message = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
    const detail = { path: prefix + e.instancePath, message };
    if (!out.some((d) => d.path === detail.path && d.message === detail.message)) out.push(detail);
  }
  return out;
}

export function parseDocument(text: string, source: string): unknown {
  const ext = extname(source).toLowerCase();
  // A byte order mark (some Windows editors write one) is not content; YAML skips it, JSON.parse does not.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return ext === '.yaml' || ext === '.yml' ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new SegbidError('CONFIG_INVALID', `${source}: not valid ${ext === '.json' ? 'JSON' : 'YAML/JSON'}: ${(e as Error).message}`);
  }
}

/** Reads and parses a config or segmentation file (JSON or YAML) without validating it. */
export function readDocument(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SegbidError('CONFIG_UNREADABLE', `cannot read ${path}: ${(e as Error).message}`);
  }
  return parseDocument(text, path);
}

export interface LoadedConfig {
  config: SegbidConfig;
  segmentation: SegmentationDef;
  /** Absolute path of the segment store, or null for none. */
  storePath: string | null;
  /** Where it came from (a path, or "inline"). */
  source: string;
  /** Errors of the segment rules and tree (reported by the compiler with its own). */
  segmentationErrors?: ErrorDetail[];
}

const schemaRefusals = new WeakSet<SegbidError>();

/** Whether validateConfigDocument threw `e` because the config's own schema refused it (not its segmentation file). */
export function isSchemaRefusal(e: unknown): e is SegbidError {
  return e instanceof SegbidError && schemaRefusals.has(e);
}

/**
 * Validates a config document already in memory. `baseDir` resolves relative paths in it. `schema: false`
 * (compileDocument only, after the schema refused it): the rest as if the shapes were right, to find the
 * cross-reference errors too; the caller guards against what a wrong shape then throws.
 */
export function validateConfigDocument(doc: unknown, baseDir: string, source: string, options: { schema?: boolean } = {}): LoadedConfig {
  const limits = documentLimitErrors(doc);
  if (limits.length > 0) throw new SegbidError('CONFIG_INVALID', `${source}: invalid configuration`, limits);
  if (options.schema !== false && !validateConfigSchema(doc)) {
    const e = new SegbidError('CONFIG_INVALID', `${source}: invalid configuration`, ajvDetails(validateConfigSchema.errors));
    schemaRefusals.add(e);
    throw e;
  }
  const config = doc as unknown as SegbidConfig;
  let segmentation: SegmentationDef;
  if (typeof config.segmentation === 'string') {
    const segPath = resolve(baseDir, config.segmentation);
    const segDoc = readDocument(segPath);
    const segLimits = documentLimitErrors(segDoc);
    if (segLimits.length > 0) throw new SegbidError('CONFIG_INVALID', `${segPath}: invalid segmentation`, segLimits);
    if (!validateSegmentationSchema(segDoc)) {
      throw new SegbidError('CONFIG_INVALID', `${segPath}: invalid segmentation`, ajvDetails(validateSegmentationSchema.errors));
    }
    segmentation = segDoc as unknown as SegmentationDef;
  } else {
    segmentation = config.segmentation;
  }
  // The segment rules per kind (crm predicates, third-party ids, contextual lists, lookalike seeds) and the
  // tree's cross-checks: the same validation `segbid compile` applies.
  // Its errors are handed to the compiler, so that a trader sees them together with every other mistake.
  let segmentationErrors: ErrorDetail[] = [];
  try {
    validateSegmentation(segmentation, source);
  } catch (e) {
    if (!(e instanceof SegbidError)) throw e;
    const prefix = typeof config.segmentation === 'string' ? `/segmentation(${config.segmentation})` : '/segmentation';
    segmentationErrors = e.details.map((d) => ({ path: prefix + d.path, message: d.message }));
  }
  const storePath = config.segmentStore ? resolve(baseDir, config.segmentStore) : null;
  return { config, segmentation, storePath, source, segmentationErrors };
}

/** The document of a config file, its directory and its absolute path (compileDocument's arguments). */
export function readConfigFile(path: string): { doc: unknown; baseDir: string; source: string } {
  const abs = resolve(path);
  return { doc: readDocument(abs), baseDir: dirname(abs), source: abs };
}

export function loadConfigFile(path: string): LoadedConfig {
  const { doc, baseDir, source } = readConfigFile(path);
  return validateConfigDocument(doc, baseDir, source);
}
