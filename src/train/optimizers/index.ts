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
import { clipGradients, clippingOf, type Clipping, type StepGradient } from './clipping';
import { f, type AdamStep, type PenaltySums, type VariableUpdate } from './definition';
import { optimizerChoice, optimizerSchema, type OptimizerChoice, type OptimizerType } from './registry';

export type { AdamStep, PenaltySums, VariableUpdate } from './definition';
export type { Clipping, StepGradient } from './clipping';

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
  /** useEma's averages, by variable name (JS memory: only the steps' EMA pass reads them). */
  private readonly averages = new Map<string, Float32Array>();
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
  clipGradients(grads: readonly StepGradient[]): void {
    if (this.clipping) clipGradients(grads, this.clipping);
  }

  /**
   * Keras's `_update_model_variables_moving_average`, after the step's updates and before its
   * constraints and `endStep`: average ← m·average + (1 − m)·w, with m = 0 on the first update
   * (a copy) and emaMomentum after, in float32. True when this update is one whose weights Keras
   * then overwrites with the averages (every overwriteFrequency updates).
   */
  updateAverages(vars: readonly { name: string; data: Float32Array }[]): boolean {
    const ema = this.ema;
    if (!ema) return false;
    const m = this.iterations === 0 ? 0 : f(ema.momentum);
    const rest = f(1 - m);
    for (const { name, data } of vars) {
      let a = this.averages.get(name);
      if (!a) this.averages.set(name, (a = new Float32Array(data.length)));
      for (let i = 0; i < a.length; i++) a[i] = f(f(m * a[i]!) + f(rest * data[i]!));
    }
    return ema.overwriteFrequency !== null && (this.iterations + 1) % ema.overwriteFrequency === 0;
  }

  /** A variable's moving average (useEma, once the optimizer has stepped), else undefined. */
  average(name: string): Float32Array | undefined {
    return this.averages.get(name);
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

  /** Adam's coefficients for the next update and the variable's moments; null for an optimizer that is not Adam-like. */
  adamStep(name: string, size: number, lr: number): AdamStep | null {
    const { definition, config } = this.choice;
    if (!definition.adamStep) return null;
    return definition.adamStep(config, this.context(name, size, lr));
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
    for (const [name, data] of this.averages) slots.push({ name: `${name}/${AVERAGE_SLOT}`, data: data.slice() });
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
    this.averages.clear();
    if (state.iterations > 0 && this.ema)
      for (const v of variables) this.averages.set(v.name, byName.get(`${v.name}/${AVERAGE_SLOT}`)!.slice());
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
