// Key-to-glyph measurement for the predictive-echo test: a TCP proxy that delays every byte, and
// a probe inside the page that times each key press to the frame its character shows up in.

import net from 'node:net';

/** A proxy to `targetUrl` that holds every chunk `delayMs` in each direction (no netem here). */
export function delayingProxy(targetUrl, delayMs) {
  const { hostname, port } = new URL(targetUrl);
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    relay(client, upstream, delayMs);
    relay(upstream, client, delayMs);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const url = `http://127.0.0.1:${server.address().port}`;
      const close = () => {
        for (const s of sockets) s.destroy();
        return new Promise((r) => server.close(() => r()));
      };
      resolve({ url, close });
    });
  });
}

/** Timers of equal delay fire in order, so the byte stream keeps its order. */
function relay(from, to, delayMs) {
  from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), delayMs));
  from.on('end', () => setTimeout(() => to.destroyed || to.end(), delayMs));
  from.on('error', () => setTimeout(() => to.destroy(), delayMs));
}

/**
 * Installs the probe (once per page): on each printable key press it notes the time and the cell
 * the character belongs in, then watches the terminal's DOM until the cell shows it, in the rows
 * (the DOM renderer) or as a prediction overlay. Every overlay is recorded, with whether it
 * showed the character typed for its cell.
 */
export async function installProbe(page) {
  await page.evaluate(() => {
    const term = window.termpool.term;
    const root = document.getElementById('terminal');
    const probe = { marks: [], armed: null, overlays: [] };
    const counted = new WeakSet();
    window.__probe = probe;
    const geometry = () => {
      const r = root.querySelector('.xterm-screen').getBoundingClientRect();
      return { left: r.left, top: r.top, w: r.width / term.cols, h: r.height / term.rows };
    };
    const overlayCells = () => {
      const g = geometry();
      return [...root.querySelectorAll('.termpool-prediction')].map((el) => {
        const r = el.getBoundingClientRect();
        return { el, ch: el.textContent, col: Math.round((r.left - g.left) / g.w), row: Math.round((r.top - g.top) / g.h) };
      });
    };
    const rowText = (row) => (root.querySelector('.xterm-rows')?.children[row]?.textContent ?? '').replace(/\u00a0/g, ' ');
    const scan = () => {
      const now = performance.now();
      const overlays = overlayCells();
      for (const o of overlays) {
        if (counted.has(o.el)) continue;
        counted.add(o.el);
        // Judged only while keys are timed; a guess elsewhere has no expected character.
        const set = probe.armed?.set ?? null;
        const want = probe.marks.findLast((m) => m.set === set && m.row === o.row && m.col === o.col);
        // A blank overlay is a Backspace's: right where the last key typed there was erased.
        const right = o.ch === '' ? want?.erased === true : want?.ch === o.ch && !want.erased;
        probe.overlays.push({ set, ch: o.ch, row: o.row, col: o.col, right });
      }
      for (const m of probe.marks) {
        if (m.shownAt !== undefined || m.erased) continue;
        const o = overlays.find((x) => x.row === m.row && x.col === m.col && x.ch === m.ch);
        if (o) Object.assign(m, { shownAt: now, how: 'prediction' });
        else if (rowText(m.row)[m.col] === m.ch) Object.assign(m, { shownAt: now, how: 'echo' });
      }
    };
    new MutationObserver(scan).observe(root, { subtree: true, childList: true, characterData: true, attributes: true });
    window.addEventListener(
      'keydown',
      (ev) => {
        const a = probe.armed;
        if (a && ev.key === 'Backspace' && a.typed > 0) {
          a.typed -= 1;
          const m = probe.marks.findLast((x) => x.set === a.set && x.col === a.col + a.typed);
          if (m) m.erased = true;
          return;
        }
        if (!a || ev.key.length !== 1) return;
        probe.marks.push({ ch: ev.key, t0: performance.now(), row: a.row, col: a.col + a.typed, set: a.set });
        a.typed += 1;
      },
      true,
    );
    probe.arm = (set) => {
      const b = term.buffer.active;
      probe.armed = { row: b.cursorY, col: b.cursorX, typed: 0, set };
    };
  });
}

/**
 * Types `text` one key every `intervalMs` (\b is Backspace), timing each character; spaces are
 * typed, not timed.
 */
export async function typeTimed(page, set, text, intervalMs) {
  await page.evaluate((s) => window.__probe.arm(s), set);
  for (const ch of text) {
    if (ch === '\b') await page.keyboard.press('Backspace');
    else await page.keyboard.type(ch);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  await page.evaluate(() => {
    window.__probe.armed = null;
  });
}

/** The probe's marks of one set once every character showed up (or `timeoutMs` passed). */
export async function marksOf(page, set, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // A key erased before it showed up is not waited for.
    const marks = await page.evaluate((s) => window.__probe.marks.filter((m) => m.set === s && m.ch !== ' ' && (!m.erased || m.shownAt !== undefined)), set);
    if (marks.every((m) => m.shownAt !== undefined) || Date.now() > deadline) return marks;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** p50 and p90 of key-to-glyph times, in ms (nearest rank). */
export function percentiles(marks) {
  const ms = marks.filter((m) => m.shownAt !== undefined).map((m) => m.shownAt - m.t0).sort((a, b) => a - b);
  const at = (q) => (ms.length === 0 ? NaN : ms[Math.min(ms.length - 1, Math.ceil(q * ms.length) - 1)]);
  return { n: ms.length, missing: marks.length - ms.length, p50: at(0.5), p90: at(0.9) };
}

export function summary(name, marks) {
  const { n, missing, p50, p90 } = percentiles(marks);
  const f = (x) => (Number.isNaN(x) ? '-' : `${x.toFixed(1)} ms`);
  return `${name.padEnd(44)} n=${String(n).padStart(3)}${missing ? ` (${missing} never shown)` : ''}  p50 ${f(p50).padStart(9)}  p90 ${f(p90).padStart(9)}`;
}

/** The overlays drawn while `set` was typed, and how many of them showed a wrong character. */
export async function overlaysOf(page, set) {
  const all = await page.evaluate((s) => window.__probe.overlays.filter((o) => o.set === s), set);
  return { drawn: all.length, wrong: all.filter((o) => !o.right).length };
}

/** Rows of the viewport whose drawn text (DOM renderer, overlays ignored) differs from the buffer. */
export async function screenMismatches(page) {
  return page.evaluate(async () => {
    // Output parsed a moment ago is drawn in the next frame: let two frames pass first.
    for (let i = 0; i < 2; i++) await new Promise((r) => requestAnimationFrame(r));
    const term = window.termpool.term;
    const buf = term.buffer.active;
    const rows = document.querySelector('#terminal .xterm-rows')?.children ?? [];
    const bad = [];
    for (let r = 0; r < term.rows; r++) {
      const drawn = (rows[r]?.textContent ?? '').replace(/\u00a0/g, ' ').trimEnd();
      const held = (buf.getLine(buf.viewportY + r)?.translateToString(true) ?? '').trimEnd();
      if (drawn !== held) bad.push({ row: r, drawn, held });
    }
    return bad;
  });
}
