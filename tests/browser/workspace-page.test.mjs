// Browser tests of the page's own workspace features (issue #17): OSC 52 clipboard, right-click
// paste and bracketed paste, copy-on-select, OSC 1337 downloads, the touch key bar, settings.
// Run like terminal.test.mjs (same environment variables); screenshots go to tests/artifacts/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { artifacts, fixture, nextId, openTerminal, pagePath, run, screenLines, start, stop, termSize, typeLine, waitConnected, waitFor, waitForLine } from './helpers.mjs';

before(start);
after(stop);

async function shot(page, name) {
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, `workspace-${name}.png`) });
}

async function clipboardContext() {
  const context = await fixture.browser.newContext();
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: fixture.baseUrl });
  return context;
}

const readClipboard = (page) => page.evaluate(() => navigator.clipboard.readText());

describe('workspace page', { timeout: 180_000 }, () => {
  test('OSC 52 sets the clipboard, a read is never answered', async () => {
    const context = await clipboardContext();
    try {
      const { page } = await openTerminal(context);
      await page.evaluate(() => navigator.clipboard.writeText('before'));
      const word = `hello-${nextId()}`;
      await run(page, `printf '\\e]52;c;%s\\a' $(printf ${word} | base64)`);
      await waitFor(async () => (await readClipboard(page)) === word, 'the clipboard to hold the OSC 52 text');
      assert.ok(!(await screenLines(page)).some((l) => l.includes(Buffer.from(word).toString('base64'))), 'the sequence is not printed');

      // A read (`?`) would hand the person's clipboard to whatever runs in the shell: no reply.
      await page.evaluate(() => navigator.clipboard.writeText('secret-of-the-person'));
      const out = await run(page, `printf '\\e]52;c;?\\a'; read -r -t 2 -d $'\\a' reply; echo "reply:\${#reply}"`);
      assert.deepEqual(out.filter((l) => l.startsWith('reply:')), ['reply:0'], 'no answer to an OSC 52 read');
      await shot(page, 'clipboard');
    } finally {
      await context.close();
    }
  });

  test('right-click pastes, bracketed when the program asks; bash keeps a pasted line unrun', async () => {
    const context = await clipboardContext();
    try {
      const { page } = await openTerminal(context);
      // A program that turns on mode 2004 gets the paste between ESC[200~ and ESC[201~.
      await page.evaluate(() => navigator.clipboard.writeText('pasted-text'));
      await typeLine(page, "printf '\\e[?2004h'; cat -v");
      await page.waitForTimeout(300);
      await page.click('#terminal', { button: 'right' });
      await page.keyboard.press('Enter');
      await waitForLine(page, (l) => l === '^[[200~pasted-text^[[201~', 'the paste to arrive wrapped');
      await page.keyboard.press('Control+c');
      await run(page, "printf '\\e[?2004l'");

      // bash (readline) enables bracketed paste itself: a pasted command with a newline waits for Enter.
      await page.evaluate(() => navigator.clipboard.writeText('echo P_$((20+1))\n'));
      await page.click('#terminal', { button: 'right' });
      await page.waitForTimeout(800);
      assert.ok(!(await screenLines(page)).includes('P_21'), 'the pasted line did not run by itself');
      await page.keyboard.press('Enter');
      await waitForLine(page, (l) => l === 'P_21', 'the pasted command to run after Enter');
    } finally {
      await context.close();
    }
  });

  test('settings: copy-on-select, font size and theme kept in the browser; URL parameters win', async () => {
    const context = await clipboardContext();
    try {
      const { page } = await openTerminal(context);
      await run(page, 'echo SELECT_ME_1');
      // A mouse drag over the start of the first row, as a person selects.
      const selectFirst = async (cells) => {
        await page.evaluate(() => window.termpool.term.clearSelection());
        const box = await page.locator('#terminal .xterm-screen').boundingBox();
        const cell = await page.evaluate(() => {
          const t = window.termpool.term;
          const el = document.querySelector('#terminal .xterm-screen');
          return { w: el.clientWidth / t.cols, h: el.clientHeight / t.rows };
        });
        await page.mouse.move(box.x + 1, box.y + cell.h / 2);
        await page.mouse.down();
        await page.mouse.move(box.x + cell.w * cells, box.y + cell.h / 2, { steps: 5 });
        await page.mouse.up();
      };
      await page.evaluate(() => navigator.clipboard.writeText('untouched'));
      await selectFirst(4);
      await page.waitForTimeout(300);
      assert.equal(await readClipboard(page), 'untouched', 'copy-on-select is off by default');

      await page.click('#settings-button');
      await page.check('#setting-copy-on-select');
      await page.fill('#setting-font-size', '20');
      await page.press('#setting-font-size', 'Enter');
      await page.selectOption('#setting-theme', 'light');
      await shot(page, 'settings');
      assert.equal(await page.evaluate(() => window.termpool.term.options.fontSize), 20);
      assert.equal(await page.getAttribute('html', 'data-theme'), 'light');
      await page.click('#settings-panel .panel-close');

      // (another extent: xterm.js reports only selections that differ from the last one)
      await selectFirst(7);
      const selected = await page.evaluate(() => window.termpool.term.getSelection());
      assert.ok(selected.length > 0, 'something is selected');
      await waitFor(async () => (await readClipboard(page)) === selected, 'copy-on-select to copy the selection');

      // Kept across loads; a URL parameter wins for its page.
      await page.reload();
      await waitConnected(page);
      assert.equal(await page.evaluate(() => window.termpool.term.options.fontSize), 20, 'font size remembered');
      assert.equal(await page.getAttribute('html', 'data-theme'), 'light', 'theme remembered');
      await page.goto(`${fixture.baseUrl}${pagePath}?fontSize=10&theme=dark`);
      await waitConnected(page);
      assert.equal(await page.evaluate(() => window.termpool.term.options.fontSize), 10, 'URL fontSize wins');
      assert.equal(await page.getAttribute('html', 'data-theme'), 'dark', 'URL theme wins');
    } finally {
      await context.close();
    }
  });

  test('OSC 1337 File= saves the bytes under the name, nothing printed', async () => {
    const context = await fixture.browser.newContext({ acceptDownloads: true });
    try {
      const { page } = await openTerminal(context);
      const name = `dl-${nextId()}.bin`;
      const file = `/tmp/${name}`;
      // Every byte value, so that any text decoding on the way would show.
      await run(page, `printf "$(printf '\\\\%03o' $(seq 0 255))" > ${file}; printf 'tail\\n' >> ${file}`);
      const expected = await readFile(file).catch(() => null); // same machine in local mode
      const hasDownload = (await run(page, 'command -v download >/dev/null && echo yes || echo no'))[0] === 'yes';
      // The server's `download` command when it is installed, else the same sequence by hand.
      const cmd = hasDownload
        ? `download ${file}`
        : `printf '\\e]1337;File=name=%s;size=%s;inline=0:%s\\a' "$(printf %s ${name} | base64 -w0)" "$(stat -c %s ${file})" "$(base64 -w0 < ${file})"`;
      const saved = page.waitForEvent('download');
      await run(page, cmd);
      const dl = await saved;
      assert.equal(dl.suggestedFilename(), name);
      const got = await readFile(await dl.path());
      assert.equal(got.length, 261);
      if (expected) assert.deepEqual(got, expected, 'the saved bytes are the file');
      for (let i = 0; i < 256; i++) assert.equal(got[i], i, `byte ${i}`);
      const b64 = got.toString('base64').slice(0, 24);
      assert.ok(!(await screenLines(page)).some((l) => l.includes(b64)), 'the contents are not printed');
      await waitFor(async () => (await page.textContent('#transfer-text')).includes(name), 'the status line to name the download');
      await shot(page, 'download');
      if (!hasDownload) console.log('# note: no `download` command in this shell; the sequence was written with printf');
      await run(page, `rm -f ${file}`);
    } finally {
      await context.close();
    }
  });

  test('phone: the key bar sticky Ctrl then c interrupts sleep; the terminal refits', async () => {
    const viewport = { width: 390, height: 760 };
    const context = await fixture.browser.newContext({ hasTouch: true, isMobile: true, viewport, deviceScaleFactor: 2 });
    try {
      // The DOM renderer: headless Chromium's screenshots of an emulated phone miss the WebGL canvas.
      const { page } = await openTerminal(context, { viewport, query: '?renderer=dom' });
      assert.equal(await page.isVisible('#keybar'), true, 'the key bar shows on a touch device');
      const labels = await page.$$eval('#keybar button', (bs) => bs.map((b) => b.textContent));
      for (const k of ['Esc', 'Ctrl', 'Alt', 'Tab', '←', '↑', '↓', '→', '|', '~', '/', '-']) assert.ok(labels.includes(k), `key ${k}`);

      await typeLine(page, 'sleep 100');
      await page.waitForTimeout(500);
      await page.tap('#keybar button[data-mod="ctrl"]');
      assert.equal(await page.getAttribute('#keybar button[data-mod="ctrl"]', 'aria-pressed'), 'true');
      await shot(page, 'keybar');
      await page.keyboard.type('c');
      await waitForLine(page, (l) => l.includes('^C'), 'the interrupt to show');
      const t0 = Date.now();
      assert.deepEqual(await run(page, 'echo back'), ['back']);
      assert.ok(Date.now() - t0 < 10_000, 'the shell answers at once: sleep was interrupted');
      assert.equal(await page.getAttribute('#keybar button[data-mod="ctrl"]', 'aria-pressed'), 'false', 'Ctrl released after one key');

      // The bar's characters arrive as typed.
      await page.keyboard.type('echo "a');
      for (const k of ['|', '~', '/', '-']) await page.tap(`#keybar button[title="${k}"]`);
      await page.keyboard.type('b"');
      await page.keyboard.press('Enter');
      await waitForLine(page, (l) => l === 'a|~/-b', 'the keys of the bar to arrive');

      // The on-screen keyboard shrinks the visual viewport: the page and the terminal follow it.
      const rows0 = (await termSize(page)).rows;
      await page.setViewportSize({ width: 390, height: 420 });
      await waitFor(async () => (await termSize(page)).rows < rows0 - 5, 'the terminal to refit to the smaller viewport');
      const fits = await page.evaluate(() => Math.abs(document.body.getBoundingClientRect().height - window.visualViewport.height) < 2);
      assert.ok(fits, 'the page is as tall as the visual viewport');
      assert.equal(await page.isVisible('#keybar'), true);
    } finally {
      await context.close();
    }
  });

  test('a desktop browser has no key bar', async () => {
    const context = await fixture.browser.newContext();
    try {
      const { page } = await openTerminal(context);
      assert.equal(await page.isVisible('#keybar'), false);
    } finally {
      await context.close();
    }
  });
});
