/**
 * Data-load benchmark: loading + standardizing all 70,000 Fashion-MNIST images from a warm
 * cache (read, sha256 re-verify, IDX parse, split, normalize). Uses the default cache dir
 * ($REGTRAIN_DATA_DIR or ~/.cache/...), fetching into it first if needed.
 */
import { loadDataset, type DataOptions } from '../../src/data/dataset';
import { runSeeds } from '../../src/rng';

const RUNS = 5;

const OPTIONS: DataOptions = {
  normalize: 'standardize',
  validation: { size: 0, holdout: true, shuffle: false, stratify: false },
  trainLimit: null,
  testLimit: null,
  splitSeed: runSeeds(1).split,
};

export async function benchDataLoad(dataDir?: string): Promise<{ seconds: number }> {
  const opts: DataOptions = { ...OPTIONS, ...(dataDir !== undefined ? { dataDir } : {}) };
  await loadDataset(opts); // warm the cache (and the OS page cache)
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    const ds = await loadDataset(opts);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    if (ds.train.count + ds.test.count !== 70_000)
      throw new Error(`expected 70000 images, got ${ds.train.count + ds.test.count}`);
  }
  times.sort((a, b) => a - b);
  return { seconds: times[Math.floor(times.length / 2)]! };
}

// Run directly (not when the test runner executes every file under dist/test).
if (require.main === module && !process.env.NODE_TEST_CONTEXT) {
  benchDataLoad(process.argv[2]).then(
    ({ seconds }) => console.log(`data load (70,000 images, warm cache, median of ${RUNS}): ${seconds.toFixed(3)} s`),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
