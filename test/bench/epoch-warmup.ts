/**
 * Issue 23, goal 1, round 6: how much of "a run's epoch ÷ the step alone" at batch 512 is the fresh process's
 * warm-up rather than the loop's own work. epoch-step.ts compares the run's epochs 2–4 (batches 41–160 of a new
 * process: V8 still compiles the per-batch code then, on its helper threads, and runs the rest in baseline code)
 * with the step alone measured warm (its process has already run the same step). Each round here, in CPU time:
 * 1. the CLI as epoch-step.ts runs it (`--cpu`: per-epoch CPU seconds), for E epochs;
 * 2. the step alone in a fresh process (this file with --step-child): four 1-second measurements in a row, the
 *    first cold (steps 5–~160 of that process, like the run's epochs 2–4), the others warm (like epoch-step.ts).
 * Reported per round and as medians with their ranges: run epochs 2–4 ÷ warm step (epoch-step.ts's ratio),
 * ÷ cold step, run epochs 5–E ÷ warm step, and cold ÷ warm step.
 *
 * Run: npm run build && node dist/test/bench/epoch-warmup.js [--rounds N] [--epochs E] [--batch B]
 * (REGTRAIN_BLAS_THREADS as for the run: the child process inherits it.)
 */
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as tf from '../../src/tf';
import { cliRun, pathOfRun } from './epoch-step';
import { measurePath, median, type PathSpec } from './train-bench';

const TRAIN = 20000;
const range = (xs: number[]) =>
  `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)})`;

/** In a fresh process: the step alone `n` times in a row at `batch`, CPU samples/s each (the first cold). */
function stepInFreshProcess(p: PathSpec, batch: number, n: number): number[] {
  const out = execFileSync(process.execPath, [__filename, '--step-child', JSON.stringify({ p, batch, n })], {
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').pop()!) as number[];
}

async function main(): Promise<void> {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  tf.env().set('PROD', true);
  const child = arg('--step-child');
  if (child) {
    const { p, batch, n } = JSON.parse(child) as { p: PathSpec; batch: number; n: number };
    const rates: number[] = [];
    for (let i = 0; i < n; i++) rates.push((await measurePath(p, batch, 1))!.cpuRate);
    console.log(JSON.stringify(rates));
    return;
  }
  const rounds = Number(arg('--rounds') ?? 6);
  const epochs = Number(arg('--epochs') ?? 12);
  const batch = Number(arg('--batch') ?? 512);
  const ratios = {
    earlyWarm: [] as number[],
    earlyCold: [] as number[],
    lateWarm: [] as number[],
    cold: [] as number[],
  };
  for (let r = 1; r <= rounds; r++) {
    const run = await cliRun(batch, epochs, true);
    const rates = run.epochs.map((e) => TRAIN / e.train);
    const p = pathOfRun(run.backend, run.step);
    if (!p) throw new Error(`no step-bench path for the run's step: ${run.step}`);
    const s = stepInFreshProcess(p, batch, 4);
    const cold = s[0]!;
    const warm = median(s.slice(1));
    const early = median(rates.slice(0, 3));
    const late = median(rates.slice(3));
    ratios.earlyWarm.push(early / warm);
    ratios.earlyCold.push(early / cold);
    ratios.lateWarm.push(late / warm);
    ratios.cold.push(cold / warm);
    console.error(
      `round ${r}: run epochs 2–${epochs} ${rates.map((x) => Math.round(x / 1000)).join(' ')}k/CPU s; step cold ${Math.round(cold / 1000)}k, warm ${Math.round(warm / 1000)}k; run(2–4)÷warm ${(early / warm).toFixed(3)}, ÷cold ${(early / cold).toFixed(3)}, run(5–${epochs})÷warm ${(late / warm).toFixed(3)}; load ${os.loadavg()[0]!.toFixed(1)}`,
    );
  }
  console.log(
    [
      `Batch ${batch}, ${rounds} rounds, ${epochs} epochs, CPU time (load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}):`,
      `- run epochs 2–4 ÷ the step alone warm (epoch-step.ts's ratio): ${range(ratios.earlyWarm)}`,
      `- run epochs 2–4 ÷ the step alone cold (its first second in a fresh process): ${range(ratios.earlyCold)}`,
      `- run epochs 5–${epochs} ÷ the step alone warm: ${range(ratios.lateWarm)}`,
      `- the step alone cold ÷ warm: ${range(ratios.cold)}`,
    ].join('\n'),
  );
}

if (require.main === module && !process.env.NODE_TEST_CONTEXT) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
