// Browser tests of the page's workspace features that use the server's `api/*` (issue #17):
// uploads, the sessions list (re-attach, end, offered at the session limit), access keys.
// Run like terminal.test.mjs; the server this file starts has MAX_UPLOAD_MB=1 and
// MAX_SESSIONS_PER_USER=2. Screenshots go to tests/artifacts/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { artifacts, fixture, nextId, openTerminal, run, screenLines, start, stop, typeLine, waitConnected, waitFor, waitForLine } from './helpers.mjs';

before(async () => {
  // Only for a server this file starts itself (not one named by TERMPOOL_URL).
  process.env.MAX_UPLOAD_MB ??= '1';
  process.env.MAX_SESSIONS_PER_USER ??= '2';
  await start();
});
after(stop);

async function shot(page, name) {
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, `workspace-${name}.png`) });
}

/** Records every state the transfer line goes through. */
async function watchTransfer(page) {
  await page.evaluate(() => {
    window.__transferStates = [];
    const box = document.getElementById('transfer');
    new MutationObserver(() => window.__transferStates.push(box.dataset.state)).observe(box, { attributes: true, attributeFilter: ['data-state'] });
  });
}

async function transferResult(page, what) {
  return waitFor(async () => {
    const st = await page.getAttribute('#transfer', 'data-state');
    return st === 'done' || st === 'error' ? { state: st, text: await page.textContent('#transfer-text') } : null;
  }, what);
}

async function upload(page, name, buffer) {
  await page.evaluate(() => {
    const box = document.getElementById('transfer');
    box.dataset.state = '';
  });
  await page.setInputFiles('#upload-input', { name, mimeType: 'application/octet-stream', buffer });
  return transferResult(page, `the upload of ${name} to finish`);
}

describe('workspace api', { timeout: 240_000 }, () => {
  test('upload: picked and dropped files land in the shell directory; clash and size errors', async () => {
    const context = await fixture.browser.newContext();
    try {
      const { page } = await openTerminal(context);
      const dir = `/tmp/termpool-up-${nextId()}`;
      await run(page, `mkdir -p ${dir} && cd ${dir}`);
      await watchTransfer(page);
      const body = Buffer.from(`uploaded ${nextId()}\n`);
      const res = await upload(page, 'notes.txt', body);
      assert.deepEqual(res, { state: 'done', text: `Uploaded ${dir}/notes.txt` });
      assert.ok((await page.evaluate(() => window.__transferStates)).includes('uploading'), 'a progress bar was shown');
      assert.deepEqual(await run(page, 'ls'), ['notes.txt']);
      assert.deepEqual(await run(page, 'cat notes.txt'), [body.toString().trim()]);
      await shot(page, 'upload');

      // The same name again: refused, the file kept.
      const again = await upload(page, 'notes.txt', Buffer.from('other'));
      assert.equal(again.state, 'error');
      assert.match(again.text, /notes\.txt already exists/);
      assert.deepEqual(await run(page, 'cat notes.txt'), [body.toString().trim()]);

      // Over MAX_UPLOAD_MB (1 here): refused with the limit in words, nothing written.
      const big = await upload(page, 'big.bin', Buffer.alloc(1024 * 1024 + 10, 7));
      assert.equal(big.state, 'error');
      assert.match(big.text, /big\.bin is too large/);
      await shot(page, 'upload-error');

      // Dropped on the terminal.
      await page.evaluate(() => {
        const dt = new DataTransfer();
        dt.items.add(new File(['dropped bytes\n'], 'dropped.txt'));
        const target = document.getElementById('terminal');
        target.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
        target.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
      });
      await waitFor(async () => (await page.textContent('#transfer-text')) === `Uploaded ${dir}/dropped.txt`, 'the dropped file to upload');
      assert.deepEqual(await run(page, 'ls'), ['dropped.txt  notes.txt']);
      await run(page, `cd / && rm -rf ${dir}`);
    } finally {
      await context.close();
    }
  });

  test('sessions: a detached session is listed and re-attached with its screen; one is ended', async () => {
    const context = await fixture.browser.newContext();
    try {
      const first = await openTerminal(context);
      const mark = `VISIBLE_${nextId().replace(/-/g, '_')}`;
      await typeLine(first.page, `clear; echo ${mark}; sleep 600`);
      await waitForLine(first.page, (l) => l === mark, 'the mark');
      const detachedId = first.frames.ready[0].session;
      await first.page.close(); // the tab goes away: the session stays, detached

      const { page, frames } = await openTerminal(context);
      const ownId = frames.ready[0].session;
      assert.notEqual(ownId, detachedId);
      assert.ok(!(await screenLines(page)).includes(mark));
      await page.click('#sessions-button');
      const row = `#sessions-panel .session[data-session="${detachedId}"]`;
      await page.waitForSelector(row);
      await waitFor(async () => (await page.getAttribute(row, 'data-attached')) === 'false', 'the session to show as detached');
      const rowText = await page.textContent(row);
      assert.match(rowText, /sleep/, 'the running command is shown');
      assert.match(rowText, /\d+×\d+/, 'the size is shown');
      assert.match(rowText, /opened \d+ (s|min) ago/);
      assert.match(await page.textContent(`#sessions-panel .session[data-session="${ownId}"]`), /this tab/);
      await shot(page, 'sessions');

      await page.click(`${row} .attach-here`);
      await waitFor(() => frames.ready.length === 2, 'a second ready frame');
      assert.equal(frames.ready[1].session, detachedId);
      assert.equal(frames.ready[1].resumed, true);
      await waitForLine(page, (l) => l === mark, 'the re-attached screen');

      // End the session this tab left, from the list.
      await page.click('#sessions-button');
      const ownRow = `#sessions-panel .session[data-session="${ownId}"]`;
      await page.waitForSelector(ownRow);
      await page.click(`${ownRow} .end-session`);
      await page.waitForSelector(ownRow, { state: 'detached' });
      const listed = () => page.evaluate(() => fetch('api/sessions').then((r) => r.json()));
      await waitFor(async () => (await listed()).sessions.map((s) => s.id).join() === detachedId, 'the server to list only the re-attached session');

      // "New tab" on the session this tab shows: the new tab takes it, with its screen, and this
      // tab says so and does not take it back by itself.
      await page.click('#sessions-panel .panel-close');
      const third = await openTerminal(context);
      await third.page.click('#sessions-button');
      const [tab] = await Promise.all([context.waitForEvent('page'), third.page.click(`${row} .attach-new-tab`)]);
      await waitConnected(tab);
      await waitForLine(tab, (l) => l === mark, 'the screen in the new tab');
      await page.waitForSelector('#status[data-state="disconnected"]');
      assert.match(await page.textContent('#banner-text'), /attached from another connection/i);
      await tab.waitForTimeout(1500);
      assert.equal(await tab.getAttribute('#status', 'data-state'), 'connected', 'the new tab keeps the session');
    } finally {
      await context.close();
    }
  });

  test('sessions: at the session limit the page offers the list; ending one lets it in', async () => {
    const context = await fixture.browser.newContext();
    try {
      const one = await openTerminal(context);
      await openTerminal(context);
      const page = await context.newPage();
      await page.goto(`${fixture.baseUrl}/`);
      await page.waitForSelector('#sessions-panel:not([hidden])', { timeout: 20_000 });
      assert.match(await page.textContent('#sessions-panel'), /session limit/);
      await page.waitForSelector('#sessions-panel .session .end-session');
      await shot(page, 'session-limit');
      await page.click(`#sessions-panel .session[data-session="${one.frames.ready[0].session}"] .end-session`);
      await page.click('#banner-button'); // "Reconnect now"
      await waitConnected(page, 30_000);
    } finally {
      await context.close();
    }
  });

  test('access key: another browser gets the same account and files; a replaced key stops working', async () => {
    const home = await fixture.browser.newContext();
    const other = await fixture.browser.newContext();
    try {
      const a = await openTerminal(home);
      const userA = a.frames.ready[0].user;
      const file = `keep-${nextId()}.txt`;
      await run(a.page, `echo kept > ~/${file}`);
      await a.page.click('#account-button');
      await waitFor(async () => (await a.page.getAttribute('#account-explain', 'data-user')) === userA, 'the account line');
      assert.match(await a.page.textContent('#account-explain'), /cookie/);
      await a.page.click('#get-access-key');
      const oldKey = await (await a.page.waitForSelector('#access-key-value')).inputValue();
      assert.ok(oldKey.length >= 43, 'a long key');
      // Replacing asks first, then the old key is gone.
      await a.page.click('#get-access-key');
      assert.match(await a.page.textContent('#get-access-key'), /old key stops working/);
      await a.page.click('#get-access-key');
      await waitFor(async () => (await a.page.inputValue('#access-key-value')) !== oldKey, 'a new key');
      const key = await a.page.inputValue('#access-key-value');
      await shot(a.page, 'access-key');
      await a.page.click('#account-panel .panel-close');
      await a.page.click('#terminal');

      const b = await openTerminal(other);
      const sessionsOf = (page) => page.evaluate(() => fetch('api/sessions').then((r) => r.json()));
      const sessionA = a.frames.ready[0].session;
      // In local mode every identity's shell is the server's user: the identity shows in the list.
      if (a.frames.ready[0].container !== null) assert.notEqual(b.frames.ready[0].user, userA, 'a fresh browser is another account');
      assert.ok(!(await sessionsOf(b.page)).sessions.some((s) => s.id === sessionA), 'a fresh browser is another identity');
      await b.page.click('#account-button');
      await b.page.fill('#redeem-key', oldKey);
      await b.page.click('#use-access-key');
      await waitFor(async () => /unknown or replaced/.test(await b.page.textContent('.redeem-result')), 'the old key refused');
      await b.page.fill('#redeem-key', key);
      await Promise.all([b.page.waitForEvent('load'), b.page.click('#use-access-key')]);
      await waitConnected(b.page);
      const who = await b.page.evaluate(() => fetch('api/whoami').then((r) => r.json()));
      assert.equal(who.user, userA, 'the key gave this browser the account');
      // The identity itself moved (in local mode every account is the server's user): this
      // browser now sees the first browser's sessions.
      assert.ok((await sessionsOf(b.page)).sessions.some((s) => s.id === sessionA), 'the sessions of the account are listed');
      assert.deepEqual(await run(b.page, 'whoami'), await run(a.page, 'whoami'));
      assert.deepEqual(await run(b.page, `cat ~/${file}`), ['kept']);
      await run(b.page, `rm -f ~/${file}`);
    } finally {
      await home.close();
      await other.close();
    }
  });
});
