/**
 * The command line refuses a user's mistake in one line on stderr (`segbid: ...` / `segbid brief: ...`) with
 * exit 2, like `segbid compile`: no stack trace, no silent default, nothing started or written. Runs the built
 * CLI (dist/, SEGBID_TEST_CLI to try another build), each case in a fresh temporary folder.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeBrief } from '../src/admin/brief.js';
import { SegbidError } from '../src/common/errors.js';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { smallConfig } from './helpers/small-config.js';

/** SEGBID_TEST_CLI: run another build (as test/helpers/segbid-process.ts). */
const CLI = process.env.SEGBID_TEST_CLI ?? resolve(PACKAGE_ROOT, 'dist/src/cli/main.js');

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  dir: string;
}

/** A run that should end at once; a run that does not (it serves, or hangs) is killed after `timeoutMs`. */
function segbid(args: string[], env: Record<string, string> = {}, timeoutMs = 15_000): Run {
  const dir = mkdtempSync(join(tmpdir(), 'segbid-cli-input-'));
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: dir,
    // Ports 0 and no state or event log: a build that wrongly starts serving binds nothing fixed, writes nothing.
    env: { ...process.env, PORT: '0', ADMIN_PORT: '0', SEGBID_STATE_DIR: 'none', SEGBID_EVENT_LOG_DIR: 'none', LOG_LEVEL: 'silent', ...env },
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', dir };
}

/** Exit 2, exactly one line on stderr, starting with `prefix`, and no stack trace. */
function expectOneLineUserError(r: Run, prefix: RegExp): void {
  expect(r.status, `stderr: ${r.stderr}\nstdout: ${r.stdout}`).toBe(2);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(prefix);
  expect(r.stderr).not.toMatch(/^\s+at /m);
}


/** Schema-valid, refused by the bidder: duplicate ids and an unknown creative. */
function crossRefBadConfig(): Record<string, unknown> {
  const c = smallConfig({ lineItems: 2 }) as { creatives: { id: string }[]; lineItems: { id: string; creatives: string[] }[] };
  c.creatives[1].id = 'cr-a';
  c.lineItems[1].id = 'li-a';
  c.lineItems[1].creatives = ['cr-nope'];
  return c;
}
const CROSS_REF_ERRORS = ['/creatives/1/id: duplicate creative id "cr-a"', '/lineItems/1/id: duplicate line item id "li-a"', '/lineItems/1/creatives/0: unknown creative "cr-nope"'];

function configFile(doc: unknown): string {
  const path = join(mkdtempSync(join(tmpdir(), 'segbid-cli-config-')), 'config.json');
  writeFileSync(path, JSON.stringify(doc, null, 2));
  return path;
}

describe('serve: a bad environment variable is a one-line user error, exit 2', () => {
  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['ADMIN_PORT', 'abc'],
    ['ADMIN_PORT', '-1'],
    ['SEGBID_WORKERS', 'abc'],
    ['SEGBID_WORKERS', '0'],
    ['SEGBID_WORKERS', '2.5'],
    ['SEGBID_INSTANCES', 'two'],
    ['SEGBID_STATE_SNAPSHOT_SEC', 'soon'],
  ])('%s=%s', (name, value) => {
    const r = segbid(['serve', '--host', '127.0.0.1'], { [name]: value });
    expectOneLineUserError(r, new RegExp(`^segbid: ${name}: .*\\(got "${value.replace('.', '\\.')}"\\)$`));
    expect(r.stdout).not.toContain('segbid bid port');
  });
});

describe('commands', () => {
  it('an unknown command is named as such, with the list of commands; exit 2', () => {
    const r = segbid(['frobnicate']);
    expectOneLineUserError(r, /^segbid: unknown command "frobnicate"; commands: /);
    for (const c of ['serve', 'demo', 'compile', 'reconcile', 'brief']) expect(r.stderr).toContain(c);
    expect(r.stderr).not.toContain('too many arguments');
  });

  it('`serve` with an operand says serve takes none; exit 2', () => {
    expectOneLineUserError(segbid(['serve', 'frobnicate']), /^segbid: serve takes no arguments \(got "frobnicate"\)/);
  });

  it('--help still lists the commands, exit 0', () => {
    const r = segbid(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/serve[\s\S]*demo[\s\S]*brief/);
  });
});

describe('demo --users', () => {
  it.each(['abc', '-5', '0', '1.5', ''])('--users %j is refused and nothing is written', (users) => {
    const r = segbid(['demo', '--users', users, '--dir', 'demo-out']);
    expect(r.status, r.stderr).not.toBe(0);
    expect(r.stderr).toMatch(/--users/);
    expect(existsSync(join(r.dir, 'demo-out'))).toBe(false);
  });
});

describe('brief', () => {
  it('refuses a config the bidder refuses (cross-references), each error once, exit 2, nothing written', () => {
    const r = segbid(['brief', '--config', configFile(crossRefBadConfig()), '--out', 'out']);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^segbid brief: CONFIG_INVALID: /);
    for (const e of CROSS_REF_ERRORS) expect(r.stderr.split(e).length - 1, `${e} in\n${r.stderr}`).toBe(1);
    expect(existsSync(join(r.dir, 'out'))).toBe(false);
  });

  it('a schema error: each detail printed once, exit 2', () => {
    const r = segbid(['brief', '--config', configFile({ version: 1, creatives: 5 }), '--out', 'out']);
    expect(r.status, r.stderr).toBe(2);
    const details = r.stderr.split('\n').filter((l) => l.startsWith('  '));
    expect(details.length).toBeGreaterThan(0);
    expect(new Set(details).size, r.stderr).toBe(details.length);
  });

  const unwritable: [string, string][] = [['a path under a file', 'config.json/brief']];
  // Node 20's mkdirSync(recursive) looped forever at full CPU there (mkdir answers ENOENT, the parent exists).
  if (process.platform === 'linux') unwritable.push(['a folder mkdir cannot create (/proc)', '/proc/segbid-nope/brief']);
  it.each(unwritable)('--out at %s: one line, exit 2, no hang', (_what, out) => {
    const config = configFile(smallConfig({ lineItems: 2 }));
    const target = out.startsWith('/') ? out : join(config, '..', out);
    const started = Date.now();
    const r = segbid(['brief', '--config', config, '--out', target], {}, 20_000);
    expect(Date.now() - started).toBeLessThan(15_000);
    expectOneLineUserError(r, /^segbid brief: /);
  });

  it('a valid config: exit 0, brief.html and brief.md written', () => {
    const r = segbid(['brief', '--config', configFile(smallConfig({ lineItems: 2 })), '--out', 'out/nested']);
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(join(r.dir, 'out/nested')).sort()).toEqual(['brief.html', 'brief.md']);
  });

  it('writeBrief runs the full validation (CONFIG_INVALID with every cross-reference error)', () => {
    let caught: unknown = null;
    try {
      writeBrief({ configPath: configFile(crossRefBadConfig()), outDir: mkdtempSync(join(tmpdir(), 'segbid-brief-out-')) });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(SegbidError);
    const e = caught as SegbidError;
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details.map((d) => `${d.path}: ${d.message}`)).toEqual(CROSS_REF_ERRORS);
  });
});
