// Shared by the browser tests: the server under test, headless Chromium, and reading the
// terminal page's screen. Environment variables are described in terminal.test.mjs.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');
export const artifacts = path.join(repoRoot, 'tests', 'artifacts');
export const pagePath = process.env.TERMPOOL_PATH || '/';
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const uniq = Math.random().toString(36).slice(2, 6);
let counter = 0;
export const nextId = () => `${uniq}-${++counter}`;

/** The server and browser of one test file: `baseUrl` is set by `start()`. */
export const fixture = {
  baseUrl: process.env.TERMPOOL_URL ? process.env.TERMPOOL_URL.replace(/\/+$/, '') : '',
  server: null, // the server process, when this test started it
  browser: null,
};

/** Starts the server (unless TERMPOOL_URL names one) and the browser. */
export async function start() {
  if (!fixture.baseUrl) {
    const started = await startServer();
    fixture.server = started.child;
    fixture.baseUrl = started.url;
  }
  fixture.browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
}

export async function stop() {
  if (fixture.browser) await fixture.browser.close();
  if (fixture.server) {
    fixture.server.removeAllListeners('exit');
    fixture.server.kill('SIGTERM');
  }
}

// ---- server (only when TERMPOOL_URL is not given) ------------------------------------------------

function startServer() {
  const bin = process.env.TERMPOOL_BIN || path.join(repoRoot, 'target', 'debug', 'termpool');
  return new Promise((resolve, reject) => {
    // The shell of the Rust tests (tests/common): the dotfiles of whoever runs the tests are not
    // under test, and a login shell reading them can stall (a stale pyenv rehash lock in root's
    // .bashrc made every prompt wait 60 s on this project's machines).
    const shell = '/bin/bash --noprofile --norc';
    const child = spawn(bin, ['--port', '0', '--shell', shell], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env },
    });
    let out = '';
    let errText = '';
    const timer = setTimeout(() => reject(new Error(`server did not say "listening on" in 30 s; stderr:\n${errText}`)), 30_000);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      errText = (errText + d).slice(-4000);
    });
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1].replace(/\/+$/, '') });
      }
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${bin}: ${e.message} (build it with cargo build, or set TERMPOOL_URL)`));
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited early with ${code}; stderr:\n${errText}`));
    });
  });
}

// ---- page helpers ---------------------------------------------------------------------------------

/** Opens the page (at `base`, default the server) and waits until its socket is connected. */
export async function openTerminal(context, { viewport = { width: 1100, height: 700 }, query = '', base = fixture.baseUrl } = {}) {
  const page = await context.newPage();
  await page.setViewportSize(viewport);
  const frames = { ready: [], errors: [], sent: [], urls: [] };
  page.on('websocket', (ws) => {
    frames.urls.push(ws.url());
    ws.on('framereceived', ({ payload }) => {
      if (typeof payload !== 'string') return;
      try {
        const msg = JSON.parse(payload);
        if (msg.type === 'ready') frames.ready.push(msg);
        if (msg.type === 'error') frames.errors.push(msg);
      } catch {
        /* not ours to judge here */
      }
    });
    ws.on('framesent', ({ payload }) => {
      if (typeof payload === 'string') frames.sent.push(payload);
    });
  });
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(`${base}${pagePath}${query}`);
  await waitConnected(page);
  await page.click('#terminal');
  return { page, frames, consoleErrors };
}

export async function waitConnected(page, timeout = 20_000) {
  await page.waitForSelector('#status[data-state="connected"]', { timeout });
}

/** Logical lines of the active buffer (wrapped rows joined), trailing blanks trimmed. */
export async function screenLines(page) {
  return page.evaluate(() => {
    const buf = window.termpool.term.buffer.active;
    const lines = [];
    for (let i = 0; i < buf.length; i++) {
      const line = buf.getLine(i);
      if (!line) continue;
      const text = line.translateToString(true);
      if (line.isWrapped && lines.length > 0) lines[lines.length - 1] += text;
      else lines.push(text);
    }
    while (lines.length > 0 && lines[lines.length - 1].trim() === '') lines.pop();
    return lines;
  });
}

export async function bufferType(page) {
  return page.evaluate(() => window.termpool.term.buffer.active.type);
}

export async function termSize(page) {
  return page.evaluate(() => ({ cols: window.termpool.term.cols, rows: window.termpool.term.rows }));
}

export async function waitFor(fn, what, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function waitForLine(page, pred, what, timeout) {
  try {
    return await waitFor(async () => (await screenLines(page)).find(pred), what, timeout);
  } catch (e) {
    const lines = await screenLines(page);
    e.message += `\n--- screen ---\n${lines.slice(-30).join('\n')}`;
    throw e;
  }
}

export async function typeLine(page, text) {
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
}

/**
 * Runs a shell command in the terminal and returns its output lines: the lines between a begin
 * and an end marker printed around it. The markers are computed by the shell ($((1+1))) so the
 * echoed command line never matches them, however the terminal wraps it. When `mayScrollOff`,
 * output longer than the scrollback may have pushed the begin marker out.
 */
export async function run(page, cmd, timeout = 15_000, { mayScrollOff = false } = {}) {
  const id = nextId().replace(/-/g, '_');
  const begin = `B${id}_2`;
  const endRe = new RegExp(`^E${id}_2:\\d+$`);
  await typeLine(page, `echo B${id}_$((1+1)); ${cmd}; echo "E${id}_$((1+1)):$?"`);
  await waitForLine(page, (l) => endRe.test(l.trim()), `output of ${cmd}`, timeout);
  const lines = await screenLines(page);
  const end = lines.findIndex((l) => endRe.test(l.trim()));
  const start = lines.lastIndexOf(begin, end);
  assert.ok(start >= 0 || mayScrollOff, `begin marker of ${cmd} not found on screen`);
  return lines.slice(start + 1, end).map((l) => l.replace(/\s+$/, ''));
}
