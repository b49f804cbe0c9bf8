/**
 * Every optimizer regtrain trains with, in one list: the spec's `optimizer` section, the types a
 * checkpoint accepts and the README's optimizer table (checked by test/optimizers.readme.unit.test.ts)
 * all follow from it. A new optimizer is a file in this folder and an entry here.
 */
import { z } from 'zod';
import { adam } from './adam';
import { adamw } from './adamw';
import type { CommonConfig, OptimizerDefinition } from './definition';
import { sgd } from './sgd';

export const OPTIMIZERS = [sgd, adam, adamw] as const;

type Definitions = (typeof OPTIMIZERS)[number];
export type OptimizerType = Definitions['name'];
export const OPTIMIZER_TYPES = OPTIMIZERS.map((d) => d.name) as [OptimizerType, ...OptimizerType[]];

type Shape = { [D in Definitions as D['name']]: z.ZodOptional<D['schema']> };
const shape = Object.fromEntries(OPTIMIZERS.map((d) => [d.name, d.schema.optional()])) as Shape;

/** Exactly one optimizer; plain SGD (Keras's defaults) when left out. */
export const optimizerSchema = z
  .strictObject(shape, { error: `expected one optimizer: ${OPTIMIZER_TYPES.join(', ')}` })
  .superRefine((o, ctx) => {
    const kinds = OPTIMIZER_TYPES.filter((k) => o[k] !== undefined);
    if (kinds.length !== 1)
      ctx.addIssue({
        code: 'custom',
        message: `expected exactly one optimizer (${OPTIMIZER_TYPES.join(', ')}), got ${kinds.length}`,
      });
  })
  .prefault({ sgd: {} });
export type OptimizerSpec = z.infer<typeof optimizerSchema>;

/** The one optimizer a spec names: its definition and its configuration. */
export interface OptimizerChoice {
  type: OptimizerType;
  definition: OptimizerDefinition<OptimizerType, CommonConfig>;
  config: CommonConfig;
}

export function optimizerChoice(o: OptimizerSpec): OptimizerChoice {
  for (const d of OPTIMIZERS) {
    const config = o[d.name];
    if (config) return { type: d.name, definition: d as OptimizerDefinition<OptimizerType, CommonConfig>, config };
  }
  throw new Error('optimizer without a type (the schema should have refused it)');
}
