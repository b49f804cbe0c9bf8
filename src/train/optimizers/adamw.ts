/** AdamW (keras.optimizers.AdamW): Adam with a default decoupled weight decay of 0.004. */
import { adamLike } from './adam';

export const adamw = adamLike('adamw', 0.004);
