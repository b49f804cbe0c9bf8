/**
 * Issue 25: regtrain's CNN against the independent PyTorch run, seed against seed, from the
 * directory test/bench/cnn-seeds.sh fills. For the last epoch's training loss and accuracy
 * (the epoch's mean, as Keras logs them), the validation accuracy and the test accuracy: each
 * side's mean ± std over its seeds, the difference and Welch's two-sided p. Seeds differ between
 * the sides (different generators), so the comparison is unpaired.
 *
 * Usage: node dist/test/bench/cnn-seeds.js OUT
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { HistoryFileSchema, MetricsFileSchema } from '../../src/runformat';
import { stat, tCdf, type Stat } from '../../src/compare/statistics';

const TorchEpochSchema = z.object({
  epoch: z.number(),
  loss: z.number(),
  accuracy: z.number(),
  val_loss: z.number(),
  val_accuracy: z.number(),
});
const TorchEndSchema = z.object({ seed: z.number(), test_accuracy: z.number(), test_loss: z.number() });

interface Side {
  loss: number[];
  accuracy: number[];
  valAccuracy: number[];
  testAccuracy: number[];
}

function readSides(dir: string): { regtrain: Side; torch: Side } {
  const regtrain: Side = { loss: [], accuracy: [], valAccuracy: [], testAccuracy: [] };
  const torch: Side = { loss: [], accuracy: [], valAccuracy: [], testAccuracy: [] };
  for (const name of fs.readdirSync(dir).sort()) {
    const file = path.join(dir, name);
    if (/^regtrain-\d+$/.test(name) && fs.existsSync(path.join(file, 'metrics.json'))) {
      const last = HistoryFileSchema.parse(
        JSON.parse(fs.readFileSync(path.join(file, 'history.json'), 'utf8')),
      ).epochs.at(-1)!;
      const metrics = MetricsFileSchema.parse(JSON.parse(fs.readFileSync(path.join(file, 'metrics.json'), 'utf8')));
      regtrain.loss.push(last.loss);
      regtrain.accuracy.push(last.accuracy);
      regtrain.valAccuracy.push(last.val_accuracy!);
      if (metrics.test) regtrain.testAccuracy.push(metrics.test.accuracy);
    } else if (/^torch-\d+\.jsonl$/.test(name)) {
      const lines = fs
        .readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as unknown);
      const end = TorchEndSchema.safeParse(lines.at(-1));
      if (!end.success) continue; // still running
      const last = TorchEpochSchema.parse(lines.at(-2));
      torch.loss.push(last.loss);
      torch.accuracy.push(last.accuracy);
      torch.valAccuracy.push(last.val_accuracy);
      torch.testAccuracy.push(end.data.test_accuracy);
    }
  }
  return { regtrain, torch };
}

/** Welch's unequal-variance t-test, two-sided p. */
function welchP(a: Stat, b: Stat): number {
  const va = a.std! ** 2 / a.n;
  const vb = b.std! ** 2 / b.n;
  const t = (a.mean - b.mean) / Math.sqrt(va + vb);
  const df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1));
  return 2 * (1 - tCdf(Math.abs(t), df));
}

const dir = process.argv[2];
if (!dir) throw new Error('usage: node dist/test/bench/cnn-seeds.js OUT');
const { regtrain, torch } = readSides(dir);
const fmt = (s: Stat | null) => (s ? `${s.mean.toFixed(4)} ± ${(s.std ?? 0).toFixed(4)} (n=${s.n})` : '-');
console.log('| last epoch (10) | regtrain | PyTorch | difference | Welch p |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const [label, key] of [
  ['training loss', 'loss'],
  ['training accuracy', 'accuracy'],
  ['validation accuracy', 'valAccuracy'],
  ['test accuracy', 'testAccuracy'],
] as const) {
  const a = stat(regtrain[key]);
  const b = stat(torch[key]);
  const both = a && b && a.n > 1 && b.n > 1;
  console.log(
    `| ${label} | ${fmt(a)} | ${fmt(b)} | ${both ? (a.mean - b.mean).toFixed(4) : '-'} | ${both ? welchP(a, b).toFixed(3) : '-'} |`,
  );
}
