import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { clusterEnv } from './helpers/cluster-env';
import { regtrainHere } from './helpers/cluster-study';
import { seededDataDir } from './helpers/data';
import { spawnSync } from 'node:child_process';
import * as YAML from 'yaml';

const { tmp, env: baseEnv } = clusterEnv('regtrain-k8s-', { dropRegtrainVars: true });

const SPEC = `
name: K8s_Tiny
seed: 5
data: { trainLimit: 1800, testLimit: 500, validation: { size: 200 } }
model:
  layers:
    - flatten: { inputShape: [28, 28] }
    - dense: { units: 16, activation: relu }
    - dense: { units: 10, activation: softmax }
training: { epochs: 1, batchSize: 32 }
repeats: 2
`;

interface Container {
  name: string;
  image: string;
  workingDir: string;
  command: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }[];
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Job {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    completionMode?: string;
    completions: number;
    parallelism?: number;
    backoffLimitPerIndex?: number;
    activeDeadlineSeconds?: number;
    template: {
      spec: {
        restartPolicy: string;
        containers: Container[];
        volumes: { name: string; persistentVolumeClaim: { claimName: string; readOnly?: boolean } }[];
      };
    };
  };
}

test(
  "the Kubernetes manifest is an Indexed Job whose pods get their index and the volumes, and a compare Job; each pod's command runs a member here with JOB_COMPLETION_INDEX set",
  { timeout: 10 * 60_000 },
  async () => {
    fs.writeFileSync(path.join(tmp, 'study.yaml'), SPEC);
    // Planned in this process (the manifest is a file); the pods' commands below run as processes.
    const planned = await regtrainHere(
      [
        'plan',
        'study.yaml',
        '--format',
        'k8s',
        '--jobs',
        '1',
        '--cpus',
        '2',
        '--mem',
        '1G',
        '--time',
        '30',
        '--image',
        'registry.example/regtrain:0.1.0',
      ],
      tmp,
      {
        PATH: baseEnv.PATH,
        ...Object.fromEntries(
          Object.keys(process.env).flatMap((k) => (k.startsWith('REGTRAIN_') ? [[k, undefined]] : [])),
        ),
      },
    );
    assert.equal(planned.code, 0, planned.stderr);
    const manifest = planned.stdout.trim();
    const studyDir = path.join(tmp, path.dirname(manifest));
    const dirName = path.basename(studyDir);
    const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(tmp, manifest), 'utf8'));
    assert.ok(docs.every((d) => d.errors.length === 0));
    const [members, compare] = docs.map((d) => d.toJS() as Job) as [Job, Job];
    assert.equal(docs.length, 2);

    // The members: one pod per index, retried per index, never restarted in place.
    assert.deepEqual(
      [members.apiVersion, members.kind, compare.apiVersion, compare.kind],
      ['batch/v1', 'Job', 'batch/v1', 'Job'],
    );
    assert.match(members.metadata.name, /^regtrain-k8s-tiny-[0-9a-f]{8}$/);
    assert.ok(members.metadata.name.length <= 52, 'short enough for Indexed Job pod names');
    assert.equal(compare.metadata.name, `${members.metadata.name}-compare`);
    assert.equal(members.spec.completionMode, 'Indexed');
    assert.equal(members.spec.completions, 2);
    assert.equal(members.spec.parallelism, 1);
    assert.equal(members.spec.backoffLimitPerIndex, 3);
    const pod = members.spec.template.spec;
    assert.equal(pod.restartPolicy, 'Never');
    const [c] = pod.containers as [Container];
    assert.equal(c.image, 'registry.example/regtrain:0.1.0');
    assert.equal(c.workingDir, `/studies/${dirName}`);
    assert.deepEqual(c.command, ['regtrain', 'run-member', '.']);
    assert.deepEqual(c.env, [
      {
        name: 'JOB_COMPLETION_INDEX',
        valueFrom: { fieldRef: { fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']" } },
      },
      { name: 'REGTRAIN_DATA_DIR', value: '/data' },
    ]);
    assert.deepEqual(c.resources, { requests: { cpu: '2', memory: '1Gi' }, limits: { cpu: '2', memory: '1Gi' } });
    assert.deepEqual(c.volumeMounts, [
      { name: 'studies', mountPath: '/studies' },
      { name: 'data', mountPath: '/data', readOnly: true },
    ]);
    assert.deepEqual(pod.volumes, [
      { name: 'studies', persistentVolumeClaim: { claimName: 'regtrain-studies' } },
      { name: 'data', persistentVolumeClaim: { claimName: 'regtrain-data', readOnly: true } },
    ]);
    // The compare Job waits for the members, then writes compare.txt into the study directory.
    assert.equal(compare.spec.completionMode, undefined);
    assert.equal(
      compare.spec.activeDeadlineSeconds,
      30 * 60 * 2 + 3600,
      'two waves (one pod at a time) of 30 minutes, and an hour',
    );
    const [cc] = compare.spec.template.spec.containers as [Container];
    assert.equal(cc.workingDir, `/studies/${dirName}`);
    assert.deepEqual(cc.command, [
      'sh',
      '-c',
      'regtrain status . --wait --poll 30 && regtrain compare . > compare.txt && cat compare.txt',
    ]);
    assert.deepEqual(cc.volumeMounts, [{ name: 'studies', mountPath: '/studies' }]);

    // Here, the studies volume is tmp/studies and the data volume a local cache: map the container paths onto them.
    // The data volume is filled before the Job starts, as its readOnly mount requires.
    const volumes: Record<string, string> = {
      '/studies': path.join(tmp, 'studies'),
      '/data': seededDataDir(path.join(tmp, 'data')),
    };
    const local = (p: string) =>
      Object.entries(volumes).reduce(
        (acc, [from, to]) => (acc.startsWith(from) ? to + acc.slice(from.length) : acc),
        p,
      );
    const podEnv = (container: Container, index: number | null): NodeJS.ProcessEnv => {
      const e: NodeJS.ProcessEnv = { ...baseEnv };
      for (const v of container.env ?? []) {
        // The downward API fills the annotation with the pod's index; that is what we set here.
        if (v.valueFrom) e[v.name] = String(index);
        else e[v.name] = local(v.value!);
      }
      return e;
    };
    for (const index of [0, 1]) {
      const r = spawnSync(c.command[0]!, c.command.slice(1), {
        cwd: local(c.workingDir),
        env: podEnv(c, index),
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`^member ${index} of 2 \\(base-seed${5 + index}\\): starting$`, 'm'));
    }
    // A pod retried after its member finished (e.g. the node died after the write) exits 0 at once.
    const retry = spawnSync(c.command[0]!, c.command.slice(1), {
      cwd: local(c.workingDir),
      env: podEnv(c, 1),
      encoding: 'utf8',
    });
    assert.equal(retry.status, 0);
    assert.equal(retry.stderr, 'member 1 (base-seed6) already finished; nothing to do\n');
    const compared = spawnSync(cc.command[0]!, cc.command.slice(1), {
      cwd: local(cc.workingDir),
      env: podEnv(cc, null),
      encoding: 'utf8',
    });
    assert.equal(compared.status, 0, compared.stderr);
    assert.match(compared.stdout, /^study K8s_Tiny in \.: 2 of 2 members done$/m);
    const table = fs.readFileSync(path.join(studyDir, 'compare.txt'), 'utf8');
    assert.match(table, /^[* ]base \(baseline\) +0\.\d{4} ± 0\.\d{4} \(2\)/m);
    assert.ok(compared.stdout.endsWith(table), 'the pod log ends with the comparison');
  },
);
