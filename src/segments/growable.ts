/**
 * Growable typed arrays for the offline compiler: millions of users' keys, rows and scores without the
 * per-element cost of JS arrays (a number[] of 3M hashes is ~24 MB of boxed-or-not doubles plus growth copies;
 * a Uint32Array is 4 bytes an element). Growth doubles, so appends are amortised O(1). Not for the bid path.
 */
export class GrowableU32 {
  data: Uint32Array;
  length = 0;

  constructor(initial = 1024) {
    this.data = new Uint32Array(Math.max(16, initial));
  }

  push(v: number): void {
    if (this.length === this.data.length) this.reserve(this.length + 1);
    this.data[this.length++] = v;
  }

  /** Makes room for at least `n` elements in total (contents kept, new space zeroed). */
  reserve(n: number): void {
    if (n <= this.data.length) return;
    let size = this.data.length * 2;
    while (size < n) size *= 2;
    const grown = new Uint32Array(size);
    grown.set(this.data.subarray(0, this.length));
    this.data = grown;
  }

  /** A view of the used part (no copy). */
  view(): Uint32Array {
    return this.data.subarray(0, this.length);
  }
}

export class GrowableI32 {
  data: Int32Array;
  length = 0;

  constructor(initial = 1024) {
    this.data = new Int32Array(Math.max(16, initial));
  }

  push(v: number): void {
    if (this.length === this.data.length) {
      const grown = new Int32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = v;
  }

  view(): Int32Array {
    return this.data.subarray(0, this.length);
  }
}

/** Bytes: a flag or a small code per user or per key (the compiler's record flags, key kinds). */
export class GrowableU8 {
  data: Uint8Array;
  length = 0;

  constructor(initial = 1024) {
    this.data = new Uint8Array(Math.max(16, initial));
  }

  push(v: number): void {
    if (this.length === this.data.length) {
      const grown = new Uint8Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = v;
  }
}
