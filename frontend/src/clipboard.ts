// The terminal and the browser's clipboard: OSC 52 writes from programs (reads are never
// answered), right-click paste, and copy-on-select.

import type { Terminal } from '@xterm/xterm';

/** Decodes the payload of `OSC 52 ; <targets> ; <base64>`: the text to set, or null (a read, or bad). */
export function osc52Text(data: string): string | null {
  const semi = data.indexOf(';');
  if (semi < 0) return null;
  const payload = data.slice(semi + 1);
  // `?` asks the terminal to send the clipboard back to the program: never answered, since
  // anything running in the shell could read what the person copied elsewhere.
  if (payload === '?' || !/^[A-Za-z0-9+/]*={0,2}$/.test(payload)) return null;
  try {
    const bin = atob(payload);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  } catch {
    return null;
  }
}

/** Puts `text` on the clipboard: the Clipboard API, else a hidden textarea and `copy`. */
export async function writeClipboard(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
    return;
  } catch {
    // Clipboard API unavailable (plain http on a non-local host) or refused.
  }
  const ta = document.createElement('textarea');
  ta.value = text;
  ta.setAttribute('readonly', '');
  ta.style.position = 'fixed';
  ta.style.opacity = '0';
  const focused = document.activeElement as HTMLElement | null;
  document.body.appendChild(ta);
  ta.select();
  try {
    document.execCommand('copy');
  } finally {
    ta.remove();
    focused?.focus();
  }
}

export interface ClipboardOptions {
  copyOnSelect(): boolean;
  /** Told when the browser refused a clipboard operation. */
  problem(text: string): void;
}

/** Wires OSC 52, right-click paste on `container`, and copy-on-select into `term`. */
export function setupClipboard(term: Terminal, container: HTMLElement, opts: ClipboardOptions): void {
  term.parser.registerOscHandler(52, (data) => {
    const text = osc52Text(data);
    if (text !== null) void writeClipboard(text);
    return true; // handled either way: nothing of it is printed
  });
  container.addEventListener('contextmenu', (ev) => {
    ev.preventDefault();
    pasteFromClipboard(term, opts);
  });
  term.onSelectionChange(() => {
    const sel = term.getSelection();
    if (opts.copyOnSelect() && sel) void writeClipboard(sel);
  });
}

function pasteFromClipboard(term: Terminal, opts: ClipboardOptions): void {
  if (!navigator.clipboard?.readText) {
    opts.problem('This browser does not let the page read the clipboard: paste with Ctrl+Shift+V');
    return;
  }
  navigator.clipboard.readText().then(
    // term.paste wraps the text in bracketed-paste marks when the program asked for them.
    (text) => {
      if (text) term.paste(text);
      term.focus();
    },
    () => opts.problem('The browser refused to read the clipboard: paste with Ctrl+Shift+V'),
  );
}
