import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { claimRunDir, createRunDir, releaseRunDir, LOCK_FILE } from '../src/rundir';
import { processStartTime } from '../src/lock';
import { InputError } from '../src/errors';
import { BIN, QUICK, ROOT, SMALL_SLICE, launch, regtrainSync } from './helpers/cli';
import { scratchDir } from './helpers/scratch';

const RUNDIR_JS = path.join(ROOT, 'dist', 'src', 'rundir.js');
const tmp = scratchDir('regtrain-lock-');
const BOOT = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();

function runDir(name: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** A pid that belonged to a process which has exited. */
function deadPid(): number {
  const r = spawnSync('true');
  return r.pid!;
}

function writeLock(
  dir: string,
  record: { pid: number; start: string | null; host?: string; token: string },
  ageSeconds = 0,
): void {
  const file = path.join(dir, LOCK_FILE);
  fs.writeFileSync(file, JSON.stringify({ boot: BOOT, host: os.hostname(), ...record }) + '\n');
  const t = new Date(Date.now() - ageSeconds * 1000);
  fs.utimesSync(file, t, t);
}

const lockToken = (dir: string) =>
  (JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')) as { token: string }).token;
const lockPid = (dir: string) =>
  (JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')) as { pid: number }).pid;

/**
 * A process that says "ready", waits for the file `go`, claims `dir` and prints won/lost; a
 * winner holds the lock until the file `stop` appears (so no racer can find it released).
 */
const RACER = `
const fs = require('fs');
const { claimRunDir, releaseRunDir } = require(${JSON.stringify(RUNDIR_JS)});
const [dir, go, stop] = process.argv.slice(1);
const sleep = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
console.log('ready');
while (!fs.existsSync(go)) sleep();
try {
  claimRunDir(dir);
  console.log('won');
  while (!fs.existsSync(stop)) sleep();
  releaseRunDir(dir);
} catch (err) {
  console.log('lost: ' + err.message);
}
`;

test('of eight processes racing to take over one stale lock, exactly one wins and the others are refused', async () => {
  for (let round = 0; round < 4; round++) {
    const dir = runDir(`race-${round}`);
    writeLock(dir, { pid: deadPid(), start: '1', token: `stale${round}` });
    const [go, stop] = ['go', 'stop'].map((f) => path.join(tmp, `${f}-${round}`)) as [string, string];
    let ready = 0;
    let decided = 0;
    const racers = Array.from({ length: 8 }, () => {
      const child = spawn(process.execPath, ['-e', RACER, dir, go, stop]);
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (d.toString().includes('ready')) ready++;
        if (/won|lost/.test(d.toString()) && ++decided === 8) fs.writeFileSync(stop, '');
      });
      return new Promise<string>((resolve) => child.on('close', () => resolve(out.replace('ready\n', '').trim())));
    });
    while (ready < 8) await new Promise((resolve) => setTimeout(resolve, 20));
    fs.writeFileSync(go, '');
    const outcomes = await Promise.all(racers);
    assert.equal(outcomes.filter((o) => o === 'won').length, 1, outcomes.join('\n'));
    for (const o of outcomes.filter((x) => x !== 'won'))
      assert.match(
        o,
        new RegExp(
          `^lost: ${dir}: another regtrain run is writing to it \\((held by pid \\d+|being taken over by another process)\\)$`,
        ),
      );
    assert.deepEqual(fs.readdirSync(dir), [], 'no lock, claim or temp files left once the winner released');
  }
});

test('a lock whose pid now belongs to an unrelated live process (a reused PID) is taken over; the real holder is not', async () => {
  const sleeper = spawn('sleep', ['30']);
  try {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const start = processStartTime(sleeper.pid!);
    assert.ok(start, 'the sleeper has a start time');
    const reused = runDir('reused');
    writeLock(reused, { pid: sleeper.pid!, start: String(Number(start) - 1000), token: 'olderprocess' });
    claimRunDir(reused);
    assert.equal(lockPid(reused), process.pid);
    releaseRunDir(reused);
    assert.deepEqual(fs.readdirSync(reused), []);

    const live = runDir('live');
    writeLock(live, { pid: sleeper.pid!, start, token: 'livesleeper' });
    assert.throws(
      () => claimRunDir(live),
      (err: unknown) =>
        err instanceof InputError &&
        err.message === `${live}: another regtrain run is writing to it (held by pid ${sleeper.pid})`,
    );
    assert.equal(lockToken(live), 'livesleeper', 'the live lock is untouched');
  } finally {
    sleeper.kill();
  }
});

test('a lock left by this very pid in an earlier life (PID 1 in a restarted container) is taken over', () => {
  const dir = runDir('pid1');
  writeLock(dir, { pid: process.pid, start: '1', token: 'previouslife' });
  claimRunDir(dir);
  assert.notEqual(lockToken(dir), 'previouslife');
  // …while a second claim from the process that holds it now is refused.
  assert.throws(
    () => claimRunDir(dir),
    new RegExp(`another regtrain run is writing to it \\(held by this process \\(pid ${process.pid}\\)\\)`),
  );
  releaseRunDir(dir);
});

test('a lock from another host is respected while its heartbeat is fresh and taken over once it is older than the stale limit', () => {
  const dir = runDir('foreign');
  writeLock(dir, { pid: 1, start: '55', host: 'node-17', token: 'foreignfresh' }, 30);
  assert.throws(
    () => claimRunDir(dir),
    (err: unknown) =>
      err instanceof InputError &&
      err.message ===
        `${dir}: another regtrain run is writing to it (held by pid 1 on host node-17, heartbeat 30 s ago (taken over after 120 s))`,
  );
  writeLock(dir, { pid: 1, start: '55', host: 'node-17', token: 'foreignstale' }, 121);
  claimRunDir(dir);
  assert.equal(lockPid(dir), process.pid);
  releaseRunDir(dir);
});

test('a lock in the format before this one ("<pid>\\n") of a dead process is taken over', () => {
  const dir = runDir('legacy');
  fs.writeFileSync(path.join(dir, LOCK_FILE), `${deadPid()}\n`);
  claimRunDir(dir);
  assert.equal(lockPid(dir), process.pid);
  releaseRunDir(dir);
});

test('a new run into a directory holding only the lock record another process is about to link is refused as a run writing to it', () => {
  // acquireLock writes its record to .regtrain.lock.<token>.tmp, then links it into place: a second `run --out`
  // (two run-member processes for one new member) that looks in between sees only that file.
  const dir = runDir('linking');
  fs.writeFileSync(path.join(dir, `${LOCK_FILE}.othertoken.tmp`), JSON.stringify({ pid: 1, token: 'othertoken' }));
  assert.throws(
    () => createRunDir({ out: dir, name: 'x' }),
    (err: unknown) =>
      err instanceof InputError && err.message === `--out ${dir}: another regtrain run is writing to it`,
  );
  assert.deepEqual(fs.readdirSync(dir), [`${LOCK_FILE}.othertoken.tmp`], 'nothing written, nothing removed');
});

// SIGKILL (kill -9, the OOM killer) and SIGSEGV end the process without a chance to release its lock.
// (SIGHUP no longer does: `run` saves and releases on it like SIGTERM, test/hardening2.process.test.ts.)
for (const signal of ['SIGKILL', 'SIGSEGV'] as const) {
  test(`a run ended by ${signal} leaves a lock that is reported as an interrupted run, not as "another regtrain run is writing to it", and --resume takes it over`, async () => {
    const out = path.join(tmp, `killed-${signal}`);
    const args = ['run', QUICK, ...SMALL_SLICE, '--out', out, '--json'];
    const stopped = await launch(args, {
      cwd: tmp,
      onStdout: (all, child) => {
        if (all.includes('"event":"epoch"')) child.kill(signal);
      },
    }).done;
    assert.equal(stopped.signal, signal, `run ended with ${stopped.code ?? stopped.signal} before it could be stopped`);
    assert.ok(fs.existsSync(path.join(out, LOCK_FILE)), 'the dead run left its lock');
    const again = regtrainSync(args, { cwd: tmp });
    assert.equal(again.status, 2);
    assert.equal(
      again.stderr
        .split('\n')
        .filter((l) => l.startsWith('error:'))
        .join('\n') + '\n',
      `error: --out ${out}: holds a run that stopped before finishing (its process is gone); continue it with: node ${BIN} run --resume ${out}\n`,
    );
    const resumed = regtrainSync(['run', '--resume', out, '-q'], { cwd: tmp });
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.ok(!fs.existsSync(path.join(out, LOCK_FILE)), 'released at the end');
  });
}

test('a lock that is a FIFO is never read (no hang): it counts as held while fresh and is taken over once stale', () => {
  const dir = runDir('fifo');
  assert.equal(spawnSync('mkfifo', [path.join(dir, LOCK_FILE)]).status, 0);
  assert.throws(
    () => claimRunDir(dir),
    (err: unknown) =>
      err instanceof InputError &&
      err.message ===
        `${dir}: another regtrain run is writing to it (held by an unreadable lock with a recent heartbeat)`,
  );
  const old = new Date(Date.now() - 200_000);
  fs.utimesSync(path.join(dir, LOCK_FILE), old, old);
  claimRunDir(dir);
  assert.ok(fs.statSync(path.join(dir, LOCK_FILE)).isFile());
  assert.equal(lockPid(dir), process.pid);
  releaseRunDir(dir);
});
