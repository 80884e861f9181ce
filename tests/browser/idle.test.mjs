// Browser test of idle detach: a server with IDLE_SESSION_SECS=4 warns the page after 2 s without
// input; the page shows a banner with a Stay button, then "Detached after inactivity" with a
// Reconnect button, and does not reconnect by itself.
//
//   cd tests/browser && npm ci && cd ../.. && node --test tests/browser/idle.test.mjs
//
// Starts its own server (TERMPOOL_BIN overrides target/debug/termpool); skipped with TERMPOOL_URL.
// Saves a screenshot to tests/artifacts/browser-idle.png.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { artifacts, fixture, openTerminal, start, stop, waitConnected } from './helpers.mjs';

const external = process.env.TERMPOOL_URL ? 'TERMPOOL_URL names a server of its own settings' : false;

before(async () => {
  if (external) return;
  // The server the helpers start reads its settings from the environment too.
  process.env.IDLE_SESSION_SECS = '4';
  await start();
});

after(stop);

/** The banner's text and button, or null while it is hidden. */
async function banner(page) {
  return page.evaluate(() => {
    const el = document.getElementById('banner');
    if (!el || el.hidden) return null;
    return {
      text: document.getElementById('banner-text').textContent,
      button: document.getElementById('banner-button').textContent,
    };
  });
}

async function waitBanner(page, pred, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const b = await banner(page);
    if (pred(b)) return b;
    assert.ok(Date.now() < deadline, `${what}; banner: ${JSON.stringify(b)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('idle detach on the page', { timeout: 90_000, skip: external }, () => {
  test('warning with Stay, then detached with Reconnect, no reconnect by itself', async () => {
    const context = await fixture.browser.newContext();
    try {
      const { page, frames } = await openTerminal(context);
      const session = frames.ready[0].session;

      const warned = await waitBanner(page, (b) => b?.button === 'Stay', 'the idle warning shows');
      assert.match(warned.text, /No input for a while: this terminal will be detached in 2 s/);
      await page.click('#banner-button');
      assert.equal(await banner(page), null, 'Stay hides the warning');
      assert.ok(frames.sent.includes('{"type":"stay"}'), `stay sent: ${frames.sent}`);
      await page.waitForTimeout(1500);
      assert.equal(await page.getAttribute('#status', 'data-state'), 'connected', 'still attached after Stay');

      // No answer this time: detached.
      await waitBanner(page, (b) => b?.button === 'Stay', 'the warning comes again');
      const detached = await waitBanner(page, (b) => b?.button === 'Reconnect', 'the detach shows');
      assert.match(detached.text, /^Detached after inactivity\./);
      assert.equal(await page.getAttribute('#status', 'data-state'), 'disconnected');
      const sockets = frames.urls.length;
      await page.waitForTimeout(3000);
      assert.equal(frames.urls.length, sockets, 'no reconnect by itself');
      assert.equal(await page.getAttribute('#status', 'data-state'), 'disconnected');
      mkdirSync(artifacts, { recursive: true });
      await page.screenshot({ path: path.join(artifacts, 'browser-idle.png') });

      // Reconnect re-attaches the same shell.
      await page.click('#banner-button');
      await waitConnected(page);
      const again = frames.ready[frames.ready.length - 1];
      assert.equal(again.session, session);
      assert.equal(again.resumed, true);
    } finally {
      await context.close();
    }
  });
});
