/**
 * A small seeded PRNG (sfc32, seeded through splitmix32) with the samplers the allocator needs: uniform,
 * normal, gamma (Marsaglia-Tsang) and beta. State is four integers in the object: no closure, no allocation per
 * draw, so it may also serve the hot path (uniform()). Deterministic: same seed, same stream (simulations,
 * property tests).
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare = 0;
  private hasSpare = false;

  constructor(seed: number) {
    let s = seed >>> 0;
    const split = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = split();
    this.b = split();
    this.c = split();
    this.d = split() | 1;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    const a = this.a, b = this.b, c = this.c, d = this.d;
    const t = (((a + b) | 0) + d) | 0;
    this.d = (d + 1) | 0;
    this.a = b ^ (b >>> 9);
    this.b = (c + (c << 3)) | 0;
    const r = (c << 21) | (c >>> 11);
    this.c = (r + t) | 0;
    return (t >>> 0) / 4294967296;
  }

  /** Standard normal (Marsaglia polar method, one spare kept). */
  normal(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    let u = 0, v = 0, s = 0;
    do {
      u = this.uniform() * 2 - 1;
      v = this.uniform() * 2 - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const m = Math.sqrt((-2 * Math.log(s)) / s);
    this.spare = v * m;
    this.hasSpare = true;
    return u * m;
  }

  /**
   * Gamma(shape, scale 1), shape > 0: Marsaglia & Tsang (shape < 1 by the boost U^(1/shape)); above shape 30,
   * the Wilson-Hilferty cube-of-normal approximation (one normal draw; relative error of the quantiles well
   * under 1e-3 there), because posteriors of click counts reach shapes of 1e5 and this runs thousands of times
   * per reallocation.
   */
  gamma(shape: number): number {
    if (shape > 30) {
      const c = 1 / (9 * shape);
      const v = 1 - c + this.normal() * Math.sqrt(c);
      return v > 0 ? shape * v * v * v : 0;
    }
    if (shape < 1) {
      const u = this.uniform();
      return this.gamma(shape + 1) * Math.pow(u === 0 ? 1e-300 : u, 1 / shape);
    }
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x = 0, v = 0;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = this.uniform();
      if (u < 1 - 0.0331 * x * x * x * x) return d * v;
      if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
    }
  }

  /** Beta(a, b), a, b > 0. */
  beta(a: number, b: number): number {
    const x = this.gamma(a);
    const y = this.gamma(b);
    return x / (x + y);
  }
}
