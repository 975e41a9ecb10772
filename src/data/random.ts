/**
 * Small seeded pseudo-random number generator (mulberry32) and helpers.
 * Used wherever results must be reproducible from a seed: data splits,
 * patch sampling, augmentation.
 */

/** A generator returning uniformly distributed numbers in [0, 1). */
export type Rng = () => number;

/** Creates a mulberry32 generator; the same seed always gives the same sequence. */
export function createRng(seed: number): Rng {
  if (!Number.isFinite(seed)) throw new Error(`createRng: seed must be a finite number, got ${seed}`);
  let state = Math.trunc(seed) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform integer in [lowInclusive, highExclusive). */
export function randInt(rng: Rng, lowInclusive: number, highExclusive: number): number {
  if (!(highExclusive > lowInclusive)) {
    throw new Error(`randInt: empty range [${lowInclusive}, ${highExclusive})`);
  }
  return lowInclusive + Math.floor(rng() * (highExclusive - lowInclusive));
}

/** Uniform real number in [low, high). */
export function uniform(rng: Rng, low: number, high: number): number {
  return low + rng() * (high - low);
}

/** Fisher–Yates shuffle in place; returns the same array for chaining. */
export function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randInt(rng, 0, i + 1);
    const held = items[i];
    items[i] = items[j];
    items[j] = held;
  }
  return items;
}
