import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';

/**
 * The HTML report in a real headless Chromium, driven over the DevTools protocol through
 * --remote-debugging-pipe (fds 3/4, NUL-separated JSON), which needs no WebSocket and no npm package.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'regtrain');
const STUDY = path.join(ROOT, 'test', 'fixtures', 'runs', 'study');
const SWEEP_PATH = 'model.layers.1.dense.kernelRegularizer.l1';

function findChromium(): string | null {
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}
const CHROMIUM = findChromium();
const skip = CHROMIUM ? false : 'chromium is not installed (apt-get install -y chromium)';
if (!CHROMIUM) process.stdout.write(`# skipping the browser tests: ${skip}\n`);

interface CdpEvent {
  method: string;
  params: Record<string, unknown>;
  sessionId?: string;
}

class Browser {
  private proc: ChildProcess;
  private nextId = 1;
  private pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  private listeners: ((e: CdpEvent) => void)[] = [];
  readonly events: CdpEvent[] = [];

  constructor(readonly profile: string) {
    this.proc = spawn(
      CHROMIUM!,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
        `--user-data-dir=${profile}`,
        '--remote-debugging-pipe',
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] },
    );
    let buf = '';
    (this.proc.stdio[4] as Readable).on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let end: number;
      while ((end = buf.indexOf('\0')) >= 0) {
        const msg = JSON.parse(buf.slice(0, end)) as { id?: number; result?: Record<string, unknown>; error?: { message: string } } & CdpEvent;
        buf = buf.slice(end + 1);
        if (msg.id !== undefined) {
          const p = this.pending.get(msg.id);
          this.pending.delete(msg.id);
          if (msg.error) p?.reject(new Error(msg.error.message));
          else p?.resolve(msg.result ?? {});
        } else {
          this.events.push(msg);
          for (const l of this.listeners) l(msg);
        }
      }
    });
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    (this.proc.stdio[3] as Writable).write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      setTimeout(() => reject(new Error(`${method}: no answer from chromium within 30 s`)), 30000).unref();
    });
  }

  waitFor(method: string, sessionId: string): Promise<void> {
    return new Promise((resolve) => {
      const l = (e: CdpEvent) => {
        if (e.method === method && e.sessionId === sessionId) {
          this.listeners = this.listeners.filter((x) => x !== l);
          resolve();
        }
      };
      this.listeners.push(l);
    });
  }

  /** Opens `url` in a fresh tab with console, log and network watched; returns the session and its problems. */
  async open(url: string): Promise<{ session: string; problems: () => string[]; requests: () => string[] }> {
    const { targetId } = (await this.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
    const { sessionId } = (await this.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
    for (const domain of ['Runtime', 'Log', 'Page', 'Network']) await this.send(`${domain}.enable`, {}, sessionId);
    const start = this.events.length;
    const loaded = this.waitFor('Page.loadEventFired', sessionId);
    await this.send('Page.navigate', { url }, sessionId);
    await loaded;
    const mine = () => this.events.slice(start).filter((e) => e.sessionId === sessionId);
    return {
      session: sessionId,
      problems: () =>
        mine().flatMap((e) => {
          if (e.method === 'Runtime.exceptionThrown') return [`exception: ${JSON.stringify(e.params.exceptionDetails)}`];
          if (e.method === 'Runtime.consoleAPICalled' && (e.params.type === 'error' || e.params.type === 'warning'))
            return [`console.${String(e.params.type)}: ${JSON.stringify(e.params.args)}`];
          if (e.method === 'Log.entryAdded' && ['error', 'warning'].includes(String((e.params.entry as { level: string }).level)))
            return [`log: ${JSON.stringify(e.params.entry)}`];
          return [];
        }),
      requests: () =>
        mine()
          .filter((e) => e.method === 'Network.requestWillBeSent')
          .map((e) => String((e.params.request as { url: string }).url)),
    };
  }

  async evaluate<T>(session: string, expression: string): Promise<T> {
    const r = (await this.send('Runtime.evaluate', { expression, returnByValue: true }, session)) as { result: { value: T }; exceptionDetails?: unknown };
    if (r.exceptionDetails) throw new Error(`evaluate failed: ${JSON.stringify(r.exceptionDetails)}`);
    return r.result.value;
  }

  async close(): Promise<void> {
    const closed = new Promise((resolve) => this.proc.once('exit', resolve));
    this.send('Browser.close').catch(() => undefined);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await closed;
    clearTimeout(timer);
  }
}

/** The fixture study, with l1 and l2 turned into one sweep over the layer-1 L1 factor (0 and 0.001). */
function sweepStudy(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-report-'));
  const study = path.join(dir, 'study');
  fs.cpSync(STUDY, study, { recursive: true });
  const file = path.join(study, 'study.json');
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { sweep: Record<string, unknown[]>; members: { variant: string }[] };
  doc.sweep = { [SWEEP_PATH]: [0, 0.001] };
  for (const m of doc.members) if (m.variant !== 'baseline') m.variant = 'reg';
  fs.writeFileSync(file, JSON.stringify(doc));
  return study;
}

test('the HTML report loads in headless Chromium with no console errors, no network, and every chart has its series', { skip, timeout: 120000 }, async () => {
  const study = sweepStudy();
  const out = path.join(path.dirname(study), 'report.html');
  const r = spawnSync(process.execPath, [BIN, 'compare', study, '--report', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const html = fs.readFileSync(out, 'utf8');
  // Self-contained: the only URL is the SVG namespace.
  assert.deepEqual([...new Set(html.match(/\b(?:https?:)?\/\/[^\s"'<>)]+/g) ?? [])], ['http://www.w3.org/2000/svg']);
  assert.doesNotMatch(html, /<(script|link|img|iframe)\b/i);

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-chromium-'));
  const browser = new Browser(profile);
  try {
    const page = await browser.open(pathToFileURL(out).href);
    const charts = await browser.evaluate<{ id: string; declared: number; series: number; width: number }[]>(
      page.session,
      `[...document.querySelectorAll('svg.chart')].map((s) => ({ id: s.dataset.chart, declared: Number(s.dataset.series), series: s.querySelectorAll('g.series').length, width: s.getBoundingClientRect().width }))`,
    );
    // 3 variants (l1, baseline, l2), all with validation data: train + val per variant; 2 layers; 1 sweep path × 2 layers.
    assert.deepEqual(
      charts.map((c) => [c.id, c.series]),
      [
        ['loss', 6],
        ['accuracy', 6],
        ['gap', 3],
        ['hist-1-dense_1', 3],
        ['hist-2-dense_2', 3],
        [`sparsity-${SWEEP_PATH}`, 2],
      ],
    );
    for (const c of charts) {
      assert.equal(c.series, c.declared, `${c.id}: data-series disagrees with the drawn series`);
      assert.ok(c.width > 100, `${c.id} is not laid out`);
    }
    const rows = await browser.evaluate<string[]>(page.session, `[...document.querySelectorAll('tbody tr')].map((tr) => tr.cells[0].textContent)`);
    assert.deepEqual(rows, ['*l1', 'baseline', 'l2']);
    // The histogram panels really differ: L1's spike at zero makes its tallest bar the largest share of its panel
    // (the fixtures' 5-bin histograms are re-binned onto the shared 0.005 lattice, so the spike spans several bars).
    const centre = await browser.evaluate<number[]>(
      page.session,
      `[...document.querySelectorAll('svg[data-chart="hist-1-dense_1"] g.series')].map((g) => { const h = [...g.querySelectorAll('rect')].map((r) => Number(r.getAttribute('height'))); return h.reduce((a, b) => Math.max(a, b), 0) / h.reduce((a, b) => a + b, 0); })`,
    );
    assert.ok(centre[0]! > centre[1]!, `L1's spike at zero should dominate its panel: ${centre}`);
    assert.deepEqual(page.problems(), []);
    assert.deepEqual(
      page.requests().filter((u) => !u.startsWith('file:')),
      [],
    );

    // The standalone SVG files open on their own, as SVG, with the same series.
    const chartDir = path.join(path.dirname(out), 'report-charts');
    const files = fs.readdirSync(chartDir).sort();
    assert.equal(files.length, 6);
    for (const f of files) {
      const svg = await browser.open(pathToFileURL(path.join(chartDir, f)).href);
      const info = await browser.evaluate<{ tag: string; errors: number; series: number }>(
        svg.session,
        `({ tag: document.documentElement.tagName, errors: document.getElementsByTagName('parsererror').length, series: document.querySelectorAll('g.series').length })`,
      );
      assert.equal(info.tag, 'svg', f);
      assert.equal(info.errors, 0, f);
      assert.equal(info.series, charts.find((c) => `${c.id}.svg` === f)!.series, f);
      assert.deepEqual(svg.problems(), [], f);
    }
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});

test('text that looks like markup is escaped in the report', { skip, timeout: 60000 }, async () => {
  const study = sweepStudy();
  // A run name with markup in it; the study's own group names come from study.json.
  const file = path.join(study, 'study.json');
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { members: { group: string; variant: string }[] };
  for (const m of doc.members) if (m.variant === 'baseline') m.group = '<img src=x onerror=alert(1)>&';
  fs.writeFileSync(file, JSON.stringify(doc));
  const out = path.join(path.dirname(study), 'evil.html');
  const r = spawnSync(process.execPath, [BIN, 'compare', study, '--report', out, '--baseline', 'baseline'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(fs.readFileSync(out, 'utf8'), /<img/);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-chromium-'));
  const browser = new Browser(profile);
  try {
    const page = await browser.open(pathToFileURL(out).href);
    const imgs = await browser.evaluate<number>(page.session, `document.querySelectorAll('img').length`);
    assert.equal(imgs, 0);
    const shown = await browser.evaluate<boolean>(page.session, `document.body.textContent.includes('<img src=x onerror=alert(1)>&')`);
    assert.equal(shown, true);
    assert.deepEqual(page.problems(), []);
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});

test('the browser check itself notices console errors and network requests (so a clean report means something)', { skip, timeout: 60000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-bad-'));
  const bad = path.join(dir, 'bad.html');
  fs.writeFileSync(bad, '<!DOCTYPE html><html><body><script>console.error("boom"); undefinedFunction();</script><img src="http://127.0.0.1:9/x.png"></body></html>');
  const browser = new Browser(path.join(dir, 'profile'));
  try {
    const page = await browser.open(pathToFileURL(bad).href);
    const problems = page.problems().join('\n');
    assert.match(problems, /boom/);
    assert.match(problems, /undefinedFunction/);
    assert.ok(page.requests().some((u) => u.startsWith('http://127.0.0.1:9/')));
  } finally {
    await browser.close();
  }
});
