// Browser test of the terminal page: headless Debian Chromium driven by playwright-core.
//
//   cd tests/browser && npm ci && cd ../.. && node --test tests/browser/
//
// Environment:
//   TERMPOOL_URL   base URL of a running server (e.g. http://127.0.0.1:8080). When unset, the test
//                  starts `target/debug/termpool --port 0` itself (TERMPOOL_BIN overrides the path).
//   TERMPOOL_PATH  page path, default `/`; `/container-terminal` in container mode.
//   CHROMIUM       browser executable, default /usr/bin/chromium.
//   TERMPOOL_SKIP_REATTACH=1  skip the checks that the server re-attached (the page's side of
//                  re-attach is still checked).
//
// Saves a screenshot to tests/artifacts/browser-terminal.png.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import {
  artifacts,
  bufferType,
  fixture,
  nextId,
  openTerminal,
  pagePath,
  run,
  screenLines,
  start,
  stop,
  termSize,
  typeLine,
  waitConnected,
  waitFor,
  waitForLine,
} from './helpers.mjs';

// Set TERMPOOL_SKIP_REATTACH=1 against a server that does not implement re-attach (yet).
const skipReattach = process.env.TERMPOOL_SKIP_REATTACH === '1' ? 'TERMPOOL_SKIP_REATTACH=1' : false;
let baseUrl = '';
let browser = null;

// ---- tests ----------------------------------------------------------------------------------------

before(async () => {
  await start();
  baseUrl = fixture.baseUrl;
  browser = fixture.browser;
});

after(stop);

describe('terminal page', { timeout: 180_000 }, () => {
  test('shell, vim, top, resize, no HTML injection, copy/paste, exit', async () => {
    const context = await browser.newContext();
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: baseUrl });
    try {
      const { page, frames, consoleErrors } = await openTerminal(context);

      // The first frame is `ready`; nothing of it is printed in the terminal.
      assert.equal(frames.ready.length, 1, 'one ready frame');
      const ready = frames.ready[0];
      assert.equal(ready.protocol, 1);
      assert.equal(typeof ready.session, 'string');
      assert.ok(!(await screenLines(page)).some((l) => l.includes(ready.session)), 'ready frame not shown');
      // The socket was opened with the fitted size of the page.
      const size0 = await termSize(page);
      assert.deepEqual({ cols: ready.cols, rows: ready.rows }, size0, 'TTY created with the fitted size');

      // whoami
      const who = await run(page, 'whoami');
      assert.deepEqual(who, [ready.user], 'whoami prints the user of the ready frame');

      // vim: insert text, :wq, check the file with cat.
      const file = `/tmp/termpool-browser-${nextId()}.txt`;
      const text = `hello from vim ${nextId()}`;
      await typeLine(page, `vim ${file}`);
      await waitFor(async () => (await bufferType(page)) === 'alternate', 'vim to switch to the alternate screen');
      await waitForLine(page, (l) => l.includes(path.basename(file)), 'vim status line with the file name');
      await page.keyboard.press('i');
      await page.keyboard.type(text);
      await page.keyboard.press('Escape');
      await page.waitForTimeout(300);
      await typeLine(page, ':wq');
      await waitFor(async () => (await bufferType(page)) === 'normal', 'vim to exit');
      assert.deepEqual(await run(page, `cat ${file}`), [text], 'file written by vim');
      await run(page, `rm -f ${file}`);

      // top: its header appears; q quits.
      await typeLine(page, 'top');
      await waitForLine(page, (l) => /^top - /.test(l) || /load average/.test(l), 'top header');
      await waitForLine(page, (l) => /^(Tasks|Threads):/.test(l.trim()), 'top task line');
      await page.keyboard.press('q');
      await waitFor(async () => (await bufferType(page)) === 'normal', 'top to exit');
      // top draws on the normal screen here and may leave the cursor mid-screen: start clean.
      await typeLine(page, 'clear');
      await waitFor(async () => (await screenLines(page)).length <= 1, 'the screen to clear');

      // Window resize: the TTY follows the fitted size.
      const before = await run(page, 'stty size');
      assert.deepEqual(before, [`${size0.rows} ${size0.cols}`], 'stty size matches the terminal');
      await page.setViewportSize({ width: 760, height: 460 });
      const size1 = await waitFor(async () => {
        const s = await termSize(page);
        return s.cols !== size0.cols && s.rows !== size0.rows ? s : null;
      }, 'the terminal to refit');
      await waitFor(async () => {
        const out = await run(page, 'stty size');
        return out[0] === `${size1.rows} ${size1.cols}`;
      }, `stty size to become ${size1.rows} ${size1.cols}`);
      const resizes = frames.sent.map((s) => JSON.parse(s)).filter((m) => m.type === 'resize');
      assert.ok(resizes.length >= 1, 'a resize frame was sent');
      const lastResize = resizes[resizes.length - 1];
      assert.deepEqual({ cols: lastResize.cols, rows: lastResize.rows }, size1);
      await page.setViewportSize({ width: 1100, height: 700 });
      await waitFor(async () => (await termSize(page)).cols === size0.cols, 'the terminal to grow back');

      // Output is text, never markup.
      const payload = '<b>x</b> <img src=x onerror=window.__pwned=1>';
      const printed = await run(page, `printf '%s\\n' '${payload}'`);
      assert.deepEqual(printed, [payload], 'markup printed literally');
      await page.waitForTimeout(300);
      const injected = await page.evaluate(() => ({
        bold: document.querySelectorAll('#terminal b').length,
        img: document.querySelectorAll('img').length,
        pwned: window.__pwned === 1,
      }));
      assert.deepEqual(injected, { bold: 0, img: 0, pwned: false }, 'no HTML injection');

      mkdirSync(artifacts, { recursive: true });
      await page.screenshot({ path: path.join(artifacts, 'browser-terminal.png') });

      // Multi-byte and wide characters pass through the UTF-8 decoding intact.
      const utf8 = await run(page, `printf '%s\\n' 'héllo ✓ 日本'`);
      assert.deepEqual(utf8, ['héllo ✓ 日本']);

      // Copy (Ctrl+Shift+C) puts the selection on the clipboard; paste (Ctrl+Shift+V) types it.
      const copyText = `copy_${nextId().replace(/-/g, '_')}`;
      await run(page, `echo ${copyText}`);
      const selected = await page.evaluate((text) => {
        const term = window.termpool.term;
        const buf = term.buffer.active;
        for (let i = buf.length - 1; i >= 0; i--) {
          if (buf.getLine(i)?.translateToString(true) === text) {
            term.select(0, i, text.length);
            return term.getSelection();
          }
        }
        return null;
      }, copyText);
      assert.equal(selected, copyText);
      await page.keyboard.press('Control+Shift+C');
      await waitFor(async () => (await page.evaluate(() => navigator.clipboard.readText())) === copyText, 'the clipboard to hold the selection');
      await page.evaluate(() => navigator.clipboard.writeText('echo pasted_$((40+2))'));
      await page.keyboard.press('Control+Shift+V');
      await page.keyboard.press('Enter');
      await waitForLine(page, (l) => l === 'pasted_42', 'the pasted command to run');

      // exit: the page says the session ended and offers a new one.
      await typeLine(page, 'exit 3');
      await page.waitForSelector('#status[data-state="ended"]', { timeout: 10_000 });
      await waitForLine(page, (l) => l.includes('[session ended, code 3]'), 'the ended line');
      assert.equal(await page.isVisible('#banner'), true, 'ended banner shown');
      await page.click('#banner-button');
      await waitConnected(page);
      assert.equal(frames.ready.length, 2);
      assert.notEqual(frames.ready[1].session, ready.session, 'a new session after exit');
      assert.equal(frames.ready[1].resumed, false);
      assert.deepEqual(await run(page, 'echo again'), ['again']);

      assert.deepEqual(consoleErrors, [], 'no page errors');
    } finally {
      await context.close();
    }
  });

  test('a flood of output arrives complete, with flow control', async () => {
    const context = await browser.newContext();
    try {
      const { page, frames } = await openTerminal(context);
      const n = 400_000; // about 2.7 MB of output
      const out = await run(page, `seq 1 ${n}`, 120_000, { mayScrollOff: true });
      // The scrollback keeps the last lines; they must be consecutive and end at n.
      const nums = out.filter((l) => /^\d+$/.test(l)).map(Number);
      assert.ok(nums.length > 1000, `saw ${nums.length} numbers`);
      assert.equal(nums[nums.length - 1], n);
      for (let i = 1; i < nums.length; i++) assert.equal(nums[i], nums[i - 1] + 1, `gap after ${nums[i - 1]}`);
      const flow = frames.sent.map((f) => JSON.parse(f).type).filter((t) => t === 'pause' || t === 'resume');
      for (let i = 0; i < flow.length; i++) assert.equal(flow[i], i % 2 === 0 ? 'pause' : 'resume', 'pause and resume alternate');
      assert.equal(flow.length % 2, 0, 'resumed at the end');
      console.log(`flood: ${flow.length / 2} pause/resume cycles`);
      assert.deepEqual(await run(page, 'echo still_responsive'), ['still_responsive']);
    } finally {
      await context.close();
    }
  });

  test('query parameters: fontSize is clamped, light theme', async () => {
    const context = await browser.newContext();
    try {
      const { page } = await openTerminal(context, { query: '?fontSize=500&theme=light' });
      const opts = await page.evaluate(() => ({
        fontSize: window.termpool.term.options.fontSize,
        background: window.termpool.term.options.theme?.background,
        theme: document.documentElement.dataset.theme,
      }));
      assert.equal(opts.fontSize, 72);
      assert.equal(opts.theme, 'light');
      assert.match(opts.background, /^#f/i);
      const size = await termSize(page);
      assert.deepEqual(await run(page, 'stty size'), [`${size.rows} ${size.cols}`], 'fitted to the big font');
      // The DOM renderer (the fallback when WebGL fails) renders output as text too.
      await page.goto(`${baseUrl}${pagePath}?fontSize=1&renderer=dom`);
      await waitConnected(page);
      assert.equal(await page.evaluate(() => window.termpool.term.options.fontSize), 6);
      assert.equal(await page.getAttribute('#terminal', 'data-renderer'), 'dom');
      await page.click('#terminal');
      const payload = '<b>bold?</b><script>window.__pwned=1</script>';
      assert.deepEqual(await run(page, `printf '%s\\n' '${payload}'`), [payload]);
      await page.waitForTimeout(200);
      const dom = await page.evaluate(() => ({
        rowsText: document.querySelector('#terminal .xterm-rows')?.textContent ?? '',
        markup: document.querySelectorAll('#terminal b, #terminal script').length,
        pwned: window.__pwned === 1,
      }));
      assert.ok(dom.rowsText.includes('<b>bold?</b>'), 'DOM rows show the markup as text');
      assert.deepEqual({ markup: dom.markup, pwned: dom.pwned }, { markup: 0, pwned: false });
    } finally {
      await context.close();
    }
  });

  test('a reload re-attaches to the same shell', async () => {
    const context = await browser.newContext();
    try {
      const { page, frames } = await openTerminal(context);
      const mark = nextId();
      await run(page, `export TP_MARK=${mark}`);
      await page.reload();
      await waitConnected(page);
      assert.equal(frames.urls.length, 2);
      assert.doesNotMatch(frames.urls[0], /[?&]session=/);
      assert.match(frames.urls[1], new RegExp(`[?&]session=${frames.ready[0].session}(&|$)`), 'the reloaded page asks to re-attach');
      assert.equal(frames.ready.length, 2);
      await page.click('#terminal');
      if (!skipReattach) {
        assert.equal(frames.ready[1].session, frames.ready[0].session, 'same session id');
        assert.equal(frames.ready[1].resumed, true, 'resumed');
        assert.deepEqual(await run(page, 'echo "mark=$TP_MARK"'), [`mark=${mark}`], 'same shell after reload');
      }
      // A second page of the same browser (another tab) gets its own session.
      const other = await context.newPage();
      const otherUrls = [];
      other.on('websocket', (ws) => otherUrls.push(ws.url()));
      await other.goto(`${baseUrl}${pagePath}`);
      await waitConnected(other);
      assert.doesNotMatch(otherUrls[0], /[?&]session=/, 'a new tab starts a new session');
      await typeLine(page, 'exit');
      await page.waitForSelector('#status[data-state="ended"]');
    } finally {
      await context.close();
    }
  });

  test('following a link from another site keeps the identity and the session', async () => {
    const context = await browser.newContext();
    try {
      const { page, frames } = await openTerminal(context);
      const identity = async () => (await context.cookies()).find((c) => c.name === 'termpool_id')?.value;
      const before = await identity();
      assert.ok(before, 'the page set an identity cookie');
      // A navigation another site starts carries no SameSite=Strict cookie: the server must not
      // mistake it for a first visit and hand out a new identity over the old one.
      await context.route('http://other-site.test/', (r) =>
        r.fulfill({ contentType: 'text/html', body: `<a id=go href="${baseUrl}${pagePath}">my terminal</a>` }),
      );
      await page.goto('http://other-site.test/');
      await page.click('#go');
      await waitConnected(page);
      assert.equal(await identity(), before, 'same identity after the link');
      assert.equal(frames.ready.length, 2);
      assert.equal(frames.ready[1].user, frames.ready[0].user);
      if (!skipReattach) assert.equal(frames.ready[1].resumed, true, 'back in the same session');
    } finally {
      await context.close();
    }
  });

  test('a dropped connection reconnects by itself (and re-attaches)', async () => {
    const context = await browser.newContext();
    try {
      // Route the page's sockets through Playwright so the test can cut them.
      const routes = [];
      await context.routeWebSocket(/\/ws(\?|$)/, (ws) => {
        const upstream = ws.connectToServer();
        routes.push({ ws, upstream, url: ws.url() });
      });
      const { page, frames } = await openTerminal(context);
      const mark = nextId();
      await run(page, `export TP_MARK=${mark}`);
      await typeLine(page, 'clear; vim -u NONE -N');
      await waitFor(async () => (await bufferType(page)) === 'alternate', 'vim');
      assert.equal(routes.length, 1);
      assert.doesNotMatch(routes[0].url, /[?&]session=/, 'a fresh page asks for a new session');

      // Cut the connection on both sides, as a network failure would.
      await routes[0].upstream.close({ code: 4000, reason: 'cut by test' });
      await routes[0].ws.close({ code: 4000, reason: 'cut by test' });
      await page.waitForSelector('#status[data-state="reconnecting"]', { timeout: 5_000 });
      assert.equal(await page.isVisible('#banner'), true, 'drop banner shown');
      await waitConnected(page);
      assert.equal(routes.length, 2, 'a new socket was opened');
      assert.match(routes[1].url, new RegExp(`[?&]session=${frames.ready[0].session}(&|$)`), 'the new socket asks to re-attach');
      assert.match(routes[1].url, /[?&]cols=\d+/);
      assert.equal(await page.isVisible('#banner'), false, 'banner hidden again');
      await page.click('#terminal');
      if (skipReattach) {
        // Whatever the server answered, the page is usable: a shell on the normal screen.
        await waitFor(async () => (await bufferType(page)) === 'normal', 'the normal screen');
        assert.deepEqual(await run(page, 'echo reconnected'), ['reconnected']);
        return;
      }
      assert.equal(frames.ready[1].resumed, true, 'resumed');
      // The re-attached session repaints vim's screen; quit it and find the same shell.
      await waitFor(async () => (await bufferType(page)) === 'alternate', 'vim screen replayed');
      await page.keyboard.press('Escape');
      await typeLine(page, ':q!');
      await waitFor(async () => (await bufferType(page)) === 'normal', 'vim to exit');
      assert.deepEqual(await run(page, 'echo "mark=$TP_MARK"'), [`mark=${mark}`], 'same shell after reconnect');
    } finally {
      await context.close();
    }
  });

  test('error frames are shown as text; unknown frames are ignored', async () => {
    const context = await browser.newContext();
    try {
      const routes = [];
      await context.routeWebSocket(/\/ws(\?|$)/, (ws) => {
        routes.push({ ws, upstream: ws.connectToServer() });
      });
      const { page, consoleErrors } = await openTerminal(context);
      const evil = '<img src=x onerror=window.__pwned=1> not markup';
      routes[0].ws.send(JSON.stringify({ type: 'error', code: 'bad_request', message: evil }));
      routes[0].ws.send(JSON.stringify({ type: 'some_future_frame', x: 1 }));
      await page.waitForFunction((text) => document.getElementById('message').textContent === text, `bad_request: ${evil}`);
      const dom = await page.evaluate(() => ({ img: document.querySelectorAll('img').length, pwned: window.__pwned === 1 }));
      assert.deepEqual(dom, { img: 0, pwned: false });
      assert.equal(await page.getAttribute('#status', 'data-state'), 'connected', 'an error frame does not end the session');
      assert.deepEqual(await run(page, 'echo fine'), ['fine']);
      assert.deepEqual(consoleErrors, []);
    } finally {
      await context.close();
    }
  });
});
