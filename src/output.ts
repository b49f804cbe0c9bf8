/**
 * The two streams regtrain writes to. Every write of the program's commands goes through `stdout()` and `stderr()`
 * rather than `process.stdout`/`process.stderr`, so that the whole program can run with its output taken elsewhere:
 * the in-process runner of the tests (test/helpers/in-process.ts) collects what a process would have printed.
 * Left out on purpose: src/signals.ts (what a stop signal prints belongs to the process) and the CLI's guard against
 * a failing stdout (src/cli.ts), which watches the process's own streams.
 */
interface Streams {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

let redirected: Streams | null = null;

export function stdout(): NodeJS.WriteStream {
  return redirected?.stdout ?? process.stdout;
}

export function stderr(): NodeJS.WriteStream {
  return redirected?.stderr ?? process.stderr;
}

/** Until the returned undo, regtrain's output goes to `streams` instead of the process's own. */
export function redirectOutput(streams: Streams): () => void {
  if (redirected) throw new Error('redirectOutput: the output is already redirected');
  redirected = streams;
  return () => {
    redirected = null;
  };
}
