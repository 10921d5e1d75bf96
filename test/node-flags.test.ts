/**
 * The production node flags (src/common/node-flags.ts) are the ones every entry point passes, and they do what
 * they are for: V8 starts with the young generation at its pinned size (16 MiB a semi-space), not at 1 MiB.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIDDER_NODE_FLAGS, SEMI_SPACE_MB, runsWithBidderFlags } from '../src/common/node-flags.js';
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
