import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { BIN, ROOT } from './helpers/cli';
import { regtrainInProcess } from './helpers/in-process';
import { pathWithoutRegtrain } from './helpers/path-without-regtrain';
import { scratchDir } from './helpers/scratch';

const TMP = scratchDir('regtrain-invocation-');
const STUDY = path.join(ROOT, 'configs', 'study.yaml');
/** A PATH without any regtrain on it, and one with this checkout's bin/regtrain linked in, as `npm install -g .` does. */
const BARE_PATH = pathWithoutRegtrain(process.env.PATH ?? '');
const LINKED = path.join(TMP, 'prefix-bin');
fs.mkdirSync(LINKED);
fs.symlinkSync(BIN, path.join(LINKED, 'regtrain'));
const ON_PATH = `${LINKED}${path.delimiter}${BARE_PATH}`;

function shell(command: string, PATH: string, cwd = TMP) {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH };
  for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k];
  // npx installs this checkout as a file: dependency on its first use, which runs the prepare script: a rebuild that
  // empties dist/ under the test files running at the same time. The hint does not depend on it.
  env.npm_config_ignore_scripts = 'true';
  return spawnSync('bash', ['-c', command], { cwd, env, encoding: 'utf8' });
}

/**
 * `regtrain ...args` in this process with PATH set (and npm's variables unset, as shell() does): plan reads PATH
 * when it checks the launcher, not at start, so the launcher checks need no process of their own (the hints,
 * which depend on how the process was started, do).
 */
async function planWithPath(args: string[], PATH: string, cwd: string) {
  const npm = Object.fromEntries(
    Object.keys(process.env)
      .filter((k) => k.startsWith('npm_'))
      .map((k) => [k, undefined]),
  );
  const r = await regtrainInProcess(args, { cwd, env: { ...npm, PATH } });
  return { status: r.code, stdout: r.stdout, stderr: r.stderr };
}

/** The command after "fill it with: " in `data info`'s error for a missing data directory. */
function fetchHint(stderr: string): string {
  const m = /; fill it with: (.*) data fetch --data-dir \S+\n$/.exec(stderr);
  assert.ok(m, stderr);
  return m[1]!;
}

test('a hint names regtrain as it was started: bare when regtrain on PATH is this one, npx regtrain under npx, node and the script otherwise; each runs as printed', () => {
  const missing = path.join(TMP, 'no-data');
  const ways = [
    { start: `node ${BIN}`, PATH: BARE_PATH, hint: `node ${BIN}` },
    { start: 'regtrain', PATH: ON_PATH, hint: 'regtrain' },
    { start: 'npx regtrain', PATH: BARE_PATH, hint: 'npx regtrain', cwd: ROOT },
  ];
  for (const w of ways) {
    const r = shell(`${w.start} data info --data-dir ${missing}`, w.PATH, w.cwd);
    assert.equal(r.status, 2, r.stderr);
    const hint = fetchHint(r.stderr);
    assert.equal(hint, w.hint, `started as ${w.start}`);
    // The hint as printed, in the same shell: it finds regtrain (exit 0 with --help, not 127 "command not found").
    const again = shell(`${hint} data fetch --help`, w.PATH, w.cwd);
    assert.equal(again.status, 0, `${hint}: ${again.stderr}`);
    assert.match(again.stdout, /^Usage: regtrain data fetch/);
  }
});

test('plan --format slurm refuses a launcher that is not on PATH, naming both fixes, and writes nothing', async () => {
  const cwd = fs.mkdtempSync(path.join(TMP, 'plan-'));
  const r = await planWithPath(['plan', STUDY, '--format', 'slurm'], BARE_PATH, cwd);
  assert.equal(r.status, 2);
  assert.equal(
    r.stderr,
    `error: --regtrain regtrain: regtrain is not on PATH here, so every member would fail with "regtrain: not found"; put regtrain on PATH (npm install -g . in ${ROOT}) or pass --regtrain 'node ${BIN}'\n`,
  );
  assert.deepEqual(fs.readdirSync(cwd), []);
  // Either fix plans the study.
  assert.equal((await planWithPath(['plan', STUDY, '--format', 'slurm'], ON_PATH, cwd)).status, 0);
  const withNode = await planWithPath(
    ['plan', STUDY, '--format', 'parallel', '--regtrain', `node ${BIN}`],
    BARE_PATH,
    cwd,
  );
  assert.equal(withNode.status, 0, withNode.stderr);
  assert.match(withNode.stderr, /^found study study: 18 members in studies\/study-[0-9a-f]{10}; run with: bash /);
});

test('plan warns that npx does not pass SIGTERM on, and refuses a relative script path that tasks run elsewhere would not find', async () => {
  const cwd = fs.mkdtempSync(path.join(TMP, 'plan-'));
  const npx = await planWithPath(['plan', STUDY, '--format', 'slurm', '--regtrain', 'npx regtrain'], ON_PATH, cwd);
  assert.equal(npx.status, 0, npx.stderr);
  assert.equal(
    npx.stderr.split('\n')[0],
    `warning: --regtrain 'npx regtrain': npx does not pass SIGTERM on to regtrain, so scancel, requeue and preemption would not save; put regtrain on PATH (npm install -g . in ${ROOT}) or pass --regtrain 'node ${BIN}'`,
  );
  const relative = await planWithPath(
    ['plan', STUDY, '--format', 'slurm', '--regtrain', `node ${path.relative(cwd, BIN)}`],
    ON_PATH,
    cwd,
  );
  assert.equal(relative.status, 2);
  assert.match(
    relative.stderr,
    /^error: --regtrain 'node \S+': members run inside the study directory; give the script's absolute path, e.g\. --regtrain 'node \/\S+\/bin\/regtrain'\n$/,
  );
});
