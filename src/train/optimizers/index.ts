/**
 * The optimizer a run trains with: the learning rate (its schedule and ReduceLROnPlateau's scale),
 * weight decay's exclusions, the slots and the update count (its full checkpointed state), around
 * the update of the optimizer the spec names (one file each in this folder, listed in
 * `registry.ts`). Both training paths (the autodiff reference step and the lean step) call the
 * same per-variable update, so they differ only in how the gradient was computed.
 *
 * The math is Keras 3's (keras/src/optimizers/{sgd,adam,adamw}.py, base_optimizer.py), one
 * float32 rounding per tensor operation, as a float32 backend computes it; decoupled weight decay
 * first, apart from the gradient: w ← w − (w·wd)·lr. The lean step folds the kernel penalty's
 * gradient l1·sign(w) + 2·l2·w into the same pass (sign(0) = 0, as Keras); the reference step
 * passes l1 = l2 = 0 because autodiff already added it.
 */
import { InputError } from '../../errors';
import { Schedule, scheduleFrom } from '../schedules';
import { clipGradients, clippingOf, type ClipPasses, type Clipping, type StepGradient } from './clipping';
import { f, type AdamStep, type PenaltySums, type VariableUpdate } from './definition';
import { optimizerChoice, optimizerSchema, type OptimizerChoice, type OptimizerType } from './registry';

export type { AdamStep, PenaltySums, VariableUpdate } from './definition';
export type { ClipPasses, Clipping, StepGradient } from './clipping';

/** Keras's use_ema with its defaults filled in (momentum 0.99, no overwrite during training). */
export interface MovingAverageConfig {
  momentum: number;
  overwriteFrequency: number | null;
}

/** The slot name of a variable's moving average in a checkpoint (Keras's optimizer variable `…_average`). */
const AVERAGE_SLOT = 'average';

/**
 * A tfjs variable's name as Keras writes it, `layer/variable`: tfjs-layers makes names unique per
 * process by appending `_N` to the variable's part (the second model built in a process has
 * `dense/kernel_1`); Keras's variable names (kernel, bias, gamma, beta, moving_mean…) never end so.
 */
export function kerasPath(name: string): string {
  return name.includes('/') ? name.replace(/_\d+$/, '') : name;
}

export interface NamedArray {
  name: string;
  data: Float32Array;
}

/** useEma's pass over one variable from element `from` on: a ← m·a + rest·w, in float32 (Keras's formula). */
export function emaPass(a: Float32Array, w: Float32Array, m: number, rest: number, from = 0): void {
  for (let i = from; i < a.length; i++) a[i] = f(f(m * a[i]!) + f(rest * w[i]!));
}

/**
 * A variable the EMA reads: its weights, or (the lean step) a function giving a view of them, taken only
 * after the averages are allocated (an allocation on the wasm heap may move it), with its size.
 */
export type AveragedVariable =
  { name: string; data: Float32Array } | { name: string; size: number; data: () => Float32Array };

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
  private readonly slotNames: readonly string[];
  private readonly excluded: { re: RegExp; qualified: boolean }[];
  /** The one gradient clipping option set (clipnorm, clipvalue or globalClipnorm), or null. */
  readonly clipping: Clipping | null;
  /** The moving average of the weights (useEma), or null. */
  readonly ema: MovingAverageConfig | null;
  /** useEma's averages, by variable name, kept where the slots are (the lean step's SIMD pass reads them on the wasm heap). */
  private readonly averages = new Map<string, Slot>();
  /** A learning rate that overrides the schedule and the plateau's scale (SWA's SWALR), or null. */
  private fixedLearningRate: number | null = null;

  constructor(private readonly choice: OptimizerChoice) {
    this.type = choice.type;
    const c = choice.config;
    this.clipping = clippingOf(c);
    this.ema = c.useEma
      ? { momentum: c.emaMomentum ?? 0.99, overwriteFrequency: c.emaOverwriteFrequency ?? null }
      : null;
    this.excluded = choice.config.excludeFromWeightDecay.map((p) => ({
      re: new RegExp(p),
      qualified: p.includes('/'),
    }));
    this.schedule = scheduleFrom(choice.config.learningRate);
    this.slotNames = choice.definition.slots(choice.config);
  }

  /** The learning rate the next update uses. */
  learningRate(): number {
    return this.fixedLearningRate ?? this.schedule(this.iterations) * this.learningRateScale;
  }

  /**
   * Fixes the learning rate of the next updates, over the schedule and ReduceLROnPlateau's scale
   * (SWA's SWALR, set at each epoch's start from the SWA callback's own state); null lets the
   * schedule rule again.
   */
  fixLearningRate(lr: number | null): void {
    this.fixedLearningRate = lr;
  }

  /**
   * Keras's `_clip_gradients` over one step's gradients, in place (./clipping.ts); nothing without a
   * clipping option. The update then takes each gradient with l1 = l2 = 0.
   */
  clipGradients(grads: readonly StepGradient[], passes?: ClipPasses): void {
    if (this.clipping) clipGradients(grads, this.clipping, passes);
  }

  /**
   * Keras's `_update_model_variables_moving_average`, after the step's updates and before its
   * constraints and `endStep`: average ← m·average + (1 − m)·w, with m = 0 on the first update
   * (a copy) and emaMomentum after, in float32. True when this update is one whose weights Keras
   * then overwrites with the averages (every overwriteFrequency updates).
   */
  updateAverages(vars: readonly AveragedVariable[], pass = emaPass): boolean {
    const ema = this.ema;
    if (!ema) return false;
    const m = this.iterations === 0 ? 0 : f(ema.momentum);
    const rest = f(1 - m);
    // Every average allocated before any view is taken (`pass` and `data()` read views).
    const slots = vars.map((v) => this.averageSlot(v.name, 'size' in v ? v.size : v.data.length));
    vars.forEach((v, i) => pass(slots[i]!.view(), typeof v.data === 'function' ? v.data() : v.data, m, rest));
    return ema.overwriteFrequency !== null && (this.iterations + 1) % ema.overwriteFrequency === 0;
  }

  /** A variable's moving average (useEma, once the optimizer has stepped), as a copy, else undefined. */
  average(name: string): Float32Array | undefined {
    return this.averages.get(name)?.view().slice();
  }

  private averageSlot(name: string, size: number): Slot {
    let a = this.averages.get(name);
    if (!a) this.averages.set(name, (a = this.slotStore.allocate(size)));
    return a;
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
    if (!this.choice.definition.isPlainSgd?.(this.choice.config)) return null;
    return this.decays(name) ? f(this.choice.config.weightDecay) : 0;
  }

  /** Keeps slots in `store` from now on (existing ones move there). */
  useSlotStore(store: SlotStore): void {
    const move = (old: Slot): Slot => {
      const data = old.view().slice();
      const slot = store.allocate(data.length);
      slot.view().set(data);
      old.dispose();
      return slot;
    };
    for (const [name, slots] of this.slots) this.slots.set(name, slots.map(move));
    for (const [name, average] of this.averages) this.averages.set(name, move(average));
    this.slotStore = store;
  }

  /** Allocates a variable's slots if it has none yet (before taking views of other memory). */
  ensureSlots(name: string, size: number): void {
    this.slotsFor(name, size);
  }

  /** Adam's coefficients for the next update and the variable's moments; null for an optimizer that is not Adam-like. */
  adamStep(name: string, size: number, lr: number): AdamStep | null {
    const { definition, config } = this.choice;
    if (!definition.adamStep) return null;
    return definition.adamStep(config, this.context(name, size, lr));
  }

  /** Frees the slots and averages (the optimizer cannot step afterwards). */
  dispose(): void {
    for (const slots of this.slots.values()) for (const s of slots) s.dispose();
    this.slots.clear();
    for (const a of this.averages.values()) a.dispose();
    this.averages.clear();
  }

  /** Applies one variable's update with learning rate `lr` (from learningRate(), once per step). */
  update(u: VariableUpdate, lr: number): PenaltySums {
    const n = u.w.length;
    if (u.g.length !== n || u.out.length !== n)
      throw new Error(`optimizer: ${u.name}: weights, gradient and output differ in size`);
    return this.choice.definition.update(u, this.choice.config, this.context(u.name, n, lr));
  }

  /** The float32 learning rate and weight decay, the update count and the slots of the next update of `name`. */
  private context(name: string, size: number, lr: number) {
    const slots = this.slotsFor(name, size).map((s) => s.view());
    const wd = this.decays(name) ? f(this.choice.config.weightDecay) : 0;
    return { lr: f(lr), wd, t: this.iterations + 1, slots };
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
    for (const [name, a] of this.averages) slots.push({ name: `${name}/${AVERAGE_SLOT}`, data: a.view().slice() });
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
    if (state.iterations > 0 && this.ema) {
      for (const v of variables) {
        const data = byName.get(`${v.name}/${AVERAGE_SLOT}`);
        if (!data || data.length !== v.size)
          throw new InputError(`the checkpoint has no moving average (useEma) of ${v.name}`);
      }
    }
    this.dispose();
    if (state.iterations > 0 && this.ema)
      for (const v of variables)
        this.averageSlot(v.name, v.size)
          .view()
          .set(byName.get(`${v.name}/${AVERAGE_SLOT}`)!);
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
