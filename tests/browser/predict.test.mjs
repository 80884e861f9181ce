// Browser test of predictive echo (frontend/src/predict.ts): key-to-glyph times at a bash prompt
// through a proxy of this test that delays 100 ms each way, against the same page with no delay;
// vim and a password prompt must show no guess. Prints the figures. Run like terminal.test.mjs.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { bufferType, fixture, nextId, openTerminal, run, screenLines, start, stop, typeLine, waitFor, waitForLine } from './helpers.mjs';
import { delayingProxy, installProbe, marksOf, overlaysOf, percentiles, screenMismatches, summary, typeTimed } from './latency.mjs';

const DELAY_MS = 100; // each way
const KEY_INTERVAL_MS = 150; // a fast typist
const ROUNDS = 2;
/** Typed with a typo put right with Backspace (\b); on screen it reads `SHOWN`. */
const LINE = 'echo the quick brown fox jumsp\b\bps over 13 lazy dogs';
const SHOWN = 'echo the quick brown fox jumps over 13 lazy dogs';
/** The brief's target: predicted glyphs at most this much later (p90) than with no delay at all. */
const TARGET_EXTRA_P90_MS = 10;

let proxy = null;

before(async () => {
  await start();
  proxy = await delayingProxy(fixture.baseUrl, DELAY_MS);
});

after(async () => {
  if (proxy) await proxy.close();
  await stop();
});

/** A page (DOM renderer, so the probe can read glyphs) at a cleared bash prompt. */
async function promptPage(context, base, predict) {
  const { page, consoleErrors } = await openTerminal(context, { base, query: `?renderer=dom&predict=${predict}` });
  await installProbe(page);
  // In auto mode the page decides once the first pongs measured the round trip.
  if (predict === 'auto') await waitFor(() => predicting(page), 'a round trip above the threshold', 5000);
  await clearScreen(page);
  return { page, consoleErrors };
}

async function clearScreen(page) {
  await typeLine(page, 'clear');
  await waitFor(async () => {
    const lines = await screenLines(page);
    if (lines.length !== 1 || !/[$#] ?$/.test(lines[0])) return false;
    // And the cursor right after the prompt: the probe takes the cells of the keys to come from
    // it, and once in a few runs it was read a cell to the right while the prompt was drawn.
    const cursor = await page.evaluate(() => {
      const b = window.termpool.term.buffer.active;
      return [b.cursorX, b.cursorY];
    });
    return cursor[0] === lines[0].trimEnd().length + 1 && cursor[1] === 0;
  }, 'a prompt on a cleared screen, the cursor after it');
  await settled(page);
}

async function predicting(page) {
  return page.evaluate(() => window.termpool.predict.enabled);
}

/** No prediction pending or drawn. */
async function settled(page) {
  await waitFor(
    () => page.evaluate(() => !window.termpool.predict.hasPending && !document.querySelector('#terminal .termpool-prediction')),
    'predictions to settle',
  );
}

const engineStats = (page) => page.evaluate(() => ({ ...window.termpool.predict.stats }));

/**
 * Types LINE at a cleared prompt, then checks that the screen shows exactly the server's
 * characters (every guess confirmed and gone) and runs the line. Returns the predictor's counts
 * for the line.
 */
async function timeLine(page, set) {
  await page.bringToFront();
  await clearScreen(page);
  const before = await engineStats(page);
  await typeTimed(page, set, LINE, KEY_INTERVAL_MS);
  await marksOf(page, set);
  await settled(page);
  const after = await engineStats(page);
  const lines = await screenLines(page);
  assert.ok(lines[0].endsWith(SHOWN), `the typed line on screen: ${lines[0]}`);
  assert.deepEqual(await screenMismatches(page), [], 'drawn rows equal the buffer');
  await page.keyboard.press('Enter');
  return Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]));
}

describe('predictive echo', { timeout: 240_000 }, () => {
  test('key to glyph: no delay, and 100 ms each way with and without prediction', async () => {
    const context = await fixture.browser.newContext();
    try {
      const direct = await promptPage(context, fixture.baseUrl, 'off');
      const slow = await promptPage(context, proxy.url, 'auto');
      const unpredicted = await promptPage(context, proxy.url, 'off');
      // Rounds alternate between the pages, so a busy moment of the machine hits both.
      const stats = {};
      for (let round = 0; round < ROUNDS; round++) {
        await timeLine(direct.page, 'no delay');
        for (const [k, v] of Object.entries(await timeLine(slow.page, 'predicted'))) stats[k] = (stats[k] ?? 0) + v;
      }
      await timeLine(unpredicted.page, 'off');
      const rtt = await slow.page.evaluate(() => window.termpool.predict.smoothedRtt);
      const noDelay = await marksOf(direct.page, 'no delay');
      const predicted = await marksOf(slow.page, 'predicted');
      const off = await marksOf(unpredicted.page, 'off');
      const overlays = await overlaysOf(slow.page, 'predicted');
      for (const p of [direct, slow, unpredicted]) assert.deepEqual(p.consoleErrors, []);

      const byOverlay = predicted.filter((m) => m.how === 'prediction');
      console.log(`predictive echo: ${ROUNDS} rounds of ${predicted.length / ROUNDS} timed keys, one every ${KEY_INTERVAL_MS} ms; smoothed RTT ${rtt.toFixed(1)} ms`);
      console.log(summary('no delay (predict=off)', noDelay));
      console.log(summary(`${DELAY_MS} ms each way, predict=auto: all keys`, predicted));
      console.log(summary(`${DELAY_MS} ms each way, predict=auto: predicted`, byOverlay));
      console.log(summary(`${DELAY_MS} ms each way, predict=off`, off));
      console.log(`overlays drawn ${overlays.drawn}, wrong ${overlays.wrong}; engine: ${JSON.stringify(stats)}`);

      for (const [name, marks] of [['no delay', noDelay], ['predicted', predicted], ['off', off]]) {
        assert.equal(percentiles(marks).missing, 0, `every character of the ${name} run showed up`);
      }
      assert.equal(overlays.wrong, 0, 'no wrong character drawn');
      assert.equal(stats.shownWrong, 0, 'no drawn guess refuted');
      assert.ok(byOverlay.length >= 0.8 * predicted.length, `most keys shown by prediction (${byOverlay.length}/${predicted.length})`);
      const base = percentiles(noDelay).p90;
      const guessed = percentiles(byOverlay).p90;
      // The figure against the target is printed, not asserted: on a loaded machine the
      // renderer's frames move both runs by more than the target's 10 ms. What must hold whatever
      // the load: predicted glyphs appear well before any echo could have come back.
      const met = guessed <= base + TARGET_EXTRA_P90_MS ? 'met' : 'MISSED';
      console.log(`target: predicted p90 ${guessed.toFixed(1)} ms vs no delay's ${base.toFixed(1)} ms + ${TARGET_EXTRA_P90_MS} ms: ${met}`);
      assert.ok(guessed < DELAY_MS, `predicted p90 ${guessed.toFixed(1)} ms is under one way's delay (${DELAY_MS} ms)`);
      assert.ok(percentiles(off).p50 >= 2 * DELAY_MS, 'without prediction the delay shows');
    } finally {
      await context.close();
    }
  });

  test('vim and a password prompt on the slow link: no guess drawn, text intact', async () => {
    const context = await fixture.browser.newContext();
    try {
      const { page, consoleErrors } = await promptPage(context, proxy.url, 'auto');

      // vim: the alternate screen, where keys are commands as often as text.
      const file = `/tmp/termpool-predict-${nextId()}.txt`;
      const text = 'if guessing is unsafe it stays off';
      await typeLine(page, `vim -u NONE -N ${file}`);
      await waitFor(async () => (await bufferType(page)) === 'alternate', 'vim to switch to the alternate screen');
      await page.keyboard.press('i');
      await page.waitForTimeout(4 * DELAY_MS);
      await typeTimed(page, 'vim', text, KEY_INTERVAL_MS);
      const vim = await marksOf(page, 'vim');
      const vimOverlays = await overlaysOf(page, 'vim');
      await page.keyboard.press('Escape');
      await typeLine(page, ':wq');
      await waitFor(async () => (await bufferType(page)) === 'normal', 'vim to exit');
      console.log(summary(`vim, ${DELAY_MS} ms each way, predict=auto`, vim));
      assert.equal(vimOverlays.drawn, 0, 'no guess drawn in vim');
      assert.equal(percentiles(vim).missing, 0, 'every character typed in vim showed up');
      assert.deepEqual(await run(page, `cat ${file}; rm -f ${file}`), [text], 'the file vim wrote');

      // A password prompt: nothing is echoed, so nothing may be shown.
      const secret = 'hunter2-correct-horse';
      await typeLine(page, `read -rs -p 'Password: ' pw; echo; echo "len=\${#pw}"`);
      await waitForLine(page, (l) => l.trimEnd() === 'Password:', 'the password prompt');
      await settled(page);
      await typeTimed(page, 'password', secret, KEY_INTERVAL_MS);
      await page.waitForTimeout(4 * DELAY_MS); // an echo, if any, would be here by now
      const pwOverlays = await overlaysOf(page, 'password');
      const prompt = (await screenLines(page)).at(-1).trimEnd();
      await page.keyboard.press('Enter');
      await waitForLine(page, (l) => l === `len=${secret.length}`, 'the read to finish');
      console.log(`password prompt: ${pwOverlays.drawn} guesses drawn for ${secret.length} keys`);
      assert.equal(pwOverlays.drawn, 0, 'no guess drawn at the password prompt');
      assert.equal(prompt, 'Password:', 'nothing shown after the prompt');
      assert.deepEqual(await screenMismatches(page), []);
      assert.deepEqual(consoleErrors, []);
    } finally {
      await context.close();
    }
  });
});
