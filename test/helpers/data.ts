/**
 * A test file's own Fashion-MNIST cache, ready before its first run: copied from one verified cache
 * that all test files share (fetched once per machine by `regtrain data fetch`), then hashed and
 * stamped here, once. Without it, the first run of each file decompressed and hashed 55 MB and the
 * runs of its next 2 s hashed them again (a file changed less than 2 s ago is not stamped).
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

/** The verified cache every test file shares, fetched and stamped the first time; only to be read. */
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
