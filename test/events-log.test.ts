import { appendFileSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { EventLog, LOG_MAGIC, frameRecord, listSegments, parseFsyncPolicy, readSegment, replayEventLog } from '../src/events/event-log.js';
import type { EventRecord, NoticeRecord } from '../src/events/types.js';
import { SegbidError } from '../src/common/errors.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'segbid-log-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function rec(i: number, over: Partial<NoticeRecord> = {}): NoticeRecord {
  return {
    k: 'win',
    t: 1_767_225_600_000 + i,
    at: 1_767_225_600,
    b: `bid-${i}`,
    li: 'li-a',
    cr: 'cr-a',
    sg: i % 2 ? 'loyal' : null,
    arm: 0,
    x: 'other',
    dl: null,
    ts: 0,
    bp: 4_000_000,
    p: 1_000_000 + i,
    ps: 'macro',
    bl: 0,
    lr: -1,
    mw: -1,
    u: '',
    ...over,
  };
}

function replayAll(dir: string): { records: EventRecord[]; stats: ReturnType<typeof replayEventLog> } {
  const records: EventRecord[] = [];
  const stats = replayEventLog(dir, (r) => records.push(r));
  return { records, stats };
}

describe('event log', () => {
  it('round-trips records through framing, close and replay', async () => {
    const dir = tempDir();
    const log = EventLog.open({ dir, fsync: 'interval:1000' });
    const written = Array.from({ length: 100 }, (_, i) => rec(i));
    for (const r of written) expect(log.append(r)).toBe(true);
    await log.close();
    const { records, stats } = replayAll(dir);
    expect(records).toEqual(written);
    expect(stats).toMatchObject({ segments: 1, records: 100, tornSegments: 0, corruptSegments: 0 });
  });

  it('close() writes and fsyncs everything buffered, whatever the policy', async () => {
    for (const fsync of ['never', 'interval:60000', 'always']) {
      const dir = tempDir();
      const log = EventLog.open({ dir, fsync, flushBytes: 1 << 30, flushMs: 60_000 });
      for (let i = 0; i < 10; i++) log.append(rec(i));
      await log.close();
      expect(replayAll(dir).records.length, fsync).toBe(10);
      expect(log.append(rec(99))).toBe(false); // closed: refused and counted
      expect(log.status.droppedRecords).toBe(1);
    }
  });

  it('always: the record is on disk before append() returns; interval: within the interval', async () => {
    const dir = tempDir();
    const log = EventLog.open({ dir, fsync: 'always' });
    log.append(rec(1));
    expect(replayAll(dir).records).toHaveLength(1); // read back without closing
    await log.close();

    const dir2 = tempDir();
    const log2 = EventLog.open({ dir: dir2, fsync: 'interval:20' });
    log2.append(rec(2));
    expect(replayAll(dir2).records).toHaveLength(0); // still buffered
    await new Promise((r) => setTimeout(r, 120));
    expect(replayAll(dir2).records).toHaveLength(1);
    await log2.close();
  });

  it('parses fsync policies', () => {
    expect(parseFsyncPolicy('always')).toEqual({ mode: 'always' });
    expect(parseFsyncPolicy('never')).toEqual({ mode: 'never' });
    expect(parseFsyncPolicy('interval:250')).toEqual({ mode: 'interval', ms: 250 });
    for (const bad of ['interval:', 'interval:0', 'interval:x', 'sometimes', '']) expect(() => parseFsyncPolicy(bad), bad).toThrow(SegbidError);
  });

  it('rotates by size; records never straddle segments; replay keeps the order', async () => {
    const dir = tempDir();
    const log = EventLog.open({ dir, fsync: 'never', maxSegmentBytes: 1024, flushBytes: 300 });
    const written = Array.from({ length: 200 }, (_, i) => rec(i));
    for (const r of written) log.append(r);
    await log.close();
    const segments = listSegments(dir);
    expect(segments.length).toBeGreaterThan(5);
    for (const s of segments) expect(statSync(join(dir, s)).size).toBeLessThan(1024 + 400);
    const { records, stats } = replayAll(dir);
    expect(records).toEqual(written);
    expect(stats.tornSegments + stats.corruptSegments).toBe(0);
  });

  it('a reopened log starts a new segment, never appending to an old one', async () => {
    const dir = tempDir();
    const a = EventLog.open({ dir, fsync: 'never' });
    a.append(rec(1));
    await a.close();
    const b = EventLog.open({ dir, fsync: 'never' });
    b.append(rec(2));
    await b.close();
    expect(listSegments(dir)).toEqual(['events-000000000001.seg', 'events-000000000002.seg']);
    expect(replayAll(dir).records.map((r) => (r as NoticeRecord).b)).toEqual(['bid-1', 'bid-2']);
  });

  it('stops cleanly at a torn last record, at every cut point, and goes on with the next segment', async () => {
    const dir = tempDir();
    const log = EventLog.open({ dir, fsync: 'never' });
    for (let i = 0; i < 5; i++) log.append(rec(i));
    await log.close();
    const [seg] = listSegments(dir);
    const full = readFileSync(join(dir, seg));
    const lastFrame = frameRecord(rec(4)).length;
    const later = EventLog.open({ dir, fsync: 'never' });
    later.append(rec(5));
    await later.close();
    for (let cut = 1; cut < lastFrame; cut++) {
      writeFileSync(join(dir, seg), full.subarray(0, full.length - cut));
      const { records, stats } = replayAll(dir);
      expect(records.map((r) => (r as NoticeRecord).b), `cut ${cut}`).toEqual(['bid-0', 'bid-1', 'bid-2', 'bid-3', 'bid-5']);
      expect(stats.tornSegments, `cut ${cut}`).toBe(1);
      expect(stats.corruptSegments).toBe(0);
    }
  });

  it('treats a zero-filled tail (crash after the file grew) as torn, a damaged middle as corrupt', async () => {
    const dir = tempDir();
    const log = EventLog.open({ dir, fsync: 'never' });
    for (let i = 0; i < 3; i++) log.append(rec(i));
    await log.close();
    const path = join(dir, listSegments(dir)[0]);
    const full = readFileSync(path);
    appendFileSync(path, Buffer.alloc(4096));
    let r = replayAll(dir);
    expect(r.records).toHaveLength(3);
    expect(r.stats.tornSegments).toBe(1);

    const damaged = Buffer.from(full);
    damaged[LOG_MAGIC.length + 8 + 2] ^= 0xff; // inside the first payload, with frames after it
    writeFileSync(path, damaged);
    r = replayAll(dir);
    expect(r.records).toHaveLength(0);
    expect(r.stats.corruptSegments).toBe(1);
  });

  it('torn-record tolerance holds for random truncations of random logs (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.nat(), (n, cutSeed) => {
        const frames = Array.from({ length: n }, (_, i) => frameRecord(rec(i)));
        const file = Buffer.concat([LOG_MAGIC, ...frames]);
        const cut = cutSeed % (file.length + 1);
        const got: EventRecord[] = [];
        const res = readSegment(file.subarray(0, cut), (r) => got.push(r));
        // Exactly the frames wholly inside the cut are read, in order.
        let whole = 0;
        let off = LOG_MAGIC.length;
        while (whole < n && off + frames[whole].length <= cut) off += frames[whole++].length;
        expect(got.length).toBe(cut < LOG_MAGIC.length ? 0 : whole);
        // A cut exactly between frames looks like a clean end (nothing was torn); anywhere else it is torn.
        expect(res.end).toBe(cut >= LOG_MAGIC.length && cut === off ? 'clean' : 'torn');
      }),
      { numRuns: 300 },
    );
  });

  it.skipIf(!existsSync('/dev/full'))('disk full: flags the failure, keeps answering, retries into a fresh segment without loss or duplicates', async () => {
    const dir = tempDir();
    const errors: string[] = [];
    const log = EventLog.open({ dir, fsync: 'never', flushBytes: 1 << 30, flushMs: 60_000, onError: (e) => errors.push(e.message) });
    for (let i = 0; i < 3; i++) expect(log.append(rec(i))).toBe(true);
    // Swap the segment's descriptor for /dev/full: every write now fails with ENOSPC, like a full disk.
    const internals = log as unknown as { fd: number };
    const realFd = internals.fd;
    internals.fd = openSync('/dev/full', 'w');
    expect(log.flush()).toBe(false);
    expect(log.status.ok).toBe(false);
    expect(log.status.writeErrors).toBeGreaterThanOrEqual(1);
    expect(errors.join()).toMatch(/ENOSPC|no space/i);
    // While failing: appends are answered (false = count as log_failed) and kept for the retry.
    expect(log.append(rec(3))).toBe(false);
    expect(log.status.failedRecords).toBe(1);
    // The disk comes back: the next flush opens a fresh segment and writes everything there.
    expect(log.flush()).toBe(true);
    expect(log.status.ok).toBe(true);
    expect(log.append(rec(4))).toBe(true);
    await log.close();
    const { records } = replayAll(dir);
    expect(records.map((r) => (r as NoticeRecord).b)).toEqual(['bid-0', 'bid-1', 'bid-2', 'bid-3', 'bid-4']);
    expect(readdirSync(dir).length).toBe(2);
    closeSync(realFd);
  });

  it('an unreadable log directory is an error; a missing one too', () => {
    expect(() => replayEventLog(join(tempDir(), 'nope'), () => {})).toThrow(SegbidError);
    const file = join(tempDir(), 'file');
    writeFileSync(file, 'x');
    expect(() => EventLog.open({ dir: file })).toThrow(SegbidError);
  });
});
