/** A generator's state, four uint32s: `new Rng(state)` continues exactly where it was taken. */
export type RngState = readonly number[];

/** Salt so the validation split draws from its own stream, not the same one as weight init with the same seed. */
const SPLIT_STREAM_SALT = 0x243f6a88;

/**
 * The random streams of one run, derived once from the spec's seed before anything is built:
 * the validation split, weight initialization, the batch shuffle and dropout masks. Each module
 * receives its stream's starting state (`new Rng(seeds.init)`) instead of deriving its own.
 */
export interface RunSeeds {
  readonly split: RngState;
  readonly init: RngState;
  readonly shuffle: RngState;
  readonly dropout: RngState;
  /** Data augmentation's draws: its own stream, so turning augmentation on changes no other. */
  readonly augmentation: RngState;
}

export function runSeeds(seed: number): RunSeeds {
  return {
    split: new Rng((seed ^ SPLIT_STREAM_SALT) >>> 0).state(),
    init: Rng.derive(seed, 'init').state(),
    shuffle: Rng.derive(seed, 'shuffle').state(),
    dropout: Rng.derive(seed, 'dropout').state(),
    augmentation: Rng.derive(seed, 'augmentation').state(),
  };
}

/**
 * A small seeded generator (sfc32, seeded through splitmix32) so that splits, shuffles
 * and initializers are reproducible from one seed. Its state is four uint32s that can be
 * saved and restored (checkpoints).
 */
export class Rng {
  private s: Uint32Array;

  constructor(seed: number | readonly number[]) {
    if (typeof seed === 'number') {
      let x = seed >>> 0;
      const next = (): number => {
        x = (x + 0x9e3779b9) >>> 0;
        let z = x;
        z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
        z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
        return (z ^ (z >>> 16)) >>> 0;
      };
      this.s = Uint32Array.from([next(), next(), next(), next()]);
      for (let i = 0; i < 12; i++) this.nextUint32();
    } else {
      if (seed.length !== 4) throw new Error('Rng state must be four uint32 values');
      this.s = Uint32Array.from(seed);
    }
  }

  /**
   * An independent stream for one purpose ("init", "shuffle", "dropout"…) of a seed, so that
   * drawing more numbers for one purpose never shifts another, and seed+1 is not another stream's seed.
   */
  static derive(seed: number, stream: string): Rng {
    let h = 0x811c9dc5;
    for (let i = 0; i < stream.length; i++) h = Math.imul(h ^ stream.charCodeAt(i), 0x01000193) >>> 0;
    const a = new Rng(seed).nextUint32();
    const b = new Rng(h).nextUint32();
    const rng = new Rng([a, b, (a ^ b ^ 0x9e3779b9) >>> 0, (a + b + 1) >>> 0]);
    for (let i = 0; i < 12; i++) rng.nextUint32();
    return rng;
  }

  state(): number[] {
    return Array.from(this.s);
  }

  nextUint32(): number {
    const s = this.s;
    const t = (((s[0]! + s[1]!) >>> 0) + s[3]!) >>> 0;
    s[3] = (s[3]! + 1) >>> 0;
    s[0] = s[1]! ^ (s[1]! >>> 9);
    s[1] = (s[2]! + (s[2]! << 3)) >>> 0;
    s[2] = ((s[2]! << 21) | (s[2]! >>> 11)) >>> 0;
    s[2] = (s[2]! + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T extends Int32Array | number[]>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = a[i]!;
      a[i] = a[j]!;
      a[j] = tmp;
    }
    return a;
  }

  /** A permutation of 0..n-1. */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    return this.shuffle(p);
  }
}
