/**
 * Fashion-MNIST for the tests: one verified cache that all test files share (fetched once per machine by
 * `regtrain data fetch`, then stamped), which a file whose runs only read the data points REGTRAIN_DATA_DIR at
 * (sharedDataDir); and a file's own copy of it (seededDataDir) where a file needs the cache at a place of its own
 * (under XDG_CACHE_HOME, a container's mount) or may change it. A copy is hashed and stamped once, here (0.3 CPU-s:
 * without it, the first run of each file decompressed and hashed 55 MB, and the runs of its next 2 s hashed them
 * again, a file changed less than 2 s ago not being stamped).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadManifest, verifyCache, SIDECAR_FILE } from '../../src/data/fetch';
import { regtrainSync } from './cli';

const SHARED = path.join(os.tmpdir(), `regtrain-test-data-${process.getuid?.() ?? 'user'}`, 'fashion-mnist');

function allOk(dir: string, opts: { trustStamp?: boolean; settleMs?: number }): boolean {
  return verifyCache(dir, loadManifest(), opts).every((s) => s.state === 'ok');
}

/** The verified cache every test file shares (CI's three lanes too), fetched and stamped the first time; only to be
 * read: a file that changes a cached file takes its own copy (seededDataDir). */
export function sharedDataDir(): string {
  if (!allOk(SHARED, { trustStamp: true })) {
    const r = regtrainSync(['data', 'fetch', '--data-dir', SHARED]);
    if (r.status !== 0) throw new Error(`regtrain data fetch --data-dir ${SHARED} failed:\n${r.stderr}`);
    allOk(SHARED, { settleMs: 0 });
  }
  return SHARED;
}

/** Fills `dir` (created; its parents too) with a verified, stamped copy of Fashion-MNIST; returns `dir`. */
export function seededDataDir(dir: string): string {
  sharedDataDir();
  fs.mkdirSync(dir, { recursive: true });
  for (const f of [...loadManifest().files.map((s) => s.file), SIDECAR_FILE])
    fs.copyFileSync(path.join(SHARED, f), path.join(dir, f));
  if (!allOk(dir, { settleMs: 0 })) throw new Error(`${dir}: the copied dataset does not verify`);
  return dir;
}

/** The cache a run uses under XDG_CACHE_HOME=`xdg` (no REGTRAIN_DATA_DIR), seeded; returns `xdg`. */
export function seededXdgCache(xdg: string): string {
  seededDataDir(path.join(xdg, 'regtrain', 'datasets', 'fashion-mnist'));
  return xdg;
}
