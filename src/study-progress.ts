import * as fs from 'node:fs';
import * as path from 'node:path';
import { fmtDuration } from './train/callbacks/epoch-lines';
import { fmtTimeLeft } from './train/callbacks/progress-bar';
import { stderr } from './output';

/**
 * A study's terminal view: one line per member that ends, and one progress line (members done /
 * running / failed, the running members' epochs, the time left). Each member's own output
 * (backend, data line, model summary, epoch lines) goes to its log, <study>/logs/<member>.log,
 * so that a study of any size fits one screen. On a terminal the progress line is redrawn in
 * place; elsewhere it is printed after each member ends.
 */
export class StudyProgress {
  private readonly started = Date.now();
  private readonly running = new Map<string, { epoch: number; epochs: number; since: number }>();
  private done = 0;
  private failed = 0;
  private finishedWork = 0;
  private shown = false;
  private stopped = false;
  private readonly timer: NodeJS.Timeout | null;

  constructor(
    /** Members this session will run (complete ones are skipped). */
    private readonly toRun: number,
    private readonly total: number,
    private readonly stream: NodeJS.WriteStream = stderr(),
  ) {
    this.timer = stream.isTTY ? setInterval(() => this.redraw(), 2000).unref() : null;
  }

  /** The member's log file, created (appended to on a resumed study). */
  static logFile(studyDir: string, member: string): string {
    fs.mkdirSync(path.join(studyDir, 'logs'), { recursive: true });
    return path.join(studyDir, 'logs', `${member}.log`);
  }

  /** A line that stays (the progress line is cleared first and redrawn after it). */
  say(line: string): void {
    this.clear();
    this.stream.write(line + '\n');
    this.redraw();
  }

  memberStarted(name: string): void {
    this.running.set(name, { epoch: 0, epochs: 0, since: Date.now() });
    this.redraw();
  }

  /** One line of the member's own output: epoch lines move its progress. */
  memberLine(name: string, line: string): void {
    const m = /^Epoch (\d+)\/(\d+) /.exec(line);
    const r = this.running.get(name);
    if (!m || !r) return;
    r.epoch = Number(m[1]);
    r.epochs = Number(m[2]);
    this.redraw();
  }

  memberEnded(name: string, exitCode: number, detail: string): void {
    const r = this.running.get(name);
    this.running.delete(name);
    this.finishedWork++;
    if (exitCode === 0) this.done++;
    else if (exitCode !== 130) this.failed++;
    const took = r ? ` in ${fmtDuration((Date.now() - r.since) / 1000)}` : '';
    const how = exitCode === 0 ? 'done' : exitCode === 130 ? 'interrupted' : `failed (exit ${exitCode})`;
    this.clear();
    this.stream.write(`[${name}] ${how}${took}${detail ? `: ${detail}` : ''}\n`);
    if (!this.stream.isTTY) this.stream.write(`progress: ${this.summary()}\n`);
    this.redraw();
  }

  /** Clears the progress line for good (before the study's last lines). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.clear();
    this.stopped = true;
  }

  /** `5/12 done, 2 running (l1-seed1234 3/15, l2-seed1234 1/15), 1 failed, about 4 min left`. */
  summary(): string {
    const runningText = [...this.running].map(([n, r]) => (r.epochs ? `${n} ${r.epoch}/${r.epochs}` : n)).join(', ');
    const parts = [
      `${this.done}/${this.total} done`,
      `${this.running.size} running${runningText ? ` (${runningText})` : ''}`,
    ];
    if (this.failed) parts.push(`${this.failed} failed`);
    const left = this.secondsLeft();
    if (left === null) parts.push('time left: after the first epoch');
    else if (left > 0) parts.push(fmtTimeLeft(left));
    return parts.join(', ');
  }

  /** The members still to run over the pace so far (finished members and the running ones' epochs, all counted as work done). */
  private secondsLeft(): number | null {
    let work = this.finishedWork;
    for (const r of this.running.values()) if (r.epochs) work += r.epoch / r.epochs;
    if (work <= 0) return null;
    const elapsed = (Date.now() - this.started) / 1000;
    return (elapsed / work) * Math.max(0, this.toRun - work);
  }

  private clear(): void {
    if (this.shown) this.stream.write('\r\x1b[K');
    this.shown = false;
  }

  private redraw(): void {
    if (!this.stream.isTTY || this.stopped) return;
    const cols = this.stream.columns || 100;
    const text = this.summary();
    this.stream.write(`\r\x1b[K${text.length >= cols ? text.slice(0, cols - 2) + '…' : text}`);
    this.shown = true;
  }
}
