/**
 * Every optimizer regtrain trains with, its update math and its full state. Both training
 * paths (the autodiff reference step and the lean step) call the same per-variable update,
 * so they differ only in how the gradient was computed.
 *
 * The math is Keras 3's (keras/src/optimizers/{sgd,adam,adamw}.py, base_optimizer.py), one
 * float32 rounding per tensor operation, as a float32 backend computes it:
 * - decoupled weight decay first, apart from the gradient: w ← w − (w·wd)·lr;
 * - SGD: w ← w − lr·g; with momentum v ← m·v − lr·g, then w ← w + v (Nesterov: w ← w + m·v − lr·g);
 * - Adam: m ← m + (g − m)(1 − β₁); v ← v + (g² − v)(1 − β₂); (AMSGrad: v̂ ← max(v̂, v));
 *   α = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ); w ← w − m·α/(√v + ε), with t the 1-based update count;
 * - AdamW is Adam with a default weight decay of 0.004.
 * The lean step folds the kernel penalty's gradient l1·sign(w) + 2·l2·w into the same pass
 * (sign(0) = 0, as Keras); the reference step passes l1 = l2 = 0 because autodiff already
 * added it.
 */
import { optimizerChoice, optimizerSchema, type OptimizerChoice, type OptimizerType } from '../spec/training';
import { InputError } from '../errors';
import { Schedule, scheduleFrom } from './schedules';

const f = Math.fround;

/**
 * A tfjs variable's name as Keras writes it, `layer/variable`: tfjs-layers makes names unique per
 * process by appending `_N` to the variable's part (the second model built in a process has
 * `dense/kernel_1`); Keras's variable names (kernel, bias, gamma, beta, moving_mean…) never end so.
 */
export function kerasPath(name: string): string {
  return name.includes('/') ? name.replace(/_\d+$/, '') : name;
}

/** One variable's update: read `w` and `g`, write the new weights to `out` (which may be `w`). */
export interface VariableUpdate {
  name: string;
  w: Float32Array;
  g: Float32Array;
  out: Float32Array;
  /** Kernel penalty factors whose gradient is still to be added to `g` (float32 values). */
  l1: number;
  l2: number;
}

/** Σ|w| and Σw² at the weights before the update (the batch's penalty is taken there). */
export interface PenaltySums {
  abs: number;
  sq: number;
}

export interface NamedArray {
  name: string;
  data: Float32Array;
}

/** What a checkpoint keeps of an optimizer: the update count, the plateau scale and every slot. */
export interface OptimizerState {
  type: OptimizerType;
  iterations: number;
  learningRateScale: number;
  slots: NamedArray[];
}

/** An optimizer from a spec's `optimizer` section as written, e.g. `{ adam: { learningRate: 1e-3 } }`, defaults filled in. */
export function createOptimizer(section: unknown): Optimizer {
  return new Optimizer(optimizerChoice(optimizerSchema.parse(section)));
}

/**
 * Where an optimizer keeps a slot (a momentum or moment array): plain JS memory by default; the
 * lean step on tfjs-wasm keeps them on the wasm heap so its SIMD pass can reach them. `view()`
 * may move when the heap grows: take it after any allocation, use it before the next.
 */
export interface SlotStore {
  allocate(size: number): Slot;
}
export interface Slot {
  view(): Float32Array;
  dispose(): void;
}
const jsSlots: SlotStore = {
  allocate(size) {
    const data = new Float32Array(size);
    return { view: () => data, dispose: () => {} };
  },
};

/** Adam's per-step coefficients (float32) and one variable's moments, for a SIMD pass. */
export interface AdamStep {
  lr: number;
  wd: number;
  alpha: number;
  oneMinusB1: number;
  oneMinusB2: number;
  epsilon: number;
  m: Float32Array;
  v: Float32Array;
  vhat: Float32Array | null;
}

const SLOT_NAMES: Record<string, string[]> = {
  sgd: [],
  sgdMomentum: ['momentum'],
  adam: ['m', 'v'],
  adamAmsgrad: ['m', 'v', 'vhat'],
};

export class Optimizer {
  readonly type: OptimizerType;
  /** Updates applied so far (Keras's `optimizer.iterations`); schedules read it. */
  iterations = 0;
  /**
   * ReduceLROnPlateau's cut, as a factor on the schedule's value (1 until it acts). Keras
   * refuses ReduceLROnPlateau on a scheduled learning rate; regtrain scales the schedule.
   */
  learningRateScale = 1;
  private readonly schedule: Schedule;
  private readonly slots = new Map<string, Slot[]>();
  private slotStore: SlotStore = jsSlots;
  private readonly slotNames: string[];
  private readonly excluded: { re: RegExp; qualified: boolean }[];

  constructor(private readonly choice: OptimizerChoice) {
    this.type = choice.type;
    this.excluded = choice.config.excludeFromWeightDecay.map((p) => ({
      re: new RegExp(p),
      qualified: p.includes('/'),
    }));
    this.schedule = scheduleFrom(choice.config.learningRate);
    if (choice.type === 'sgd') this.slotNames = choice.config.momentum > 0 ? SLOT_NAMES.sgdMomentum! : SLOT_NAMES.sgd!;
    else this.slotNames = choice.config.amsgrad ? SLOT_NAMES.adamAmsgrad! : SLOT_NAMES.adam!;
  }

  /** The learning rate the next update uses. */
  learningRate(): number {
    return this.schedule(this.iterations) * this.learningRateScale;
  }

  /** Sets the learning rate in force now (ReduceLROnPlateau), as a scale on the schedule. */
  setLearningRate(lr: number): void {
    const scheduled = this.schedule(this.iterations);
    this.learningRateScale = scheduled > 0 ? lr / scheduled : 1;
  }

  /**
   * Whether weight decay applies to this variable: not when one of excludeFromWeightDecay's
   * regular expressions is found in its short name (Keras 3), or, for a pattern with a `/`, in its
   * layer-qualified name (src/spec/training.ts).
   */
  decays(name: string): boolean {
    if (!(this.choice.config.weightDecay > 0)) return false;
    const path = kerasPath(name);
    const short = path.slice(path.lastIndexOf('/') + 1);
    return !this.excluded.some(({ re, qualified }) => re.test(qualified ? path : short));
  }

  /**
   * For SGD without momentum, the float32 weight decay of this variable (0 when none): its update
   * is then w ← w − (w·wd)·lr − lr·(g + penalty gradient), which the lean step runs as a SIMD
   * pass, bit-identical to `update`. Null for every other optimizer.
   */
  plainSgdDecay(name: string): number | null {
    if (this.choice.type !== 'sgd' || this.choice.config.momentum !== 0) return null;
    return this.decays(name) ? f(this.choice.config.weightDecay) : 0;
  }

  /** Keeps slots in `store` from now on (existing ones move there). */
  useSlotStore(store: SlotStore): void {
    for (const [name, slots] of this.slots) {
      const moved = slots.map((old) => {
        const data = old.view().slice();
        const slot = store.allocate(data.length);
        slot.view().set(data);
        old.dispose();
        return slot;
      });
      this.slots.set(name, moved);
    }
    this.slotStore = store;
  }

  /** Allocates a variable's slots if it has none yet (before taking views of other memory). */
  ensureSlots(name: string, size: number): void {
    this.slotsFor(name, size);
  }

  /** Adam's coefficients for the next update and the variable's moments; null for SGD. */
  adamStep(name: string, size: number, lr: number): AdamStep | null {
    if (this.choice.type === 'sgd') return null;
    const c = this.choice.config;
    const t = this.iterations + 1;
    const lr32 = f(lr);
    // Keras computes these in float32: β^t, then α = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ).
    const b1t = f(Math.pow(f(c.beta1), t));
    const b2t = f(Math.pow(f(c.beta2), t));
    const [m, v, vhat] = this.slotsFor(name, size).map((s) => s.view());
    return {
      lr: lr32,
      wd: this.decays(name) ? f(c.weightDecay) : 0,
      alpha: f(f(lr32 * f(Math.sqrt(f(1 - b2t)))) / f(1 - b1t)),
      oneMinusB1: f(1 - f(c.beta1)),
      oneMinusB2: f(1 - f(c.beta2)),
      epsilon: f(c.epsilon),
      m: m!,
      v: v!,
      vhat: vhat ?? null,
    };
  }

  /** Frees the slots (the optimizer cannot step afterwards). */
  dispose(): void {
    for (const slots of this.slots.values()) for (const s of slots) s.dispose();
    this.slots.clear();
  }

  /** Applies one variable's update with learning rate `lr` (from learningRate(), once per step). */
  update(u: VariableUpdate, lr: number): PenaltySums {
    const n = u.w.length;
    if (u.g.length !== n || u.out.length !== n)
      throw new Error(`optimizer: ${u.name}: weights, gradient and output differ in size`);
    const lr32 = f(lr);
    const wd = this.decays(u.name) ? f(this.choice.config.weightDecay) : 0;
    const l2x2 = f(2 * u.l2);
    if (this.choice.type === 'sgd') {
      const c = this.choice.config;
      if (c.momentum === 0) return sgdPass(u.w, u.g, u.out, u.l1, l2x2, lr32, wd);
      return sgdMomentumPass(
        u.w,
        u.g,
        this.slotsFor(u.name, n)[0]!.view(),
        u.out,
        u.l1,
        l2x2,
        lr32,
        wd,
        f(c.momentum),
        c.nesterov,
      );
    }
    return adamPass(u, this.adamStep(u.name, n, lr)!);
  }

  /** Counts the step: call once after every variable was updated. */
  endStep(): void {
    this.iterations++;
  }

  private slotsFor(name: string, size: number): Slot[] {
    let s = this.slots.get(name);
    if (!s) {
      s = this.slotNames.map(() => this.slotStore.allocate(size));
      this.slots.set(name, s);
    }
    return s;
  }

  state(): OptimizerState {
    const slots: NamedArray[] = [];
    for (const [name, arrays] of this.slots)
      arrays.forEach((slot, i) => slots.push({ name: `${name}/${this.slotNames[i]}`, data: slot.view().slice() }));
    return { type: this.type, iterations: this.iterations, learningRateScale: this.learningRateScale, slots };
  }

  /**
   * Restores a state from state(). `variables` are the model's trainable variables with
   * their sizes: every one must have every slot once the optimizer has stepped.
   */
  setState(state: OptimizerState, variables: { name: string; size: number }[]): void {
    if (state.type !== this.type)
      throw new InputError(`the checkpoint holds ${state.type} state, the spec trains with ${this.type}`);
    const byName = new Map(state.slots.map((s) => [s.name, s.data]));
    if (state.iterations > 0 && this.slotNames.length) {
      for (const v of variables) {
        for (const slot of this.slotNames) {
          const data = byName.get(`${v.name}/${slot}`);
          if (!data || data.length !== v.size)
            throw new InputError(`the checkpoint has no ${slot} state for ${v.name}`);
        }
      }
    }
    this.dispose();
    if (state.iterations > 0 && this.slotNames.length) {
      for (const v of variables) {
        this.slotsFor(v.name, v.size).forEach((slot, i) =>
          slot.view().set(byName.get(`${v.name}/${this.slotNames[i]}`)!),
        );
      }
    }
    this.iterations = state.iterations;
    this.learningRateScale = state.learningRateScale;
  }
}

/**
 * The penalty gradient added to the data gradient, rounded where tfjs's op-by-op path rounds
 * (g + l1·sign, + l2x2·w). The sign is branch-free: a mispredicted branch per weight made
 * these loops 3× slower.
 */
function sgdPass(
  W: Float32Array,
  G: Float32Array,
  D: Float32Array,
  l1: number,
  l2x2: number,
  lr: number,
  wd: number,
): PenaltySums {
  let abs = 0;
  let sq = 0;
  for (let i = 0; i < W.length; i++) {
    const w = W[i]!;
    const s = +(w > 0) - +(w < 0);
    abs += s * w;
    sq += w * w;
    const g = f(f(G[i]! + l1 * s) + f(l2x2 * w));
    const decayed = wd ? f(w - f(f(w * wd) * lr)) : w;
    D[i] = decayed - f(lr * g);
  }
  return { abs, sq };
}

function sgdMomentumPass(
  W: Float32Array,
  G: Float32Array,
  V: Float32Array,
  D: Float32Array,
  l1: number,
  l2x2: number,
  lr: number,
  wd: number,
  m: number,
  nesterov: boolean,
): PenaltySums {
  let abs = 0;
  let sq = 0;
  for (let i = 0; i < W.length; i++) {
    const w = W[i]!;
    const s = +(w > 0) - +(w < 0);
    abs += s * w;
    sq += w * w;
    const g = f(f(G[i]! + l1 * s) + f(l2x2 * w));
    const decayed = wd ? f(w - f(f(w * wd) * lr)) : w;
    const lrg = f(lr * g);
    const v = f(f(m * V[i]!) - lrg);
    V[i] = v;
    D[i] = decayed + (nesterov ? f(f(m * v) - lrg) : v);
  }
  return { abs, sq };
}

/** Adam's update over one variable (or, for a SIMD pass's tail, a slice: `offset` into the moments). */
export function adamPass(u: VariableUpdate, a: AdamStep, offset = 0): PenaltySums {
  const { w: W, g: G, out: D, l1 } = u;
  const l2x2 = f(2 * u.l2);
  const { lr, wd, alpha, oneMinusB1, oneMinusB2, epsilon: eps } = a;
  const M = a.m.subarray(offset, offset + W.length);
  const V = a.v.subarray(offset, offset + W.length);
  const VHat = a.vhat?.subarray(offset, offset + W.length) ?? null;
  let abs = 0;
  let sq = 0;
  for (let i = 0; i < W.length; i++) {
    const w = W[i]!;
    const s = +(w > 0) - +(w < 0);
    abs += s * w;
    sq += w * w;
    const g = f(f(G[i]! + l1 * s) + f(l2x2 * w));
    const decayed = wd ? f(w - f(f(w * wd) * lr)) : w;
    const m = f(M[i]! + f(f(g - M[i]!) * oneMinusB1));
    let v = f(V[i]! + f(f(f(g * g) - V[i]!) * oneMinusB2));
    M[i] = m;
    V[i] = v;
    if (VHat) {
      v = Math.max(VHat[i]!, v);
      VHat[i] = v;
    }
    D[i] = decayed - f(f(m * alpha) / f(f(Math.sqrt(v)) + eps));
  }
  return { abs, sq };
}
