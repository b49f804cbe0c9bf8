/**
 * Data augmentation on training batches: the spec's `data.augmentation` steps (src/spec/augmentation.ts)
 * applied in order to each batch the training loop gathers, after normalization and before the
 * training step, with randomness from the run's own seeded stream (its state goes into the
 * checkpoint with the loop's, so a resumed run draws what the uninterrupted one would have).
 * Validation, test, evaluate and predict never see it.
 */
import type { Rng } from '../../rng';
import {
  augmentationType,
  factorRange,
  mixesLabels,
  type AugmentationStep,
  type AugmentationType,
} from '../../spec/augmentation';
import {
  affineTransform,
  flipImage,
  rotationMatrix,
  translationMatrix,
  zoomMatrix,
  type Affine,
  type Fill,
} from './geometry';
import { drawEraseBox, eraseBox } from './erasing';
import { cutMix, mixUp } from './mixing';
import { uniform } from './random';

export interface ImageGeometry {
  height: number;
  width: number;
  classes: number;
}

const FASHION_MNIST: ImageGeometry = { height: 28, width: 28, classes: 10 };

export class Augmenter {
  /** True when a step mixes labels: apply() then returns soft labels. */
  readonly soft: boolean;
  private readonly scratch: Float32Array;

  constructor(
    private readonly steps: readonly AugmentationStep[],
    private readonly rng: Rng,
    private readonly geometry: ImageGeometry = FASHION_MNIST,
  ) {
    this.soft = mixesLabels(steps);
    this.scratch = new Float32Array(geometry.height * geometry.width);
  }

  /**
   * Augments `count` images (row-major, normalized) in place; returns the soft labels (count × classes)
   * when a step mixes labels, else null (the integer labels stand).
   */
  apply(images: Float32Array, labels: ArrayLike<number>, count: number): Float32Array | null {
    const { height: h, width: w, classes } = this.geometry;
    const size = h * w;
    let soft: Float32Array | null = null;
    if (this.soft) {
      soft = new Float32Array(count * classes);
      for (let i = 0; i < count; i++) soft[i * classes + labels[i]!] = 1;
    }
    const rng = this.rng;
    const affine = (fill: Fill, matrixFor: () => Affine) => {
      for (let i = 0; i < count; i++) {
        this.scratch.set(images.subarray(i * size, (i + 1) * size));
        affineTransform(this.scratch, 0, images, i * size, h, w, matrixFor(), fill);
      }
    };
    for (const step of this.steps) {
      if (step.randomTranslation) {
        const s = step.randomTranslation;
        const [hl, hu] = factorRange(s.heightFactor);
        const [wl, wu] = factorRange(s.widthFactor);
        affine(s, () => {
          const dy = uniform(rng, hl, hu) * h;
          const dx = uniform(rng, wl, wu) * w;
          return translationMatrix(dx, dy);
        });
      } else if (step.randomRotation) {
        const [lo, hi] = factorRange(step.randomRotation.factor);
        affine(step.randomRotation, () => rotationMatrix(uniform(rng, lo, hi) * 2 * Math.PI, h, w));
      } else if (step.randomZoom) {
        const s = step.randomZoom;
        const [hl, hu] = factorRange(s.heightFactor);
        const wr = s.widthFactor === null ? null : factorRange(s.widthFactor);
        affine(s, () => {
          const zy = 1 + uniform(rng, hl, hu);
          const zx = wr ? 1 + uniform(rng, wr[0], wr[1]) : zy;
          return zoomMatrix(zx, zy, h, w);
        });
      } else if (step.randomFlip) {
        const mode = step.randomFlip.mode;
        for (let i = 0; i < count; i++) {
          const hz = mode !== 'vertical' && rng.next() < 0.5;
          const vt = mode !== 'horizontal' && rng.next() < 0.5;
          flipImage(images, i * size, h, w, hz, vt);
        }
      } else if (step.randomErasing) {
        const s = step.randomErasing;
        for (let i = 0; i < count; i++) {
          if (!(rng.next() < s.p)) continue;
          const box = drawEraseBox(rng, h, w, s.scale, s.ratio);
          if (box) eraseBox(images, i * size, w, box, s.value, rng);
        }
      } else if (step.mixUp) {
        mixUp({ images, labels: soft!, count, height: h, width: w, classes }, step.mixUp.alpha, rng);
      } else if (step.cutMix) {
        cutMix({ images, labels: soft!, count, height: h, width: w, classes }, step.cutMix.alpha, rng);
      }
    }
    return soft;
  }
}

/** Keras's layer class for each step (what the model summary calls it). */
const KERAS_CLASS: Record<AugmentationType, string> = {
  randomTranslation: 'RandomTranslation',
  randomFlip: 'RandomFlip',
  randomRotation: 'RandomRotation',
  randomZoom: 'RandomZoom',
  randomErasing: 'RandomErasing',
  mixUp: 'MixUp',
  cutMix: 'CutMix',
};

const fmtValue = (v: unknown): string => (Array.isArray(v) ? `[${v.join(', ')}]` : String(v));

/**
 * The steps as model-summary rows, named as Keras names layers (snake_case, _1 for the second):
 * [name (Class), its fields]. Their output shape is their input's.
 */
export function augmentationRows(steps: readonly AugmentationStep[]): { name: string; fields: string }[] {
  const seen = new Map<string, number>();
  return steps.map((s) => {
    const type = augmentationType(s);
    const cls = KERAS_CLASS[type];
    const base = cls.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
    const k = seen.get(base) ?? 0;
    seen.set(base, k + 1);
    const fields = Object.entries(s[type] as Record<string, unknown>)
      .map(([key, v]) => `${key}=${fmtValue(v)}`)
      .join(', ');
    return { name: `${k ? `${base}_${k}` : base} (${cls})`, fields };
  });
}
