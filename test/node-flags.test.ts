/**
 * The production node flags (src/common/node-flags.ts) are the ones every entry point passes, and they do what
 * they are for: V8 starts with the young generation at its pinned size (16 MiB a semi-space), not at 1 MiB.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIDDER_NODE_FLAGS, HUGE_PAGE_TUNABLE, SEMI_SPACE_MB, hugePageBytes, runsWithBidderFlags, runsWithHugePages, withHugePages } from '../src/common/node-flags.js';
import { PACKAGE_ROOT } from '../src/common/paths.js';

const read = (path: string) => readFileSync(resolve(PACKAGE_ROOT, path), 'utf8');

describe('bidder node flags', () => {
  it('npm start, the Docker image and bin/segbid.js pass every flag', () => {
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start;
    const cmd = /^CMD (\[.*\])$/m.exec(read('Dockerfile'));
    expect(cmd).not.toBeNull();
    const dockerArgs = JSON.parse(cmd![1]) as string[];
    const shebang = read('bin/segbid.js').split('\n')[0];
    for (const flag of BIDDER_NODE_FLAGS) {
      expect(start.split(' ')).toContain(flag);
      expect(dockerArgs).toContain(flag);
      expect(shebang.split(' ')).toContain(flag);
    }
    expect(dockerArgs.indexOf(BIDDER_NODE_FLAGS[0])).toBeLessThan(dockerArgs.indexOf('dist/src/cli/main.js'));
    // The huge-page tunable: an environment variable, so before node in the script and the shebang.
    const tunable = `GLIBC_TUNABLES=${HUGE_PAGE_TUNABLE}`;
    expect(start.split(' ').indexOf(tunable)).toBe(0);
    expect(shebang.split(' ').indexOf(tunable)).toBe(2);
    expect(read('Dockerfile')).toMatch(new RegExp(`^ENV .*\\b${tunable.replace(/\./g, '\\.')}\\b`, 'm'));
  });

  it('withHugePages adds the tunable to GLIBC_TUNABLES and keeps the others', () => {
    expect(withHugePages({ A: '1' })).toEqual({ A: '1', GLIBC_TUNABLES: HUGE_PAGE_TUNABLE });
    expect(withHugePages({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES).toBe(`glibc.malloc.arena_max=2:${HUGE_PAGE_TUNABLE}`);
    expect(withHugePages({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' }).GLIBC_TUNABLES).toBe('glibc.malloc.hugetlb=0'); // the caller's choice wins
    expect(runsWithHugePages(withHugePages({}))).toBe(true);
    expect(runsWithHugePages({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' })).toBe(false);
    expect(runsWithHugePages({})).toBe(false);
  });

  // Where the kernel gives transparent huge pages on request (madvise or always, Debian's default is madvise),
  // a 64 MB buffer (a store's size) lands on them with the tunable and not without it (madvise mode).
  const thp = existsSync('/sys/kernel/mm/transparent_hugepage/enabled') ? readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8') : '';
  it.skipIf(!/\[(madvise|always)\]/.test(thp) || hugePageBytes() === null)('a store-sized buffer gets huge pages with the tunable', () => {
    const probe = "const b=Buffer.alloc(64<<20,1);const m=/^AnonHugePages:\\s+(\\d+) kB$/m.exec(require('fs').readFileSync('/proc/self/smaps_rollup','utf8'));process.stdout.write(String(Number(m[1])*1024+b[5]-1))";
    const plainEnv = { ...process.env };
    delete plainEnv.GLIBC_TUNABLES;
    const huge = Number(execFileSync(process.execPath, ['-e', probe], { encoding: 'utf8', env: withHugePages(plainEnv) }));
    expect(huge).toBeGreaterThanOrEqual(32 << 20);
    if (thp.includes('[madvise]')) {
      const plain = Number(execFileSync(process.execPath, ['-e', probe], { encoding: 'utf8', env: plainEnv }));
      expect(plain).toBeLessThan(huge);
    }
  });

  it('node accepts them and sizes the young generation with them', () => {
    const probe = "const s=require('v8').getHeapSpaceStatistics().find(x=>x.space_name==='new_space');process.stdout.write(String(s.space_size))";
    const pinned = Number(execFileSync(process.execPath, [...BIDDER_NODE_FLAGS, '-e', probe], { encoding: 'utf8' }));
    const plain = Number(execFileSync(process.execPath, ['-e', probe], { encoding: 'utf8' }));
    expect(pinned).toBe(SEMI_SPACE_MB * 1024 * 1024);
    expect(plain).toBeLessThan(pinned); // V8's default starts small and grows (and shrinks) under load
  });

  it('runsWithBidderFlags reads the process arguments', () => {
    expect(runsWithBidderFlags([...BIDDER_NODE_FLAGS, '--enable-source-maps'])).toBe(true);
    expect(runsWithBidderFlags([BIDDER_NODE_FLAGS[0]])).toBe(false);
    expect(runsWithBidderFlags([])).toBe(false);
  });

  it('bin/segbid.js runs through its shebang', () => {
    const out = execFileSync(resolve(PACKAGE_ROOT, 'bin/segbid.js'), ['--help'], { encoding: 'utf8' });
    expect(out).toContain('serve');
  });
});
