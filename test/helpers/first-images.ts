/** Real images for tests that only read them (a module apart from data.ts: it loads tfjs, which data.ts's users need not). */
import { loadDataset, type Dataset, type Normalization } from '../../src/data/dataset';
import { runSeeds } from '../../src/rng';
import { sharedDataDir } from './data';

/**
 * The first `trainLimit` training images and `testLimit` test images of the real dataset, normalized as `normalize`
 * says, with no validation split: read from the shared cache (offline), so that a test which only reads images
 * neither copies nor hashes the 55 MB again.
 */
export function loadFirstImages(normalize: Normalization, trainLimit: number, testLimit = 10): Promise<Dataset> {
  return loadDataset({
    dataDir: sharedDataDir(),
    offline: true,
    normalize,
    validation: { size: 0, holdout: true, shuffle: false, stratify: false },
    trainLimit,
    testLimit,
    splitSeed: runSeeds(1).split,
  });
}
