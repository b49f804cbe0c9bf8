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
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

/** The lock module alone (claimRunDir takes a run directory's lock with it): a racer loads it in half of rundir.js's CPU. */
const LOCK_JS = path.join(ROOT, 'dist', 'src', 'lock.js');
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

const ROUNDS = 4;
const RACERS = 8;

/**
 * A process that races in every round: it says "ready <round>", waits for the file `go-<round>`, takes the lock of
 * `race-<round>` as claimRunDir does (which puts "<dir>: another regtrain run is writing to it" before the reason:
 * the tests below) and prints won/lost; a winner holds the lock until `stop-<round>` appears (so no racer can find
 * it released), then releases it. The same eight processes race in each round (starting a process costs more
 * than its claims), each round a fresh stale lock and a fresh contention between eight processes.
 */
const RACER = `
const fs = require('fs');
const path = require('path');
const { acquireLock, releaseLock } = require(${JSON.stringify(LOCK_JS)});
const [base, rounds] = process.argv.slice(1);
const sleep = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
for (let r = 0; r < Number(rounds); r++) {
  const [dir, go, stop] = ['race-', 'go-', 'stop-'].map((f) => path.join(base, f + r));
  console.log('ready ' + r);
  while (!fs.existsSync(go)) sleep();
  const lock = path.join(dir, ${JSON.stringify(LOCK_FILE)});
  try {
    acquireLock(lock);
    console.log('won ' + r);
    while (!fs.existsSync(stop)) sleep();
    releaseLock(lock);
  } catch (err) {
    console.log('lost ' + r + ': ' + err.constructor.name + ': ' + err.message);
  }
}
`;

test('of eight processes racing to take over one stale lock, exactly one wins and the others are refused', async () => {
  const base = runDir('races');
  const dirs = Array.from({ length: ROUNDS }, (_, r) => {
    const dir = runDir(`races/race-${r}`);
    writeLock(dir, { pid: deadPid(), start: '1', token: `stale${r}` });
    return dir;
  });
  // Each racer's lines so far; a round starts when all eight said "ready <round>".
  const lines: string[][] = Array.from({ length: RACERS }, () => []);
  const children = Array.from({ length: RACERS }, () => spawn(process.execPath, ['-e', RACER, base, String(ROUNDS)]));
  const closed = children.map((child, i) => {
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      const all = (partial + d).split('\n');
      partial = all.pop()!;
      lines[i]!.push(...all);
    });
    return new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  });
  const until = async (what: string, done: () => boolean) => {
    for (const started = Date.now(); !done(); await new Promise((resolve) => setTimeout(resolve, 10)))
      if (Date.now() - started > 60_000)
        assert.fail(`${what}: not within 60 s\n${lines.map((l) => l.join(' | ')).join('\n')}`);
  };
  try {
    for (let r = 0; r < ROUNDS; r++) {
      await until(`round ${r}: all racers ready`, () => lines.every((l) => l.includes(`ready ${r}`)));
      fs.writeFileSync(path.join(base, `go-${r}`), '');
      const outcome = (l: string[]) => l.find((x) => x === `won ${r}` || x.startsWith(`lost ${r}: `));
      await until(`round ${r}: all racers decided`, () => lines.every((l) => outcome(l) !== undefined));
      const outcomes = lines.map((l) => outcome(l)!.replace(` ${r}`, ''));
      fs.writeFileSync(path.join(base, `stop-${r}`), '');
      assert.equal(outcomes.filter((o) => o === 'won').length, 1, outcomes.join('\n'));
      for (const o of outcomes.filter((x) => x !== 'won'))
        assert.match(o, /^lost: LockHeldError: (held by pid \d+|being taken over by another process)$/);
    }
    assert.deepEqual(await Promise.all(closed), Array(RACERS).fill(0));
  } finally {
    // A failed round leaves the others waiting for files that will not come.
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  }
  for (const dir of dirs)
    assert.deepEqual(fs.readdirSync(dir), [], 'no lock, claim or temp files left once the winner released');
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
    // What the dead process left is on disk: the refusal is checked in this process, the takeover by another.
    const again = await regtrainInProcess(args, { cwd: tmp });
    assert.equal(again.code, 2);
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
