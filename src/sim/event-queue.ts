/**
 * A time-ordered queue of simulated feedback events (win/loss notices, impressions, clicks, conversions), as a
 * binary min-heap over parallel typed arrays: millions of events per simulated day without an object each.
 * Ties pop in insertion order (a sequence number breaks them), so a run is deterministic.
 */
export const EV = { win: 1, loss: 2, impression: 3, click: 4, conversion: 5 } as const;

export class EventQueue {
  private time = new Float64Array(1024);
  private seq = new Float64Array(1024);
  private kind = new Uint8Array(1024);
  private li = new Int32Array(1024);
  private handle = new Float64Array(1024);
  private amount = new Float64Array(1024);
  private n = 0;
  private counter = 0;
  /* the popped event */
  t = 0;
  k = 0;
  lineItem = 0;
  h = 0;
  a = 0;

  get size(): number {
    return this.n;
  }

  peekTime(): number {
    return this.n === 0 ? Infinity : this.time[0];
  }

  push(t: number, kind: number, lineItem: number, handle: number, amount: number): void {
    if (this.n === this.time.length) this.grow();
    let i = this.n++;
    const s = this.counter++;
    // Sift up.
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.time[p] < t || (this.time[p] === t && this.seq[p] < s)) break;
      this.move(p, i);
      i = p;
    }
    this.set(i, t, s, kind, lineItem, handle, amount);
  }

  /** Pops the earliest event into (t, k, lineItem, h, a). */
  pop(): void {
    this.t = this.time[0];
    this.k = this.kind[0];
    this.lineItem = this.li[0];
    this.h = this.handle[0];
    this.a = this.amount[0];
    const last = --this.n;
    if (last === 0) return;
    const t = this.time[last], s = this.seq[last], k = this.kind[last], l = this.li[last], h = this.handle[last], a = this.amount[last];
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= last) break;
      if (c + 1 < last && (this.time[c + 1] < this.time[c] || (this.time[c + 1] === this.time[c] && this.seq[c + 1] < this.seq[c]))) c++;
      if (t < this.time[c] || (t === this.time[c] && s < this.seq[c])) break;
      this.move(c, i);
      i = c;
    }
    this.set(i, t, s, k, l, h, a);
  }

  private move(from: number, to: number): void {
    this.time[to] = this.time[from];
    this.seq[to] = this.seq[from];
    this.kind[to] = this.kind[from];
    this.li[to] = this.li[from];
    this.handle[to] = this.handle[from];
    this.amount[to] = this.amount[from];
  }

  private set(i: number, t: number, s: number, k: number, l: number, h: number, a: number): void {
    this.time[i] = t;
    this.seq[i] = s;
    this.kind[i] = k;
    this.li[i] = l;
    this.handle[i] = h;
    this.amount[i] = a;
  }

  private grow(): void {
    const size = this.time.length * 2;
    const f = (a: Float64Array) => { const b = new Float64Array(size); b.set(a); return b; };
    this.time = f(this.time);
    this.seq = f(this.seq);
    this.handle = f(this.handle);
    this.amount = f(this.amount);
    const k = new Uint8Array(size);
    k.set(this.kind);
    this.kind = k;
    const l = new Int32Array(size);
    l.set(this.li);
    this.li = l;
  }
}
