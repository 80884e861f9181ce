// Unit tests of the page's pure logic (URL handling, flow control, backoff).
//   cd frontend && npm ci && node --test test/
// The TypeScript sources are bundled on the fly with esbuild; no browser needed.

import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let config;
let flow;
let backoff;

before(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'termpool-unit-'));
  try {
    await esbuild.build({
      absWorkingDir: root,
      entryPoints: { config: 'src/config.ts', flow: 'src/flow.ts', backoff: 'src/backoff.ts' },
      outdir: dir,
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      outExtension: { '.js': '.mjs' },
      logLevel: 'error',
    });
    config = await import(pathToFileURL(path.join(dir, 'config.mjs')));
    flow = await import(pathToFileURL(path.join(dir, 'flow.mjs')));
    backoff = await import(pathToFileURL(path.join(dir, 'backoff.mjs')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('socket URL follows the page path', () => {
  const at = (protocol, pathname) => ({ protocol, host: 'example.test:8080', pathname });
  const size = { cols: 100, rows: 30 };
  assert.equal(config.wsUrl(at('http:', '/'), size), 'ws://example.test:8080/ws?cols=100&rows=30');
  assert.equal(
    config.wsUrl(at('https:', '/container-terminal'), { ...size, session: 'abc-1' }),
    'wss://example.test:8080/container-terminal/ws?cols=100&rows=30&session=abc-1',
  );
  assert.equal(config.wsUrl(at('http:', '/container-terminal/'), size), 'ws://example.test:8080/container-terminal/ws?cols=100&rows=30');
  assert.equal(config.wsUrl(at('http:', '/index.html'), size), 'ws://example.test:8080/ws?cols=100&rows=30');
  assert.equal(config.httpProbeUrl(at('http:', '/container-terminal')), 'http://example.test:8080/container-terminal/ws');
});

test('query parameters: fontSize clamped, theme, fontFamily', () => {
  const d = config.parseConfig('');
  assert.equal(d.fontSize, 14);
  assert.equal(d.theme, 'dark');
  assert.equal(d.renderer, 'webgl');
  assert.equal(config.parseConfig('?fontSize=3').fontSize, 6);
  assert.equal(config.parseConfig('?fontSize=500').fontSize, 72);
  assert.equal(config.parseConfig('?fontSize=18').fontSize, 18);
  assert.equal(config.parseConfig('?fontSize=abc').fontSize, 14);
  assert.equal(config.parseConfig('?fontSize=').fontSize, 14);
  assert.equal(config.parseConfig('?theme=light').theme, 'light');
  assert.equal(config.parseConfig('?theme=neon').theme, 'dark');
  assert.equal(config.parseConfig('?renderer=dom').renderer, 'dom');
  assert.equal(config.parseConfig('?fontFamily=Fira%20Code').fontFamily, '"Fira Code", monospace');
  assert.equal(
    config.parseConfig(`?fontFamily=${encodeURIComponent('"JetBrains Mono", Hack,monospace')}`).fontFamily,
    '"JetBrains Mono", "Hack", "monospace", monospace',
  );
  // Anything that is not a plain family name is dropped: it could end or comment out the CSS.
  for (const bad of ['x;}<b>', 'x/*', 'x"', "a'b", 'x\\41', 'url(x)', '']) {
    assert.equal(config.parseConfig(`?fontFamily=${encodeURIComponent(bad)}`).fontFamily, config.DEFAULT_FONT_FAMILY, bad);
  }
  assert.equal(config.parseConfig(`?fontFamily=${encodeURIComponent('x/*, Hack')}`).fontFamily, '"Hack", monospace');
});

test('the size asked of the server stays within 1..1000', () => {
  assert.deepEqual(config.clampSize({ cols: 2326, rows: 96 }), { cols: 1000, rows: 96 });
  assert.deepEqual(config.clampSize({ cols: 0, rows: 5000 }), { cols: 1, rows: 1000 });
  assert.deepEqual(config.clampSize({ cols: NaN, rows: 80.7 }), { cols: 1, rows: 80 });
});

test('flow control pauses above the high and resumes below the low watermark', () => {
  const sent = [];
  const fc = new flow.FlowControl((m) => sent.push(m), 100, 20);
  fc.written(60);
  fc.written(30);
  assert.deepEqual(sent, []);
  fc.written(20); // 110 > 100
  assert.deepEqual(sent, ['pause']);
  fc.written(50); // still paused: no second pause
  assert.deepEqual(sent, ['pause']);
  fc.processed(60); // 100
  fc.processed(30); // 70
  fc.processed(20); // 50
  assert.deepEqual(sent, ['pause']);
  fc.processed(40); // 10 < 20
  assert.deepEqual(sent, ['pause', 'resume']);
  assert.equal(fc.backlog, 10);
  fc.processed(10);
  assert.deepEqual(sent, ['pause', 'resume']);
  assert.equal(fc.isPaused, false);
});

test('flow control forgets the pause of a dropped socket', () => {
  const sent = [];
  const fc = new flow.FlowControl((m) => sent.push(m), 100, 20);
  fc.written(150);
  fc.newConnection();
  fc.written(1); // the new socket is not paused yet: pause it
  assert.deepEqual(sent, ['pause', 'pause']);
});

test('reconnect backoff doubles up to the cap', () => {
  const opts = { baseDelayMs: 500, maxDelayMs: 10_000 };
  const top = () => 0.999999;
  const delays = [0, 1, 2, 3, 4, 5, 6, 10, 50].map((a) => backoff.backoffDelay(a, opts, top));
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000, 10_000]);
  const low = backoff.backoffDelay(3, opts, () => 0);
  assert.ok(low >= 3200 && low <= 4000, `jittered delay ${low}`);
});
