import * as path from 'node:path';
import * as YAML from 'yaml';
import { InputError } from './errors';
import { packageVersion } from './fsutil';
import { checkArtifactText, shellQuote } from './shell';

/**
 * The artifacts `regtrain plan --format …` writes into a study directory, for schedulers users
 * already have. None holds a path of the planning machine: Slurm and GNU parallel run from the
 * study directory itself, Kubernetes mounts it; `regtrain` on the nodes is whatever --regtrain
 * says. Every member runs `regtrain run-member`, which is safe to retry, requeue and preempt.
 */

export type ArtifactFormat = 'slurm' | 'k8s' | 'parallel' | 'lines';
export const ARTIFACT_FILES: Record<ArtifactFormat, string> = {
  slurm: 'slurm.sbatch',
  k8s: 'k8s.yaml',
  parallel: 'parallel.sh',
  lines: 'members.txt',
};

/** What differs per site (plan's options, validated). */
export interface SiteOptions {
  /** Members at once; null = as many as the scheduler allows. */
  jobs: number | null;
  cpus: number;
  /** Memory per member, e.g. 2G (Slurm's K/M/G/T, binary units). */
  mem: string;
  /** Wall time per member, Slurm's [D-]HH:MM:SS or minutes. */
  time: string;
  partition: string | null;
  image: string;
  /** The dataset on the nodes (Slurm, parallel, lines: a path there; Kubernetes: where its volume is mounted). */
  dataDir: string | null;
  /** How regtrain is invoked on the nodes, split into words, e.g. ['npx', 'regtrain']. */
  regtrain: string[];
  /** Kubernetes: the PersistentVolumeClaims holding the studies and the dataset. */
  pvc: string;
  dataPvc: string;
}

export interface StudyRef {
  name: string;
  /** The study directory as it will be named on the nodes: its basename (Slurm/parallel run inside it). */
  dirName: string;
  /** The study directory relative to where `plan` ran (lines format). */
  relDir: string;
  members: number;
  hash: string;
}

const MEM = /^(\d+)([KMGT]?)$/;
const TIME = /^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$/;

/** The site flags of `plan` as commander gives them (strings), before parseSiteOptions checks them. */
export interface SiteFlags {
  jobs?: string;
  cpus: string;
  mem: string;
  time: string;
  partition?: string;
  image?: string;
  dataDir?: string;
  regtrain: string;
  pvc: string;
  dataPvc: string;
}

export function parseSiteOptions(o: SiteFlags): SiteOptions {
  for (const [flag, v] of [
    ['--image', o.image],
    ['--data-dir', o.dataDir],
    ['--regtrain', o.regtrain],
    ['--partition', o.partition],
    ['--pvc', o.pvc],
    ['--data-pvc', o.dataPvc],
  ] as const)
    if (v !== undefined) checkArtifactText(flag, v);
  const int = (flag: string, v: string, max: number) => {
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max)
      throw new InputError(`${flag} ${v}: expected an integer from 1 to ${max}`);
    return Number(v);
  };
  if (!MEM.test(o.mem) || Number(MEM.exec(o.mem)![1]) < 1)
    throw new InputError(`--mem ${o.mem}: expected a size like 2G, 1500M (K, M, G or T; binary units)`);
  if (!TIME.test(o.time) || timeSeconds(o.time) < 1)
    throw new InputError(`--time ${o.time}: expected minutes or [D-]HH:MM:SS, e.g. 2:00:00`);
  if (o.partition !== undefined && !/^[A-Za-z0-9_.,-]+$/.test(o.partition))
    throw new InputError(`--partition ${o.partition}: expected a partition name (letters, digits, _ . , -)`);
  const regtrain = o.regtrain.trim().split(/\s+/).filter(Boolean);
  if (regtrain.length === 0) throw new InputError('--regtrain: expected a command, e.g. regtrain or "npx regtrain"');
  const dns = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
  for (const [flag, v] of [
    ['--pvc', o.pvc],
    ['--data-pvc', o.dataPvc],
  ] as const)
    if (!dns.test(v))
      throw new InputError(`${flag} ${v}: expected a Kubernetes name (lowercase letters, digits and -)`);
  const image = o.image ?? `regtrain:${packageVersion()}`;
  if (/\s/.test(image) || image === '')
    throw new InputError(`--image ${JSON.stringify(image)}: expected an image reference without spaces`);
  if (o.dataDir !== undefined && o.dataDir.trim() === '') throw new InputError('--data-dir: expected a directory');
  return {
    jobs: o.jobs === undefined ? null : int('--jobs', o.jobs, 100000),
    cpus: int('--cpus', o.cpus, 1024),
    mem: o.mem,
    time: o.time,
    partition: o.partition ?? null,
    image,
    dataDir: o.dataDir ?? null,
    regtrain,
    pvc: o.pvc,
    dataPvc: o.dataPvc,
  };
}

/** Slurm's time forms (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) in seconds. */
export function timeSeconds(t: string): number {
  const m = TIME.exec(t);
  if (!m) return NaN;
  const [, d, a, b, c] = m;
  const nums = [a, b, c].filter((x): x is string => x !== undefined).map(Number);
  if (d !== undefined) {
    const [h = 0, mi = 0, s = 0] = nums;
    return Number(d) * 86400 + h * 3600 + mi * 60 + s;
  }
  if (nums.length === 1) return nums[0]! * 60;
  if (nums.length === 2) return nums[0]! * 60 + nums[1]!;
  return nums[0]! * 3600 + nums[1]! * 60 + nums[2]!;
}

/** Slurm's 2G (binary) as Kubernetes' 2Gi. */
function k8sMemory(mem: string): string {
  const [, n, unit] = MEM.exec(mem)!;
  return unit ? `${n}${unit}i` : `${n!}`;
}

const sh = (words: string[]) => words.map(shellQuote).join(' ');

function dataArgs(site: SiteOptions): string[] {
  return site.dataDir ? ['--data-dir', site.dataDir] : [];
}

/** One `regtrain run-member` line per member, for any runner of shell lines. */
export function memberLines(study: StudyRef, site: SiteOptions): string {
  return Array.from(
    { length: study.members },
    (_, i) => sh([...site.regtrain, 'run-member', study.relDir, '--index', String(i), ...dataArgs(site)]) + '\n',
  ).join('');
}

/**
 * An sbatch script for a job array. `bash slurm.sbatch` (outside a job) submits the array and a
 * compare job that waits for it; inside the array (SLURM_JOB_ID set) each task runs its member.
 */
export function slurmScript(study: StudyRef, site: SiteOptions): string {
  const last = study.members - 1;
  const jobName = `regtrain-${study.name}`.slice(0, 64);
  const compareMem = site.mem;
  return `#!/usr/bin/env bash
# regtrain study ${study.name} (${study.members} members, hash ${study.hash}) as a Slurm job array.
#   bash slurm.sbatch                 (from anywhere) submit the array and a compare job that runs after it
#   sbatch slurm.sbatch               (from this directory) submit the array alone
#   bash slurm.sbatch --array=3,5     rerun some members, and compare again after them; see: ${sh([...site.regtrain, 'status', '.'])}
#   bash slurm.sbatch --compare       (from anywhere) rewrite compare.txt now
# Tasks run in this directory. A requeued, preempted or timed-out task resumes from its last
# checkpoint (regtrain run-member is idempotent); logs go to logs/<job>_<task>.out.
#SBATCH --job-name=${jobName}
#SBATCH --array=0-${last}${site.jobs ? `%${site.jobs}` : ''}
#SBATCH --cpus-per-task=${site.cpus}
#SBATCH --mem=${site.mem}
#SBATCH --time=${site.time}
${site.partition ? `#SBATCH --partition=${site.partition}\n` : ''}#SBATCH --output=logs/%A_%a.out
#SBATCH --open-mode=append
#SBATCH --requeue
set -euo pipefail

if [ "\${1:-}" = --compare ]; then
  # compare.txt describes what finished, headed by what did not when some members are not done.
  cd "$(dirname "$0")"
  if states=$(${sh(site.regtrain)} status . --json); then left=$(printf '%s\\n' "$states" | grep -cv '"state":"done"' || true); else left='?'; fi
  {
    if [ "$left" != 0 ]; then
      echo "INCOMPLETE: $left of ${study.members} members not done when this was written ($(date -u +%FT%TZ)); see: ${sh([...site.regtrain, 'status', '.'])}"
      echo "after resubmitting them with bash slurm.sbatch --array=…, this file is rewritten; or now: bash slurm.sbatch --compare"
      echo
    fi
    ${sh([...site.regtrain, 'compare', '.'])} 2>&1 || echo "(compare failed: see above)"
  } > compare.txt.part
  mv compare.txt.part compare.txt
  exit 0
fi

if [ -z "\${SLURM_JOB_ID:-}" ]; then
  cd "$(dirname "$0")"
  mkdir -p logs
  array=$(sbatch --parsable "$@" slurm.sbatch)
  array=\${array%%;*}
  compare=$(sbatch --parsable --job-name=${jobName}-compare --dependency=afterany:"$array" --cpus-per-task=1 --mem=${compareMem} --time=${site.time} ${site.partition ? `--partition=${site.partition} ` : ''}--output=logs/compare-%j.out --wrap='bash slurm.sbatch --compare')
  echo "submitted array job $array (${study.members} members) and compare job $compare (writes compare.txt)"
  exit 0
fi

echo "task $SLURM_ARRAY_TASK_ID on $(hostname) (restart \${SLURM_RESTART_COUNT:-0}) at $(date -u +%FT%TZ)"
exec ${sh([...site.regtrain, 'run-member', '.', '--index'])} "$SLURM_ARRAY_TASK_ID"${dataArgs(site).length ? ` ${sh(dataArgs(site))}` : ''}
`;
}

/** GNU parallel over the member indexes, with a job log so that --resume-failed reruns exactly the failed ones. */
export function parallelScript(study: StudyRef, site: SiteOptions): string {
  const cmd =
    sh([...site.regtrain, 'run-member', '.', '--index']) +
    ' {}' +
    (dataArgs(site).length ? ` ${sh(dataArgs(site))}` : '');
  return `#!/usr/bin/env bash
# regtrain study ${study.name} (${study.members} members, hash ${study.hash}) with GNU parallel.
#   bash parallel.sh                        run every member on this machine${site.jobs ? `, ${site.jobs} at a time` : ''}
#   bash parallel.sh --resume-failed        afterwards: rerun only members that failed or were killed (parallel.joblog)
#   bash parallel.sh --sshloginfile nodes   spread over machines that see this directory at the same place under $HOME
# Each member resumes from its checkpoint when rerun; compare.txt is written when all succeeded.
set -euo pipefail
cd "$(dirname "$0")"
export REGTRAIN_BLAS_THREADS=\${REGTRAIN_BLAS_THREADS:-${site.cpus}}
seq 0 ${study.members - 1} | parallel ${site.jobs ? `--jobs ${site.jobs} ` : ''}--joblog parallel.joblog --workdir . --env REGTRAIN_BLAS_THREADS --tag --line-buffer "$@" ${shellQuote(cmd)}
${sh([...site.regtrain, 'compare', '.'])} > compare.txt
echo "study complete; comparison in compare.txt"
`;
}

/** Kubernetes object names: lowercase letters, digits and '-', at most `max` characters. */
function k8sName(text: string, max: number): string {
  return (
    text
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+/, '')
      .slice(0, max)
      .replace(/-+$/, '') || 'study'
  );
}

/**
 * An Indexed Job (one pod per member index, JOB_COMPLETION_INDEX → run-member) and a compare Job
 * that waits until every member is done or failed. The studies volume holds the study directory.
 */
export function k8sManifest(study: StudyRef, site: SiteOptions): string {
  const base = `regtrain-${k8sName(study.name, 30)}-${study.hash.slice(0, 8)}`;
  const workDir = path.posix.join('/studies', study.dirName);
  const dataMount = site.dataDir ?? '/data';
  const labels = { 'app.kubernetes.io/name': 'regtrain', 'regtrain/study': study.hash };
  const resources = {
    requests: { cpu: String(site.cpus), memory: k8sMemory(site.mem) },
    limits: { cpu: String(site.cpus), memory: k8sMemory(site.mem) },
  };
  const volumes = [
    { name: 'studies', persistentVolumeClaim: { claimName: site.pvc } },
    { name: 'data', persistentVolumeClaim: { claimName: site.dataPvc, readOnly: true } },
  ];
  const mounts = [
    { name: 'studies', mountPath: '/studies' },
    { name: 'data', mountPath: dataMount, readOnly: true },
  ];
  const env = [{ name: 'REGTRAIN_DATA_DIR', value: dataMount }];
  const members = {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: base, labels },
    spec: {
      completionMode: 'Indexed',
      completions: study.members,
      parallelism: site.jobs ?? study.members,
      backoffLimitPerIndex: 3,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          // SIGTERM (eviction, deletion) saves a checkpoint at the end of the current batch.
          terminationGracePeriodSeconds: 60,
          containers: [
            {
              name: 'member',
              image: site.image,
              workingDir: workDir,
              command: [...site.regtrain, 'run-member', '.'],
              env: [
                {
                  name: 'JOB_COMPLETION_INDEX',
                  valueFrom: {
                    fieldRef: { fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']" },
                  },
                },
                ...env,
              ],
              resources,
              volumeMounts: mounts,
            },
          ],
          volumes,
        },
      },
    },
  };
  const compare = {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: `${base}-compare`, labels },
    spec: {
      completions: 1,
      backoffLimit: 2,
      activeDeadlineSeconds: timeSeconds(site.time) * Math.ceil(study.members / (site.jobs ?? study.members)) + 3600,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          containers: [
            {
              name: 'compare',
              image: site.image,
              workingDir: workDir,
              command: [
                'sh',
                '-c',
                `${sh(site.regtrain)} status . --wait --poll 30 && ${sh(site.regtrain)} compare . > compare.txt && cat compare.txt`,
              ],
              resources: { requests: { cpu: '1', memory: '1Gi' }, limits: { cpu: '1', memory: '1Gi' } },
              volumeMounts: [mounts[0]],
            },
          ],
          volumes: [volumes[0]],
        },
      },
    },
  };
  const header = `# regtrain study ${study.name} (${study.members} members, hash ${study.hash}) as a Kubernetes Indexed Job.
# The PersistentVolumeClaim ${site.pvc} holds the study directory at ${study.dirName}/ (copy it there),
# ${site.dataPvc} the Fashion-MNIST files. Then: kubectl apply -f k8s.yaml
# Pod i runs member i; a pod that is evicted or fails is retried (up to 3 times) and resumes from its checkpoint.
`;
  return (
    header +
    [members, compare].map((doc) => YAML.stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false })).join('---\n')
  );
}

export function artifactText(format: ArtifactFormat, study: StudyRef, site: SiteOptions): string {
  // The last guard for callers that did not check: every text of the study that reaches the file.
  checkArtifactText('study name', study.name);
  checkArtifactText('study directory', study.relDir);
  checkArtifactText('study directory', study.dirName);
  switch (format) {
    case 'slurm':
      return slurmScript(study, site);
    case 'k8s':
      return k8sManifest(study, site);
    case 'parallel':
      return parallelScript(study, site);
    case 'lines':
      return memberLines(study, site);
  }
}
