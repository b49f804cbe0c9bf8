/**
 * The exit code for a stop signal, from the first moment: bin/regtrain installs this before it
 * loads the CLI (loading tfjs takes a while, and Node's default would exit 128 + the signal's
 * number, e.g. 143 for SIGTERM). No imports, so it is in place at once.
 */

/** SIGHUP is a closed terminal: like SIGTERM, the user is gone and the work should stop cleanly. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** ExitCode.interrupted (src/errors.ts), repeated here to keep this file free of imports. */
const INTERRUPTED = 130;

let installed: ((sig: NodeJS.Signals) => void) | null = null;

/**
 * What starts a line written after a signal: on a terminal, a return and erase-line, which wipes
 * the `^C` the terminal echoed (the line is otherwise empty, or a progress bar already cleared).
 */
function freshLine(): string {
  return process.stderr.isTTY ? '\r\x1b[K' : '';
}

/**
 * Every command exits 130 on SIGINT, SIGTERM or SIGHUP. Commands that must save or clean up
 * first (run's trapSignals, data fetch's abort) install their own handlers; while one is
 * installed, this one steps aside. Idempotent.
 */
export function installDefaultSignalHandling(): void {
  if (installed) return;
  installed = (sig: NodeJS.Signals) => {
    if (process.listenerCount(sig) > 1) return;
    process.stderr.write(`${freshLine()}interrupted (${sig})\n`);
    process.exit(INTERRUPTED);
  };
  for (const sig of STOP_SIGNALS) process.on(sig, installed);
}

/**
 * For work that saves before it stops (`run`): SIGINT/SIGTERM/SIGHUP (SIGHUP saves like SIGTERM) ask it to stop at the next safe point; a second signal gives up
 * waiting (files are written atomically, so what is on disk stays consistent). `beforeNotice`
 * runs first (the progress bar stops and clears itself), so the one notice is not drawn over.
 */
export function trapSignals(hooks: { beforeNotice?: () => void; onSecond?: () => void } = {}): {
  stopRequested: () => boolean;
  signal: () => string | null;
  release: () => void;
} {
  let received: string | null = null;
  const handler = (sig: NodeJS.Signals) => {
    if (received) {
      hooks.onSecond?.();
      process.stderr.write(`${freshLine()}interrupted (${sig} again): stopping now, without saving this epoch\n`);
      process.exit(INTERRUPTED);
    }
    received = sig;
    hooks.beforeNotice?.();
    process.stderr.write(
      `${freshLine()}${sig}: finishing the current batch, then saving (press Ctrl-C again to stop at once)\n`,
    );
  };
  for (const sig of STOP_SIGNALS) process.on(sig, handler);
  return {
    stopRequested: () => received !== null,
    signal: () => received,
    release: () => {
      for (const sig of STOP_SIGNALS) process.off(sig, handler);
    },
  };
}
