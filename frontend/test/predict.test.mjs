// Unit tests of predictive echo (src/predict.ts) and its setting, against a fake screen.
//   cd frontend && npm ci && node --test test/

import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let predict;
let config;

before(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'termpool-predict-'));
  try {
    await esbuild.build({
      absWorkingDir: root,
      entryPoints: { predict: 'src/predict.ts', config: 'src/config.ts' },
      outdir: dir,
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      outExtension: { '.js': '.mjs' },
      logLevel: 'error',
    });
    predict = await import(pathToFileURL(path.join(dir, 'predict.mjs')));
    config = await import(pathToFileURL(path.join(dir, 'config.mjs')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A terminal screen the server writes to, and the overlay the predictor draws on. */
function setup({ mode = 'on', cols = 40, prompt = '$ ' } = {}) {
  const rows = new Map();
  const screen = { cols, alt: false, cursor: { col: 0, line: 0 }, clock: 0 };
  const shown = new Map(); // prediction -> char drawn
  const cursorAt = [];
  const view = {
    cols: () => screen.cols,
    altScreen: () => screen.alt,
    cursor: () => ({ ...screen.cursor }),
    anchor: (line) => ({ line, dispose() {} }),
    cell: (line, col) => rows.get(line)?.[col] ?? '',
  };
  const overlay = {
    show: (p) => shown.set(p, p.ch),
    hide: (p) => shown.delete(p),
    cursorAfter: (p) => cursorAt.push(p ? predict.nextCol(p) : null),
  };
  const p = new predict.Predictor(view, overlay, mode, () => screen.clock);
  /** The server writes `text` at the cursor (\r\n moves to the next line) and the page checks. */
  const server = (text) => {
    for (const ch of text) {
      if (ch === '\n') {
        screen.cursor = { col: 0, line: screen.cursor.line + 1 };
        continue;
      }
      if (ch === '\r') continue;
      if (ch === '\b') {
        screen.cursor = { ...screen.cursor, col: screen.cursor.col - 1 };
        continue;
      }
      const row = rows.get(screen.cursor.line) ?? [];
      row[screen.cursor.col] = ch;
      rows.set(screen.cursor.line, row);
      screen.cursor = { ...screen.cursor, col: screen.cursor.col + 1 };
    }
    p.check();
  };
  server(prompt);
  const drawn = () => [...shown.entries()].map(([q, ch]) => `${q.col}:${ch}`).join(' ');
  const type = (keys) => {
    for (const k of keys) p.input(k);
  };
  return { p, screen, server, drawn, type, cursorAt };
}

test('auto mode predicts only on a slow link, with hysteresis', () => {
  const { p } = setup({ mode: 'auto' });
  assert.equal(p.enabled, false, 'no round trip measured yet');
  p.roundTrip(5);
  assert.equal(p.enabled, false);
  for (let i = 0; i < 30; i++) p.roundTrip(200);
  assert.equal(p.enabled, true);
  for (let i = 0; i < 25; i++) p.roundTrip(22);
  assert.ok(p.smoothedRtt < 30 && p.enabled, `still on at ${p.smoothedRtt} ms (above the lower threshold)`);
  for (let i = 0; i < 40; i++) p.roundTrip(5);
  assert.equal(p.enabled, false);
  p.setMode('on');
  assert.equal(p.enabled, true);
  p.setMode('off');
  p.roundTrip(500);
  assert.equal(p.enabled, false);
});

test('guesses are shown once one echo of their epoch confirmed them, and vanish when echoed', () => {
  const { p, server, drawn, type } = setup();
  type('ls');
  assert.equal(drawn(), '', 'the first keys of an epoch are not shown');
  server('l');
  assert.equal(drawn(), '3:s', 'the echo of l confirms the epoch: s is shown');
  type(' -l');
  assert.equal(drawn(), '3:s 4:  5:- 6:l', 'later keys are shown at once');
  server('s -');
  assert.equal(drawn(), '6:l');
  server('l');
  assert.equal(drawn(), '');
  assert.deepEqual({ ...p.stats }, { predicted: 5, shown: 4, confirmed: 5, wrong: 0, shownWrong: 0 });
});

test('Enter starts a new epoch: nothing is shown at a password prompt', () => {
  const { p, screen, server, drawn, type } = setup();
  type('a');
  server('a');
  type('b');
  assert.equal(drawn(), '3:b');
  server('b');
  type('\r');
  server('\r\nPassword: ');
  type('secret');
  assert.equal(drawn(), '', 'no echo confirmed since Enter');
  screen.clock += 5000; // no echo ever comes
  p.check();
  assert.equal(drawn(), '');
  assert.equal(p.stats.shownWrong, 0);
  assert.ok(p.stats.wrong >= 1);
  type('x');
  assert.equal(drawn(), '', 'still no confirmed echo');
});

test('a shown guess the server did not echo is removed and guessing stops until an echo confirms', () => {
  const { p, server, drawn, type } = setup();
  type('a');
  server('a');
  type('b');
  assert.equal(drawn(), '3:b');
  server('X'); // e.g. a key binding: something else lands in the cell
  assert.equal(drawn(), '');
  assert.equal(p.stats.shownWrong, 1);
  type('c');
  assert.equal(drawn(), '', 'a new epoch waits for its first echo');
  server('c');
  type('d');
  assert.equal(drawn(), '5:d');
});

test('the cursor moving past a guess, or to another line, refutes it', () => {
  const { p, screen, server, drawn, type } = setup();
  type('a');
  server('a');
  type('b');
  screen.cursor = { col: 9, line: 0 };
  p.check();
  assert.equal(drawn(), '');
  type('c');
  server('\r\n');
  assert.equal(p.stats.wrong, 2);
});

test('no guesses on the alternate screen, mid-line, at the right margin, or for other keys', () => {
  const { p, screen, server, drawn, type } = setup({ cols: 6 });
  type('a');
  server('a');
  type('b');
  assert.equal(drawn(), '3:b');
  screen.alt = true;
  p.check();
  assert.equal(drawn(), '', 'switching to the alternate screen drops guesses');
  type('x');
  assert.equal(p.stats.predicted, 2, 'nothing predicted on the alternate screen');
  screen.alt = false;
  server('b');
  // Only the cells up to the margin are predicted (cols 6: "$ ab" + two cells).
  type('c');
  server('c');
  type('de');
  assert.equal(drawn(), '5:d');
  assert.equal(p.stats.predicted, 4, 'no guess past the margin');
});

test('text right of the cursor (editing mid-line) is not guessed over', () => {
  const { p, screen, server, type } = setup();
  server('abc');
  screen.cursor = { col: 3, line: 0 };
  type('x');
  assert.equal(p.stats.predicted, 0);
});

test('Backspace over keys of this run is predicted, and confirmed by the erase or the next echo', () => {
  const { p, server, drawn, type, cursorAt } = setup();
  type('a');
  server('a');
  type('bx');
  assert.equal(drawn(), '3:b 4:x');
  type('\x7f');
  assert.equal(drawn(), '3:b 4:x 4:', 'a blank drawn over the x');
  assert.equal(cursorAt.at(-1), 4, 'the cursor goes back onto the erased cell');
  type('c');
  assert.equal(drawn(), '3:b 4:x 4: 4:c');
  server('bx');
  assert.equal(drawn(), '4: 4:c', 'b and x confirmed; the erase waits for its echo');
  server('\b \b');
  assert.equal(drawn(), '4:c');
  server('c');
  assert.equal(drawn(), '');
  // A Backspace before the key it erases was echoed: the blank cell is not its echo yet.
  type('k');
  type('\x7f');
  p.check();
  assert.equal(drawn(), '5:k 5:', 'k not echoed yet: neither k nor its erase is confirmed');
  server('k');
  assert.equal(drawn(), '5:', 'k confirmed, the erase waits');
  server('\b \b');
  assert.equal(drawn(), '');
  // Two Backspaces after the erased keys were echoed: their cells still show them.
  type('pq');
  server('pq');
  type('\x7f\x7f');
  type('rs');
  assert.equal(drawn(), '6: 5: 5:r 6:s', 'typed again over the erased cells');
  server('\b \b\b \brs');
  assert.equal(drawn(), '');
  // Both echoes in one piece of output: the cell already shows the next key.
  type('y');
  type('\x7f');
  type('z');
  server('y\b \bz');
  assert.equal(drawn(), '');
  assert.equal(p.stats.wrong, 0);
});

test('Backspace at the start of what was typed, and other control keys, are not predicted', () => {
  const { p, server, drawn, type } = setup();
  type('a');
  server('a');
  type('\x7f');
  server('\b \b');
  assert.equal(drawn(), '', 'erasing a confirmed key of this run is drawn and confirmed');
  type('\x7f');
  assert.equal(p.stats.predicted, 2, 'nothing typed left to erase: the prompt is not guessed over');
  type('b');
  assert.equal(drawn(), '', 'the guess after an unpredicted key waits for an echo');
  type('\x1b[A');
  type('c');
  assert.equal(drawn(), '');
  assert.equal(p.stats.predicted, 3, 'c is not placed while b (placed before the arrow key) is unresolved');
});

test('predict setting: the URL wins and is remembered, then the remembered one, else auto', () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  assert.equal(config.parseConfig('').predict, null);
  assert.equal(config.parseConfig('?predict=on').predict, 'on');
  assert.equal(config.parseConfig('?predict=maybe').predict, null);
  assert.equal(config.predictSetting(null, storage), 'auto');
  assert.equal(config.predictSetting('off', storage), 'off');
  assert.equal(store.get(config.PREDICT_STORAGE_KEY), 'off');
  assert.equal(config.predictSetting(null, storage), 'off', 'remembered');
  store.set(config.PREDICT_STORAGE_KEY, '<b>');
  assert.equal(config.predictSetting(null, storage), 'auto', 'a bad remembered value is ignored');
  const denied = { getItem: () => { throw new Error('denied'); }, setItem: () => { throw new Error('denied'); } };
  assert.equal(config.predictSetting(null, denied), 'auto');
  assert.equal(config.predictSetting('on', denied), 'on');
  assert.equal(config.predictSetting(null, null), 'auto');
});
