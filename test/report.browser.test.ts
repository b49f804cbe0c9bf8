import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { regtrainSync } from './helpers/cli';
import { scratchDir } from './helpers/scratch';

/**
 * The HTML report in a real headless Chromium, driven over the DevTools protocol through
 * --remote-debugging-pipe (fds 3/4, NUL-separated JSON), which needs no WebSocket and no npm package.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const STUDY = path.join(ROOT, 'test', 'fixtures', 'runs', 'study');
const SMALL_DATA = path.join(ROOT, 'test', 'fixtures', 'runs', 'small-data');
const SINGLE = path.join(ROOT, 'test', 'fixtures', 'runs', 'single-run');
/** Where the screenshots go (look at them: the test checks layout, not looks). */
const SHOTS = process.env.REGTRAIN_SCREENSHOTS ?? path.join(os.tmpdir(), 'regtrain-report-screenshots');
const PAGE_WIDTH = 1400;
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
        const msg = JSON.parse(buf.slice(0, end)) as {
          id?: number;
          result?: Record<string, unknown>;
          error?: { message: string };
        } & CdpEvent;
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
    (this.proc.stdio[3] as Writable).write(
      JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0',
    );
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
    const { sessionId } = (await this.send('Target.attachToTarget', { targetId, flatten: true })) as {
      sessionId: string;
    };
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
          if (e.method === 'Runtime.exceptionThrown')
            return [`exception: ${JSON.stringify(e.params.exceptionDetails)}`];
          if (e.method === 'Runtime.consoleAPICalled' && (e.params.type === 'error' || e.params.type === 'warning'))
            return [`console.${String(e.params.type)}: ${JSON.stringify(e.params.args)}`];
          if (
            e.method === 'Log.entryAdded' &&
            ['error', 'warning'].includes(String((e.params.entry as { level: string }).level))
          )
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
    const r = (await this.send('Runtime.evaluate', { expression, returnByValue: true }, session)) as {
      result: { value: T };
      exceptionDetails?: unknown;
    };
    if (r.exceptionDetails) throw new Error(`evaluate failed: ${JSON.stringify(r.exceptionDetails)}`);
    return r.result.value;
  }

  /** Lays the page out `width` CSS pixels wide; returns what sticks out of it (hidden content of a closed <details> aside) and a full-page PNG. */
  async atWidth(
    session: string,
    width: number,
  ): Promise<{ clientWidth: number; scrollWidth: number; overflowing: string[]; png: Buffer }> {
    await this.send(
      'Emulation.setDeviceMetricsOverride',
      { width, height: 900, deviceScaleFactor: 1, mobile: false },
      session,
    );
    const layout = await this.evaluate<{
      clientWidth: number;
      scrollWidth: number;
      height: number;
      overflowing: string[];
    }>(
      session,
      `(() => {
        const W = document.documentElement.clientWidth;
        const overflowing = [...document.querySelectorAll('body *')]
          .filter((e) => !e.closest('details:not([open])'))
          .filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && (r.right > W + 0.5 || r.left < -0.5); })
          .map((e) => e.tagName.toLowerCase() + (e.closest('svg') ? ' in ' + e.closest('svg').dataset.chart : '') + ' → ' + Math.round(e.getBoundingClientRect().right) + ' px: ' + (e.textContent || '').slice(0, 40));
        return { clientWidth: W, scrollWidth: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight, overflowing };
      })()`,
    );
    const shot = (await this.send(
      'Page.captureScreenshot',
      { format: 'png', captureBeyondViewport: true, clip: { x: 0, y: 0, width, height: layout.height, scale: 1 } },
      session,
    )) as { data: string };
    return {
      clientWidth: layout.clientWidth,
      scrollWidth: layout.scrollWidth,
      overflowing: layout.overflowing,
      png: Buffer.from(shot.data, 'base64'),
    };
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
  const dir = scratchDir('regtrain-report-');
  const study = path.join(dir, 'study');
  fs.cpSync(STUDY, study, { recursive: true });
  const file = path.join(study, 'study.json');
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    sweep: Record<string, unknown[]>;
    members: { variant: string }[];
  };
  doc.sweep = { [SWEEP_PATH]: [0, 0.001] };
  for (const m of doc.members) if (m.variant !== 'baseline') m.variant = 'reg';
  fs.writeFileSync(file, JSON.stringify(doc));
  return study;
}

test(
  'the HTML report loads in headless Chromium with no console errors, no network, and every chart has its series',
  { skip, timeout: 120000 },
  async () => {
    const study = sweepStudy();
    const out = path.join(path.dirname(study), 'report.html');
    const r = regtrainSync(['compare', study, '--report', out]);
    assert.equal(r.status, 0, r.stderr);
    const html = fs.readFileSync(out, 'utf8');
    // Self-contained: the only URL is the SVG namespace.
    assert.deepEqual([...new Set(html.match(/\b(?:https?:)?\/\/[^\s"'<>)]+/g) ?? [])], ['http://www.w3.org/2000/svg']);
    assert.doesNotMatch(html, /<(script|link|img|iframe)\b/i);

    const profile = scratchDir('regtrain-chromium-');
    const browser = new Browser(profile);
    try {
      const page = await browser.open(pathToFileURL(out).href);
      const shot = await browser.atWidth(page.session, PAGE_WIDTH);
      fs.mkdirSync(SHOTS, { recursive: true });
      fs.writeFileSync(path.join(SHOTS, 'sweep.png'), shot.png);
      const charts = await browser.evaluate<{ id: string; declared: number; series: number; width: number }[]>(
        page.session,
        `[...document.querySelectorAll('svg.chart')].map((s) => ({ id: s.dataset.chart, declared: Number(s.dataset.series), series: s.querySelectorAll('g.series').length, width: s.getBoundingClientRect().width }))`,
      );
      // 3 variants (baseline, then the sweep's 0 and 0.001): a panel each; 2 layers; the sweep path: accuracy (one line) and sparsity (a line per layer).
      assert.deepEqual(
        charts.map((c) => [c.id, c.series]),
        [
          ['accuracy-vs-' + SWEEP_PATH, 1],
          [`sparsity-${SWEEP_PATH}`, 2],
          ['curves-accuracy', 3],
          ['curves-loss', 3],
          ['gap', 3],
          ['hist-1-dense_1', 3],
          ['hist-2-dense_2', 3],
        ],
      );
      for (const c of charts) {
        assert.equal(c.series, c.declared, `${c.id}: data-series disagrees with the drawn series`);
        assert.ok(c.width > 1000, `${c.id} is ${c.width} px wide, not the page's width`);
      }
      // The readable table: a row per variant in the sweep's order (λ = 0 before 0.001), every column visible.
      const rows = await browser.evaluate<string[][]>(
        page.session,
        `[...document.querySelector('table').querySelectorAll('tr')].map((tr) => [...tr.cells].map((c) => c.textContent))`,
      );
      assert.deepEqual(rows, [
        ['variant', 'test acc ± std (n)', 'Δ vs baseline [95% CI]', 'gap', 'sparsity', 'penalty'],
        ['baseline', '0.8200 ± 0.0200 (3)', '—', '0.0900', '1.0%', '0.0%'],
        ['l2', '0.8100 (1)', '-0.0100 (no CI: one run)', '0.0400', '3.0%', '7.7%'],
        ['l1', '0.8500 ± 0.0265 (3)', '+0.0300 [+0.0052, +0.0548] better', '0.0233', '50.0%', '28.6%'],
      ]);
      // The header states the settings.
      const settings = await browser.evaluate<string[]>(
        page.session,
        `[...document.querySelectorAll('dl.settings dt, dl.settings dd')].map((e) => e.textContent)`,
      );
      assert.deepEqual(settings.slice(4, 18), [
        'epochs',
        '3',
        'batch size',
        '32',
        'optimizer',
        'sgd, lr 0.01',
        'training images',
        '800',
        'validation images',
        '200',
        'test images',
        '500',
        'seeds',
        '1, 2, 3',
      ]);
      // A sweep's colours follow λ (sequential, dark to light), not accuracy: the panels' titles carry them.
      const titleColors = await browser.evaluate<string[]>(
        page.session,
        `[...document.querySelectorAll('svg[data-chart="curves-accuracy"] g.series > text:first-child')].map((t) => t.getAttribute('fill'))`,
      );
      assert.deepEqual(titleColors, ['#555', 'rgb(68,1,84)', 'rgb(216,196,30)']);
      // Histograms: a log-count y axis (1, 10, 100 …) in every panel; L1's spike at zero holds a larger share of its weights than the baseline's fullest bin.
      const hist = await browser.evaluate<{ name: string; peak: number; yTicks: string[] }[]>(
        page.session,
        `[...document.querySelectorAll('svg[data-chart="hist-1-dense_1"] g.series')].map((g) => ({ name: g.dataset.name, peak: Number(g.dataset.peakShare), yTicks: [...g.querySelectorAll('text[text-anchor="end"]')].map((t) => t.textContent) }))`,
      );
      assert.deepEqual(
        hist.map((h) => h.name),
        ['baseline', 'l2', 'l1'],
      );
      for (const h of hist) assert.deepEqual(h.yTicks.slice(0, 2), ['1', '10'], h.name);
      assert.ok(
        hist[2]!.peak > hist[0]!.peak,
        `L1's spike at zero should hold the largest share: ${JSON.stringify(hist)}`,
      );

      assert.deepEqual(shot.overflowing, [], 'elements stick out of a 1400 px page');
      assert.equal(shot.scrollWidth, shot.clientWidth, 'the page scrolls sideways');
      assert.deepEqual(page.problems(), []);
      assert.deepEqual(
        page.requests().filter((u) => !u.startsWith('file:')),
        [],
      );

      // The standalone SVG files open on their own, as SVG, with the same series.
      const chartDir = path.join(path.dirname(out), 'report-charts');
      const files = fs.readdirSync(chartDir).sort();
      assert.equal(files.length, 7);
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
  },
);

/** Writes the report of `dirs`, opens it at 1400 px, saves a screenshot as `name`.png; returns the page and its layout. */
async function reportAt1400(browser: Browser, dirs: string[], name: string) {
  const out = path.join(scratchDir('regtrain-report-'), `${name}.html`);
  const r = regtrainSync(['compare', ...dirs, '--report', out]);
  assert.equal(r.status, 0, r.stderr);
  const page = await browser.open(pathToFileURL(out).href);
  const shot = await browser.atWidth(page.session, PAGE_WIDTH);
  fs.mkdirSync(SHOTS, { recursive: true });
  fs.writeFileSync(path.join(SHOTS, `${name}.png`), shot.png);
  return { page, shot };
}

test(
  'a study over training-set size and variants gets a chart of test accuracy vs training images, one line per variant, and fits 1400 px',
  { skip, timeout: 120000 },
  async () => {
    const profile = scratchDir('regtrain-chromium-');
    const browser = new Browser(profile);
    try {
      const { page, shot } = await reportAt1400(browser, [SMALL_DATA], 'small-data');
      assert.deepEqual(shot.overflowing, [], 'elements stick out of a 1400 px page');
      assert.equal(shot.scrollWidth, shot.clientWidth);
      const lines = await browser.evaluate<{ name: string; points: number }[]>(
        page.session,
        `[...document.querySelectorAll('svg[data-chart="accuracy-vs-train-size"] g.series')].map((g) => ({ name: g.dataset.name, points: g.querySelectorAll('circle').length }))`,
      );
      assert.deepEqual(lines, [
        { name: 'baseline', points: 2 },
        { name: 'l1', points: 2 },
      ]);
      // The x axis is the training images each run had (200 and 800), not the trainLimit.
      const xTicks = await browser.evaluate<string[]>(
        page.session,
        `[...document.querySelectorAll('svg[data-chart="accuracy-vs-train-size"] text[text-anchor="middle"]')].map((t) => t.textContent)`,
      );
      assert.ok(xTicks.includes('200') && xTicks.includes('800'), xTicks.join(' '));
      const settings = await browser.evaluate<string>(
        page.session,
        `document.querySelector('dl.settings').textContent`,
      );
      assert.match(settings, /training images200, 800/);
      assert.deepEqual(page.problems(), []);
    } finally {
      await browser.close();
      fs.rmSync(profile, { recursive: true, force: true });
    }
  },
);

test(
  'a single run gets its per-class accuracy and its confusion matrix as a heatmap with class names, and fits 1400 px',
  { skip, timeout: 120000 },
  async () => {
    const profile = scratchDir('regtrain-chromium-');
    const browser = new Browser(profile);
    try {
      const { page, shot } = await reportAt1400(browser, [SINGLE], 'single-run');
      assert.deepEqual(shot.overflowing, [], 'elements stick out of a 1400 px page');
      assert.equal(shot.scrollWidth, shot.clientWidth);
      const perClass = await browser.evaluate<string[]>(
        page.session,
        `[...document.querySelectorAll('svg[data-chart="per-class"] g.series')].map((g) => [...g.querySelectorAll('text')].map((t) => t.textContent).join(' '))`,
      );
      // 50 test images per class; right: 40, 48, 36, 43, 35, 46, 20, 45, 47, 40.
      assert.deepEqual(perClass, [
        'T-shirt/top 80.0%',
        'Trouser 96.0%',
        'Pullover 72.0%',
        'Dress 86.0%',
        'Coat 70.0%',
        'Sandal 92.0%',
        'Shirt 40.0%',
        'Sneaker 90.0%',
        'Bag 94.0%',
        'Ankle boot 80.0%',
      ]);
      // The Shirt row: 20 right, 15 taken for T-shirt/top, 15 for Pullover.
      const shirtRow = await browser.evaluate<string[]>(
        page.session,
        `[...[...document.querySelectorAll('svg[data-chart="confusion"] g.series')][6].querySelectorAll(':scope > text')].map((t) => t.textContent)`,
      );
      assert.deepEqual(shirtRow, ['Shirt', '15', '0', '15', '0', '0', '0', '20', '0', '0', '0']);
      const cells = await browser.evaluate<number>(
        page.session,
        `document.querySelectorAll('svg[data-chart="confusion"] rect').length`,
      );
      assert.equal(cells, 1 + 100);
      const shirtAsTshirt = await browser.evaluate<string>(
        page.session,
        `[...document.querySelectorAll('svg[data-chart="confusion"] rect title')].map((t) => t.textContent).find((t) => t.startsWith('true Shirt, predicted T-shirt/top'))`,
      );
      assert.equal(shirtAsTshirt, 'true Shirt, predicted T-shirt/top: 15 (30.0%)');
      assert.deepEqual(page.problems(), []);
    } finally {
      await browser.close();
      fs.rmSync(profile, { recursive: true, force: true });
    }
  },
);

test('text that looks like markup is escaped in the report', { skip, timeout: 60000 }, async () => {
  const study = sweepStudy();
  // A run name with markup in it; the study's own group names come from study.json.
  const file = path.join(study, 'study.json');
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { members: { group: string; variant: string }[] };
  for (const m of doc.members) if (m.variant === 'baseline') m.group = '<img src=x onerror=alert(1)>&';
  fs.writeFileSync(file, JSON.stringify(doc));
  const out = path.join(path.dirname(study), 'evil.html');
  const r = regtrainSync(['compare', study, '--report', out, '--baseline', 'baseline']);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(fs.readFileSync(out, 'utf8'), /<img/);
  const profile = scratchDir('regtrain-chromium-');
  const browser = new Browser(profile);
  try {
    const page = await browser.open(pathToFileURL(out).href);
    const imgs = await browser.evaluate<number>(page.session, `document.querySelectorAll('img').length`);
    assert.equal(imgs, 0);
    const shown = await browser.evaluate<boolean>(
      page.session,
      `document.body.textContent.includes('<img src=x onerror=alert(1)>&')`,
    );
    assert.equal(shown, true);
    assert.deepEqual(page.problems(), []);
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});

test(
  'the browser check itself notices console errors and network requests (so a clean report means something)',
  { skip, timeout: 60000 },
  async () => {
    const dir = scratchDir('regtrain-bad-');
    const bad = path.join(dir, 'bad.html');
    fs.writeFileSync(
      bad,
      '<!DOCTYPE html><html><body><script>console.error("boom"); undefinedFunction();</script><img src="http://127.0.0.1:9/x.png"></body></html>',
    );
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
  },
);
