import * as path from 'node:path';
import { readRegularFile } from './fsutil';

/** A cgroup file holds one short line. */
const MAX_CGROUP_FILE_BYTES = 4096;

/**
 * How many CPUs a scheduler gave this process: Slurm's SLURM_CPUS_PER_TASK, else the
 * container's CPU quota (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`).
 * Threads beyond that budget only get throttled, so the training step should use no more.
 */
export interface CpuBudget {
  cpus: number;
  /** Where the figure came from, for the log line. */
  source: string;
}

function readText(file: string): string | null {
  try {
    // /proc and /sys files report size 0: read to their end, bounded.
    return readRegularFile(file, { maxBytes: MAX_CGROUP_FILE_BYTES }).toString('utf8').trim();
  } catch {
    return null;
  }
}

/** Whole CPUs in a CFS quota; a fraction rounds down (500m → 1: never less than one). */
function quotaCpus(quota: number, period: number): number | null {
  if (!Number.isFinite(quota) || !Number.isFinite(period) || quota <= 0 || period <= 0) return null;
  return Math.max(1, Math.floor(quota / period));
}

export function cgroupCpus(root = '/sys/fs/cgroup'): CpuBudget | null {
  const v2 = readText(path.join(root, 'cpu.max'));
  if (v2 !== null) {
    const [quota, period] = v2.split(/\s+/);
    const cpus = quota === 'max' ? null : quotaCpus(Number(quota), Number(period ?? '100000'));
    return cpus === null ? null : { cpus, source: `cgroup cpu.max ${v2}` };
  }
  const quota = readText(path.join(root, 'cpu', 'cpu.cfs_quota_us'));
  const period = readText(path.join(root, 'cpu', 'cpu.cfs_period_us'));
  if (quota === null || period === null) return null;
  const cpus = quotaCpus(Number(quota), Number(period));
  return cpus === null ? null : { cpus, source: `cgroup cpu.cfs_quota_us ${quota}/${period}` };
}

export function cpuBudget(env: NodeJS.ProcessEnv = process.env, cgroupRoot = '/sys/fs/cgroup'): CpuBudget | null {
  const slurm = env.SLURM_CPUS_PER_TASK;
  if (slurm !== undefined && /^\d+$/.test(slurm.trim()) && Number(slurm) >= 1)
    return { cpus: Number(slurm), source: `SLURM_CPUS_PER_TASK=${slurm.trim()}` };
  return cgroupCpus(cgroupRoot);
}

/**
 * Hands the budget to the training step through REGTRAIN_BLAS_THREADS (which it reads), unless
 * the user set that variable. Returns a line for the log, or null when nothing was set.
 */
export function applyCpuBudget(env: NodeJS.ProcessEnv = process.env, cgroupRoot = '/sys/fs/cgroup'): string | null {
  if (env.REGTRAIN_BLAS_THREADS !== undefined && env.REGTRAIN_BLAS_THREADS !== '') return null;
  const budget = cpuBudget(env, cgroupRoot);
  if (!budget) return null;
  env.REGTRAIN_BLAS_THREADS = String(budget.cpus);
  return `Threads: ${budget.cpus} (${budget.source})`;
}
