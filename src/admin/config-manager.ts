/**
 * The running configuration as traders see it: the config DOCUMENT (the JSON as written, plus the directory its
 * relative paths resolve against), a bounded version history, and the operations of the admin API.
 *
 * Contract:
 *   - Every change (replace, line-item/campaign patch, rollback, file reload) goes the same way: the whole
 *     resulting document is validated (schema, every error by path) and compiled into a complete Decider
 *     aside (deciderFromDocument), optionally persisted to the config file (tmp + fsync + rename), and only
 *     then swapped in with one `target.swap()`: a bid request sees the old config or the new one, never half.
 *     Any failure throws a SegbidError and leaves the running config, the history and the file untouched.
 *   - Every attempt, accepted or rejected, goes to the audit log with its author.
 *   - The segment store is NOT re-read by document changes that keep the same `segmentStore` path (a CPM change
 *     must not load gigabytes); `reloadStore` re-reads it (and the segmentation file) on purpose.
 *   - Paths in a document (segmentation file, segment store) must stay inside the allowed directories (the
 *     config's own directory and those the bidder started with): an admin token must not make the bidder read
 *     arbitrary files, whose content could leak through parse-error messages.
 *   - Patches are JSON merge patches (RFC 7396) restricted to a whitelist of fields (LINE_ITEM_PATCHABLE,
 *     CAMPAIGN_PATCHABLE); any other field is refused with its path in the patch.
 *   - Synchronous throughout: JavaScript runs it between two bid requests, so no lock is needed and two admin
 *     calls never interleave.
 */
import { documentLimitErrors } from '../config/document-limits.js';
import { closeSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, extname, isAbsolute, relative, resolve } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { SegbidError, type ErrorDetail } from '../common/errors.js';
import { readDocument } from '../config/load.js';
import { configSchema } from '../config/schema.js';
import type { Decider } from '../bidding/decide.js';
import { deciderFromDocument } from '../bidding/load-decider.js';
import { SILENT_LOGGER, type AdminLogger, type AdminRole } from './auth.js';
import { AuditLog, authorLabel, type AuditAction } from './audit-log.js';
import { diffConfigs, escapePointer, summarizeDiff, type ConfigDiff } from './config-diff.js';

/**
 * Fields of a line item a PATCH may change, as JSON pointers inside the item. A pointer allows its whole
 * subtree. Budgets and the exploration share are campaign fields in this tree (src/budget/types.ts); if line
 * items grow such fields, add their pointers here.
 */
export const LINE_ITEM_PATCHABLE: readonly string[] = ['/active', '/bid/cpm', '/priority'];

/** Fields of a campaign a PATCH may change (src/budget/schema.ts): pause, budget, exploration, guard rails. */
export const CAMPAIGN_PATCHABLE: readonly string[] = [
  '/paused',
  '/budget/daily',
  '/budget/flight',
  '/budget/flightEnd',
  '/explorationShare',
  '/guardRails',
];

/** Whether this build's config schema knows `campaigns` (src/budget merges it in); without it no campaign exists. */
export function campaignsInSchema(): boolean {
  return Object.prototype.hasOwnProperty.call(configSchema.properties, 'campaigns');
}

export interface ConfigAuthor {
  role: AdminRole | 'system';
  name: string;
}

export interface ConfigVersion {
  id: number;
  time: string;
  /** `role:name`. */
  author: string;
  action: AuditAction;
  summary: string;
}

interface StoredVersion extends ConfigVersion {
  document: unknown;
}

export interface ValidationResult {
  ok: boolean;
  errors: ErrorDetail[];
}

export interface DryRunResult extends ValidationResult {
  diff: ConfigDiff;
  summary: string;
}

export interface ChangeResult {
  /** False when the document was already the running one (nothing swapped, no new version). */
  changed: boolean;
  version: ConfigVersion;
  diff: ConfigDiff;
}

/** What the manager swaps Deciders into: a BidHandler. */
export interface DeciderTarget {
  readonly current: Decider;
  swap(next: Decider): void;
}

export interface SwapEvent {
  decider: Decider;
  version: ConfigVersion;
  document: unknown;
}

export interface ChangeOptions {
  /** Optimistic concurrency (If-Match): refuse the change unless this is the running version. */
  expectedVersion?: number;
}

export interface ConfigManagerOptions {
  target: DeciderTarget;
  /** The config document as written. */
  document: unknown;
  /** Directory the document's relative paths resolve against. */
  baseDir: string;
  /** Names the config in error messages (usually the file path). */
  source: string;
  /** The config file, for `persist` and `reloadFile`. */
  configPath?: string | null;
  /** Write every accepted document back to `configPath` so that a restart keeps it. */
  persist?: boolean;
  /** Versions kept for rollback (the running one always is). Default 50. */
  historySize?: number;
  audit?: AuditLog;
  logger?: AdminLogger;
  /** Directories that document paths may point into, besides baseDir and those of the start-up document. */
  allowedDirs?: string[];
  now?: () => Date;
  /** Called after each swap (e.g. to forward the document to worker threads). */
  onSwap?: (event: SwapEvent) => void;
  /**
   * Called after each change attempt that got as far as the config (replace, patch, rollback, store or file
   * reload): accepted (swapped, or the same document), or rejected with the error (CONFIG_* and STORE_* codes;
   * a malformed request, an unknown id or a version conflict is not a config rejection). The server counts them
   * (`segbid_config_reloads_total{result}`) and shows the last rejection on `/readyz` (`lastError`).
   */
  onOutcome?: (accepted: boolean, error: SegbidError | null) => void;
  /**
   * The decider the target already serves, built from this very `document` (the bidder's start-up: its handler
   * needs a decider before its manager exists). Given, the manager adopts it: no second build of the same
   * document and no swap. Absent, the manager builds the document and swaps it in.
   */
  serving?: Decider;
}

const SYSTEM_STARTUP: ConfigAuthor = { role: 'system', name: 'startup' };

type Json = unknown;
type Obj = Record<string, Json>;

function isObject(v: Json): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The document itself when it is within the limits every config must keep (document-limits.ts), else a
 * CONFIG_INVALID with their paths: checked before anything recursive (structuredClone, the diff) touches it.
 */
function withinLimits(doc: unknown): unknown {
  const errors = documentLimitErrors(doc);
  if (errors.length > 0) throw new SegbidError('CONFIG_INVALID', 'invalid configuration', errors);
  return doc;
}

/** RFC 7396: objects merge key by key, `null` deletes, anything else (arrays too) replaces. */
export function applyMergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Obj = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}

/** Every field of `patch` outside `allowed` (JSON pointers; one allows its subtree), by its path in the patch. */
export function forbiddenPatchFields(patch: Obj, allowed: readonly string[], prefix = ''): ErrorDetail[] {
  const errors: ErrorDetail[] = [];
  for (const [k, v] of Object.entries(patch)) {
    const path = `${prefix}/${escapePointer(k)}`;
    if (allowed.includes(path)) continue;
    if (isObject(v) && allowed.some((a) => a.startsWith(path + '/'))) {
      errors.push(...forbiddenPatchFields(v, allowed, path));
    } else {
      errors.push({ path, message: `not a patchable field (patchable: ${allowed.join(', ')})` });
    }
  }
  return errors;
}

function isInside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** The path a SegbidError without details is about, so that every rejection has at least one {path, message}. */
function detailsOf(e: SegbidError, doc: Json, baseDir: string): ErrorDetail[] {
  const segmentationFile = isObject(doc) && typeof doc.segmentation === 'string' ? resolve(baseDir, doc.segmentation) : null;
  // Errors inside a segmentation FILE carry paths in that file: report them under /segmentation, naming the file.
  if (segmentationFile !== null && e.message.startsWith(segmentationFile)) {
    const file = (doc as Obj).segmentation as string;
    if (e.details.length) return e.details.map((d) => ({ path: '/segmentation', message: `${file} ${d.path || '/'}: ${d.message}` }));
    return [{ path: '/segmentation', message: e.message.split('\n')[0] }];
  }
  if (e.details.length) return [...e.details];
  const path = e.code.startsWith('STORE_') ? '/segmentStore' : e.code === 'CONFIG_UNREADABLE' ? '/segmentation' : '';
  return [{ path, message: e.message.split('\n')[0] }];
}

export class ConfigManager {
  private readonly target: DeciderTarget;
  private readonly baseDir: string;
  private readonly source: string;
  private readonly configPath: string | null;
  private readonly persist: boolean;
  private readonly historySize: number;
  readonly audit: AuditLog;
  private readonly logger: AdminLogger;
  private readonly allowedDirs: string[];
  private readonly now: () => Date;
  private readonly onSwap: ((event: SwapEvent) => void) | undefined;
  private readonly onOutcome: ((accepted: boolean, error: SegbidError | null) => void) | undefined;
  private readonly history: StoredVersion[] = [];
  private nextId = 1;

  /**
   * Builds the start-up document and swaps it in (or adopts `serving`, the decider built from it that the target
   * already serves), so that what serves is exactly what the manager holds.
   */
  constructor(options: ConfigManagerOptions) {
    this.target = options.target;
    this.baseDir = resolve(options.baseDir);
    this.source = options.source;
    this.configPath = options.configPath ? resolve(options.configPath) : null;
    this.persist = options.persist ?? false;
    if (this.persist && this.configPath === null) throw new SegbidError('CONFIG_PERSIST', 'persist needs configPath');
    this.historySize = Math.max(1, options.historySize ?? 50);
    this.logger = options.logger ?? SILENT_LOGGER;
    this.audit = options.audit ?? new AuditLog({ logger: this.logger });
    this.now = options.now ?? (() => new Date());
    this.onSwap = options.onSwap;
    this.onOutcome = options.onOutcome;
    // The start-up document is trusted (the operator wrote it): whatever it points at stays allowed.
    const startDirs = [this.baseDir, ...(options.allowedDirs ?? []).map((d) => resolve(d))];
    const doc = structuredClone(options.document); // the history must not change if the caller's object does
    if (isObject(doc)) {
      if (typeof doc.segmentation === 'string') startDirs.push(dirname(resolve(this.baseDir, doc.segmentation)));
      if (typeof doc.segmentStore === 'string') startDirs.push(dirname(resolve(this.baseDir, doc.segmentStore)));
    }
    this.allowedDirs = [...new Set(startDirs)];

    if (options.serving === undefined) {
      this.target.swap(this.build(doc, false));
    } else if (this.target.current !== options.serving) {
      throw new SegbidError('CONFIG_SERVING', 'the serving decider given to the config manager is not the one its target serves');
    }
    const version = this.pushVersion(doc, SYSTEM_STARTUP, 'startup', `loaded ${this.source}`);
    this.audit.record({ time: version.time, author: version.author, action: 'startup', target: 'config', result: 'accepted', summary: version.summary, versionId: version.id });
  }

  /** Reads a config file (JSON or YAML) and manages it; `configPath` is set to that file. */
  static fromFile(configPath: string, options: Omit<ConfigManagerOptions, 'document' | 'baseDir' | 'source' | 'configPath'>): ConfigManager {
    const abs = resolve(configPath);
    return new ConfigManager({ ...options, document: readDocument(abs), baseDir: dirname(abs), source: abs, configPath: abs });
  }

  // ---- reads --------------------------------------------------------------------------------------------

  get currentVersion(): ConfigVersion {
    return publicVersion(this.history[this.history.length - 1]);
  }

  /** A copy of the running document. */
  document(): unknown {
    return structuredClone(this.history[this.history.length - 1].document);
  }

  /** The running document as JSON text (no copy made). */
  documentJson(): string {
    return JSON.stringify(this.history[this.history.length - 1].document);
  }

  /** Newest first, without documents. */
  versions(): ConfigVersion[] {
    return this.history.map(publicVersion).reverse();
  }

  // ---- checks without effect ----------------------------------------------------------------------------

  /** Would this document be accepted? Schema, compile and segment-store checks, every error by path. */
  validate(doc: unknown): ValidationResult {
    try {
      this.build(doc, false);
      return { ok: true, errors: [] };
    } catch (e) {
      if (!(e instanceof SegbidError)) throw e;
      return { ok: false, errors: detailsOf(e, doc, this.baseDir) };
    }
  }

  /** What replacing the running document with `doc` would change, and whether it would be accepted. */
  dryRun(doc: unknown): DryRunResult {
    const limits = documentLimitErrors(doc);
    if (limits.length > 0) return { ok: false, errors: limits, diff: diffConfigs(null, null), summary: 'not compared: the document is past the limits' };
    const diff = diffConfigs(this.history[this.history.length - 1].document, doc);
    return { ...this.validate(doc), diff, summary: summarizeDiff(diff) };
  }

  // ---- changes ------------------------------------------------------------------------------------------

  replace(doc: unknown, author: ConfigAuthor, options: ChangeOptions = {}): ChangeResult {
    return this.attempt('replace', 'config', author, doc, () => this.apply(structuredClone(withinLimits(doc)), 'replace', 'config', author, options, ''));
  }

  patchLineItem(id: string, patch: unknown, author: ConfigAuthor, options: ChangeOptions = {}): ChangeResult {
    return this.attempt('patch_line_item', `lineItem:${id}`, author, null, () => {
      const next = this.patched('lineItems', 'line item', id, patch, LINE_ITEM_PATCHABLE);
      return this.apply(next, 'patch_line_item', `lineItem:${id}`, author, options, '');
    });
  }

  patchCampaign(id: string, patch: unknown, author: ConfigAuthor, options: ChangeOptions = {}): ChangeResult {
    return this.attempt('patch_campaign', `campaign:${id}`, author, null, () => {
      if (!campaignsInSchema()) {
        throw new SegbidError('ADMIN_NOT_FOUND', `unknown campaign "${id}"`, [
          { path: '/campaigns', message: `unknown campaign "${id}" (this build's configuration has no campaigns)` },
        ]);
      }
      const next = this.patched('campaigns', 'campaign', id, patch, CAMPAIGN_PATCHABLE);
      return this.apply(next, 'patch_campaign', `campaign:${id}`, author, options, '');
    });
  }

  /** Makes a past version the running one again, as a new version (history is never rewritten). */
  rollback(versionId: number, author: ConfigAuthor, options: ChangeOptions = {}): ChangeResult {
    return this.attempt('rollback', `version:${versionId}`, author, null, () => {
      const old = this.history.find((v) => v.id === versionId);
      if (old === undefined) {
        const kept = this.history.map((v) => v.id);
        throw new SegbidError('ADMIN_NOT_FOUND', `unknown version ${versionId}`, [
          { path: '/version', message: `version ${versionId} is not in the history (kept: ${kept[0]}..${kept[kept.length - 1]})` },
        ]);
      }
      return this.apply(structuredClone(old.document), 'rollback', `version:${versionId}`, author, options, `rollback to v${versionId}: `);
    });
  }

  /**
   * Re-reads the segment store (and a segmentation file) for the running document, e.g. after the offline
   * compiler wrote a new store. The document does not change: no new version, but an audit entry.
   */
  reloadStore(author: ConfigAuthor): { version: ConfigVersion; storePath: string | null; storeUsers: number } {
    return this.attempt('reload_store', 'segmentStore', author, null, () => {
      const current = this.history[this.history.length - 1];
      const decider = this.build(current.document, true);
      this.target.swap(decider);
      const version = publicVersion(current);
      const storePath = decider.config.storePath;
      const summary = `segment store ${storePath ?? '(none)'} reloaded: ${decider.store.header.userCount} users`;
      this.audit.record({ time: this.now().toISOString(), author: authorLabel(author), action: 'reload_store', target: 'segmentStore', result: 'accepted', summary, versionId: version.id });
      this.logger.info({ author: authorLabel(author), storePath, storeUsers: decider.store.header.userCount }, 'segment store reloaded');
      this.onSwap?.({ decider, version, document: current.document });
      return { version, storePath, storeUsers: decider.store.header.userCount };
    });
  }

  /**
   * Re-reads the config file (SIGHUP): the file becomes the running document, the store is re-read too. What
   * was changed through the API and not persisted is replaced by the file's content (the audit log says so).
   */
  reloadFile(author: ConfigAuthor): ChangeResult {
    return this.attempt('reload_file', 'config', author, null, () => {
      if (this.configPath === null) throw new SegbidError('CONFIG_UNREADABLE', 'no config file to reload from');
      const doc = readDocument(this.configPath);
      return this.apply(doc, 'reload_file', 'config', author, {}, `reloaded ${this.configPath}: `, { freshStore: true, persist: false });
    });
  }

  // ---- internals ----------------------------------------------------------------------------------------

  /** Runs a change; a SegbidError is audited as a rejection (with the error count) and rethrown. */
  private attempt<T>(action: AuditAction, target: string, author: ConfigAuthor, doc: unknown, run: () => T): T {
    try {
      const result = run();
      this.onOutcome?.(true, null);
      return result;
    } catch (e) {
      if (e instanceof SegbidError && (e.code.startsWith('CONFIG_') || e.code.startsWith('STORE_'))) this.onOutcome?.(false, e);
      if (e instanceof SegbidError) {
        const errors = detailsOf(e, doc ?? this.history[this.history.length - 1].document, this.baseDir);
        this.audit.record({
          time: this.now().toISOString(),
          author: authorLabel(author),
          action,
          target,
          result: 'rejected',
          summary: `${e.code}: ${e.message.split('\n')[0]}`,
          versionId: this.currentVersion.id,
          errorCount: errors.length,
          errors,
        });
        this.logger.warn({ author: authorLabel(author), action, target, code: e.code, errorCount: errors.length }, 'config change rejected');
        // The caller reports the same paths as validate() does (in the document sent, a segmentation file's
        // errors under /segmentation, a missing store at /segmentStore), not the loader's own.
        throw new SegbidError(e.code, e.message.split('\n')[0], errors);
      }
      throw e;
    }
  }

  /** The running document with one element of `collection` merge-patched. Throws 400/404-class errors. */
  private patched(collection: 'lineItems' | 'campaigns', what: string, id: string, patch: unknown, allowed: readonly string[]): unknown {
    withinLimits(patch); // before the recursive merge
    if (!isObject(patch)) {
      throw new SegbidError('ADMIN_BAD_REQUEST', 'the patch must be a JSON object', [{ path: '', message: 'must be a JSON object (a JSON merge patch)' }]);
    }
    const next = structuredClone(this.history[this.history.length - 1].document) as Obj;
    const items = Array.isArray(next[collection]) ? (next[collection] as Json[]) : [];
    const index = items.findIndex((x) => isObject(x) && x.id === id);
    if (index < 0) throw new SegbidError('ADMIN_NOT_FOUND', `unknown ${what} "${id}"`, [{ path: `/${collection}`, message: `unknown ${what} "${id}"` }]);
    const forbidden = forbiddenPatchFields(patch, allowed);
    if (forbidden.length) throw new SegbidError('ADMIN_PATCH_FORBIDDEN_FIELD', `the patch changes fields that cannot be patched`, forbidden);
    items[index] = applyMergePatch(items[index], patch);
    return next;
  }

  private apply(
    doc: unknown,
    action: AuditAction,
    target: string,
    author: ConfigAuthor,
    options: ChangeOptions,
    summaryPrefix: string,
    how: { freshStore?: boolean; persist?: boolean } = {},
  ): ChangeResult {
    const current = this.history[this.history.length - 1];
    if (options.expectedVersion !== undefined && options.expectedVersion !== current.id) {
      throw new SegbidError('ADMIN_VERSION_CONFLICT', `the running config is v${current.id}, not v${options.expectedVersion}`, [
        { path: '', message: `version conflict: running v${current.id}, the change was made on v${options.expectedVersion}; reload and retry` },
      ]);
    }
    const diff = diffConfigs(current.document, doc);
    const freshStore = how.freshStore ?? false;
    const label = authorLabel(author);
    if (diff.identical && !freshStore) {
      const version = publicVersion(current);
      this.audit.record({ time: this.now().toISOString(), author: label, action, target, result: 'accepted', summary: summaryPrefix + 'no change', versionId: version.id });
      return { changed: false, version, diff };
    }
    const decider = this.build(doc, freshStore);
    if (how.persist ?? this.persist) this.persistDocument(doc);
    this.target.swap(decider);
    if (isObject(doc) && isObject(current.document) && JSON.stringify(doc.kpis ?? null) !== JSON.stringify(current.document.kpis ?? null)) {
      // The KPI store's dimensions, exchanges and attribution windows shape counters it keeps from the start.
      this.logger.warn({ author: label }, 'config swapped; its kpis section changed and applies at the next start (the events section applies now)');
    }
    let version: ConfigVersion;
    if (diff.identical) {
      version = publicVersion(current); // a file reload that only re-read the store
    } else {
      version = this.pushVersion(doc, author, action, summaryPrefix + summarizeDiff(diff));
    }
    this.audit.record({ time: version.time, author: label, action, target, result: 'accepted', summary: summaryPrefix + summarizeDiff(diff), versionId: version.id });
    this.logger.info({ author: label, action, version: version.id, summary: version.summary }, 'config changed');
    this.onSwap?.({ decider, version, document: doc });
    return { changed: !diff.identical, version, diff };
  }

  /**
   * A complete Decider for `doc`, or a SegbidError. Keeps the running segment store when the document points
   * at the same file, unless `freshStore`.
   */
  private build(doc: unknown, freshStore: boolean): Decider {
    this.checkPaths(doc);
    const storePath = isObject(doc) && typeof doc.segmentStore === 'string' ? resolve(this.baseDir, doc.segmentStore) : null;
    const running = this.target.current;
    if (!freshStore && storePath !== null && running.config.storePath === storePath) {
      try {
        return deciderFromDocument(doc, this.baseDir, this.source, running.store);
      } catch (e) {
        // The segmentation changed under the same store path: the trader may have recompiled the store too.
        if (!(e instanceof SegbidError && e.code === 'STORE_MISMATCH')) throw e;
      }
    }
    return deciderFromDocument(doc, this.baseDir, this.source);
  }

  private checkPaths(doc: unknown): void {
    if (!isObject(doc)) return; // the schema says what is wrong
    const errors: ErrorDetail[] = [];
    for (const key of ['segmentation', 'segmentStore'] as const) {
      const value = doc[key];
      if (typeof value !== 'string') continue;
      const abs = resolve(this.baseDir, value);
      if (!this.allowedDirs.some((dir) => isInside(dir, abs))) {
        errors.push({ path: `/${key}`, message: `path outside the allowed directories (${this.allowedDirs.join(', ')})` });
      }
    }
    if (errors.length) throw new SegbidError('CONFIG_INVALID', `${this.source}: invalid configuration`, errors);
  }

  private pushVersion(doc: unknown, author: ConfigAuthor, action: AuditAction, summary: string): ConfigVersion {
    const v: StoredVersion = { id: this.nextId++, time: this.now().toISOString(), author: authorLabel(author), action, summary, document: doc };
    this.history.push(v);
    if (this.history.length > this.historySize) this.history.splice(0, this.history.length - this.historySize);
    return publicVersion(v);
  }

  /** tmp + fsync + rename: the file is the old or the new document, never a torn one, even on a crash. */
  private persistDocument(doc: unknown): void {
    const path = this.configPath!;
    const yaml = ['.yaml', '.yml'].includes(extname(path).toLowerCase());
    // YAML files stay YAML (comments are lost: the document is what the API holds).
    const text = yaml ? stringifyYaml(doc) : JSON.stringify(doc, null, 2) + '\n';
    const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
    let mode = 0o644;
    try {
      mode = statSync(path).mode & 0o777;
    } catch {
      // a config file that vanished is recreated with the default mode
    }
    let fd: number | null = null;
    try {
      fd = openSync(tmp, 'wx', mode);
      writeSync(fd, text);
      fsyncSync(fd);
      closeSync(fd);
      fd = null;
      renameSync(tmp, path);
    } catch (e) {
      if (fd !== null) closeSync(fd);
      try {
        unlinkSync(tmp);
      } catch {
        // nothing to clean up
      }
      throw new SegbidError('CONFIG_PERSIST', `cannot persist the config to ${path}: ${(e as Error).message}`, [
        { path: '', message: `not applied: the config file could not be written (${(e as NodeJS.ErrnoException).code ?? 'error'})` },
      ]);
    }
  }
}

function publicVersion(v: StoredVersion): ConfigVersion {
  return { id: v.id, time: v.time, author: v.author, action: v.action, summary: v.summary };
}


