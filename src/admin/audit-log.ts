/**
 * The audit log of the admin API: who changed what, when, and whether it was accepted.
 *
 * Contract:
 *   - One NDJSON line per attempt (accepted or rejected), appended to a file opened in append mode: the file is
 *     only ever appended to, never rewritten or truncated by segbid. No file configured = in memory only.
 *   - Each line: time (ISO 8601), author (`role:name`), action, target, result, summary, versionId (the version
 *     the change created, or the version still serving when it was rejected), and for rejections the error
 *     count and the first few errors by path.
 *   - A bounded in-memory tail (newest last) answers GET /admin/audit without reading the file back.
 *   - `record` never throws: a change that was applied must not be reported as failed because the disk is full.
 *     A failed write is logged and counted (`writeErrors`) and the entry still goes to the tail.
 *     Entries hold no secrets (no tokens, no config documents).
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ErrorDetail } from '../common/errors.js';
import { SILENT_LOGGER, type AdminLogger, type AdminPrincipal } from './auth.js';

export type AuditAction =
  | 'startup'
  | 'replace'
  | 'patch_line_item'
  | 'patch_campaign'
  | 'rollback'
  | 'reload_store'
  | 'reload_file';

export interface AuditEntry {
  time: string;
  /** `role:name` of the token (or `system:<what>` for start-up and signals). */
  author: string;
  action: AuditAction;
  /** What was acted on: `config`, `lineItem:<id>`, `campaign:<id>`, `version:<id>`, `segmentStore`. */
  target: string;
  result: 'accepted' | 'rejected';
  summary: string;
  versionId: number;
  errorCount?: number;
  /** The first few errors of a rejection, by path. */
  errors?: ErrorDetail[];
}

export interface AuditLogOptions {
  /** NDJSON file to append to; null/absent = in memory only. */
  path?: string | null;
  /** Entries kept in memory for the API. */
  tailSize?: number;
  logger?: AdminLogger;
}

const MAX_ERRORS_PER_ENTRY = 10;

export function authorLabel(author: AdminPrincipal | { role: 'system'; name: string }): string {
  return `${author.role}:${author.name}`;
}

export class AuditLog {
  readonly path: string | null;
  private readonly tailSize: number;
  private readonly logger: AdminLogger;
  private readonly entries: AuditEntry[] = [];
  private failedWrites = 0;

  constructor(options: AuditLogOptions = {}) {
    this.path = options.path ?? null;
    this.tailSize = options.tailSize ?? 500;
    this.logger = options.logger ?? SILENT_LOGGER;
    if (this.path !== null) mkdirSync(dirname(this.path), { recursive: true });
  }

  get writeErrors(): number {
    return this.failedWrites;
  }

  record(entry: AuditEntry): AuditEntry {
    const e: AuditEntry = { ...entry };
    if (e.errors !== undefined) e.errors = e.errors.slice(0, MAX_ERRORS_PER_ENTRY);
    this.entries.push(e);
    if (this.entries.length > this.tailSize) this.entries.splice(0, this.entries.length - this.tailSize);
    if (this.path !== null) {
      try {
        // One write per line with O_APPEND: lines never interleave, and nothing before them is touched.
        appendFileSync(this.path, JSON.stringify(e) + '\n', { flag: 'a' });
      } catch (err) {
        this.failedWrites++;
        this.logger.error({ err, path: this.path, action: e.action, author: e.author }, 'audit log write failed');
      }
    }
    return e;
  }

  /** The newest `limit` entries, oldest first. */
  tail(limit = this.tailSize): AuditEntry[] {
    const n = Math.max(0, Math.min(limit, this.entries.length));
    return this.entries.slice(this.entries.length - n);
  }
}
