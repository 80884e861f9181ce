// Keys and pastes from the page to the shell, and the page's own shortcuts (Ctrl+Shift+C copy,
// Ctrl+Shift+V paste, Ctrl+Shift+F find), which never reach the shell.

import type { Terminal } from '@xterm/xterm';

/**
 * Sends what the terminal produces (typed keys, pastes, mouse reports) as bytes to `send`, which
 * says whether they went out; `sent` then hears of typed text (for predictive echo).
 */
export function forwardInput(term: Terminal, send: (bytes: Uint8Array) => boolean, sent: (data: string) => void): void {
  const encoder = new TextEncoder();
  term.onData((data) => {
    if (send(encoder.encode(data))) sent(data);
  });
  term.onBinary((data) => {
    // "binary" strings carry one byte per char (e.g. some mouse reports): send them raw.
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
    send(bytes);
  });
}

/** Takes Ctrl+Shift+C/V/F away from the shell: copy, let the browser paste, open the find box. */
export function handleShortcuts(term: Terminal, openSearch: () => void): void {
  term.attachCustomKeyEventHandler((ev) => {
    if (!(ev.ctrlKey && ev.shiftKey) || ev.altKey || ev.metaKey) return true;
    const key = ev.code || ev.key;
    if (key === 'KeyC' || ev.key === 'C' || ev.key === 'c') {
      // Ctrl+Shift+C copies (and must not open the browser's element inspector).
      ev.preventDefault();
      if (ev.type === 'keydown') void copySelection(term);
      return false;
    }
    if (key === 'KeyV' || ev.key === 'V' || ev.key === 'v') {
      // Let the browser deliver its paste event to xterm's textarea; xterm.js handles it
      // (bracketed paste included) and it arrives through onData.
      return false;
    }
    if (key === 'KeyF' || ev.key === 'F' || ev.key === 'f') {
      ev.preventDefault();
      if (ev.type === 'keydown') openSearch();
      return false;
    }
    return true;
  });
}

async function copySelection(term: Terminal): Promise<void> {
  const text = term.getSelection();
  if (!text) return;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API unavailable (plain http on a non-local host): use a temporary textarea.
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.style.position = 'fixed';
    ta.style.opacity = '0';
    document.body.appendChild(ta);
    ta.select();
    try {
      document.execCommand('copy');
    } finally {
      ta.remove();
    }
  }
  term.focus();
}
