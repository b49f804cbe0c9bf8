/**
 * `npm run bench`: the numbers issue 5 asks for, on this machine, in one table.
 *
 * 1. Data: loading + normalizing all 70,000 images from a warm cache.
 * 2. The tool itself: `regtrain run configs/article.yaml` for 2 epochs as a child process —
 *    time from process start to the first training step (data, model build, backend), the
 *    end-to-end training throughput of epoch 2 (all 60,000 images, validation included),
 *    and the process's peak RSS.
 * 3. The training step alone, per backend/path, at batch 32 and 512, against PyTorch on the
 *    same CPU when Debian's python3-torch is installed (test/bench/train-bench.ts).
 *
 * Options: --quick (fewer paths), --no-torch.
 */
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { loadBlas } from '../../src/accel/blas';
import { benchDataLoad } from './data-bench';
import { benchTraining, BenchRow } from './train-bench';

const repoRoot = path.resolve(__dirname, '../../..');

interface ToolRun {
  startupSeconds: number;
  epochSeconds: number[];
  samplesPerEpoch: number;
  peakRssMB: number;
  backend: string;
}

/** Runs the real CLI and reads its --json events. */
function toolRun(args: string[]): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-bench-'));
    const t0 = process.hrtime.bigint();
    const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'regtrain'), 'run', path.join(repoRoot, 'configs', 'article.yaml'), ...args, '--out', path.join(out, 'run'), '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let buf = '';
    const result: Partial<ToolRun> = { epochSeconds: [] };
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const e = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if (e.event === 'start') result.backend = String(e.backend);
        if (e.event === 'training') result.startupSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
        if (e.event === 'epoch') result.epochSeconds!.push(Number(e.seconds));
        if (e.event === 'done') result.peakRssMB = Number(e.peakRssMB);
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      fs.rmSync(out, { recursive: true, force: true });
      if (code !== 0) reject(new Error(`regtrain run exited ${code}`));
      else resolve({ ...(result as ToolRun), samplesPerEpoch: 60000 });
    });
  });
}

const fmt = (v: number | undefined) => (v === undefined ? '—' : Math.round(v).toLocaleString('en-US'));

async function main(): Promise<void> {
  tf.env().set('PROD', true); // no tfjs console hints in the table
  const quick = process.argv.includes('--quick');
  const torch = !process.argv.includes('--no-torch');
  const blas = loadBlas();
  console.log(`# regtrain bench — ${os.cpus()[0]?.model ?? 'cpu'} ×${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, tfjs ${tf.version.tfjs}`);
  console.log(`BLAS: ${blas.ok ? `${blas.library} (${blas.config})` : blas.reason}\n`);

  const data = await benchDataLoad();
  console.log(`Data load, 70,000 images from a warm cache (median of 5): ${data.seconds.toFixed(3)} s`);

  // Epoch 2 of the tutorial (validation on 5,000 images included), as the tool runs it.
  const tool = await toolRun(['--set', 'training.epochs=2']);
  const e2 = tool.epochSeconds[1]!;
  console.log(`regtrain run, process start → first training step: ${tool.startupSeconds.toFixed(2)} s (backend ${tool.backend})`);
  console.log(`regtrain run, tutorial epoch (60,000 images + 5,000 validation): ${e2.toFixed(2)} s = ${fmt(tool.samplesPerEpoch / e2)} samples/s; 60 epochs ≈ ${((60 * e2) / 60).toFixed(1)} min`);
  console.log(`regtrain run, peak RSS: ${tool.peakRssMB} MiB\n`);

  console.log('Training step alone (forward, backward, penalties, SGD update), samples/s, median of 3:');
  const { rows, torch: t } = await benchTraining({ quick, torch });
  const label = (r: BenchRow) => `${r.backend}${r.blas ? `+BLAS(${r.threads} thread${r.threads === 1 ? '' : 's'})` : ''} ${r.step === 'fit' ? 'model.fit' : 'lean step'}`;
  const torchRate = (b: number, th: number) => (t && 'rows' in t ? t.rows.find((r) => r.batch === b && r.threads === th)?.samplesPerSec : undefined);
  const bestTorch = (b: number) => Math.max(torchRate(b, 1) ?? 0, torchRate(b, 2) ?? 0) || undefined;
  console.log('\n| path | batch 32 | batch 512 | ÷ PyTorch best (32 / 512) |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const l of [...new Set(rows.map(label))]) {
    const r32 = rows.find((r) => label(r) === l && r.batch === 32)?.samplesPerSec;
    const r512 = rows.find((r) => label(r) === l && r.batch === 512)?.samplesPerSec;
    const ratio = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(2)}×` : '—');
    console.log(`| ${l} | ${fmt(r32)} | ${fmt(r512)} | ${ratio(r32, bestTorch(32))} / ${ratio(r512, bestTorch(512))} |`);
  }
  if (t && 'rows' in t) for (const th of [1, 2]) console.log(`| PyTorch ${t.version} (${th} thread${th > 1 ? 's' : ''}) | ${fmt(torchRate(32, th))} | ${fmt(torchRate(512, th))} | |`);
  else if (t) console.log(`\nPyTorch: skipped (${t.skipped})`);
  const best = (b: number) => Math.max(...rows.filter((r) => r.batch === b).map((r) => r.samplesPerSec));
  if (t && 'rows' in t) console.log(`\nbest regtrain path ÷ best PyTorch: batch 32 ${(best(32) / bestTorch(32)!).toFixed(2)}×, batch 512 ${(best(512) / bestTorch(512)!).toFixed(2)}×`);
}

if (require.main === module && !process.env.NODE_TEST_CONTEXT) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
