// Files the shell's `download` command sends to the browser, as iTerm2's
// `OSC 1337 ; File=name=..;size=..;inline=0 : <base64>` (docs/protocol.md): saved, never printed.

import type { Terminal } from '@xterm/xterm';

export interface FileTransfer {
  name: string;
  bytes: Uint8Array;
}

/**
 * Parses the OSC 1337 payload `File=<key>=<value>;...:<base64>`; null for other 1337 commands
 * or a malformed one. The name is the base64-decoded `name` argument reduced to a plain file name.
 */
export function parseFileTransfer(data: string): FileTransfer | { error: string } | null {
  if (!data.startsWith('File=')) return null;
  const colon = data.indexOf(':');
  if (colon < 0) return { error: 'a file transfer without contents' };
  const args = new Map<string, string>();
  for (const part of data.slice(5, colon).split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) args.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const bytes = decodeBase64(data.slice(colon + 1));
  if (bytes === null) return { error: 'a file transfer with bad base64 contents' };
  const size = args.get('size');
  if (size !== undefined && Number(size) !== bytes.length) return { error: `a file transfer cut short (${bytes.length} of ${size} bytes)` };
  const rawName = args.get('name');
  const nameBytes = rawName === undefined ? null : decodeBase64(rawName);
  const name = plainName(nameBytes === null ? '' : new TextDecoder().decode(nameBytes));
  return { name, bytes };
}

/** The last path component without control characters; `download` when nothing is left. */
export function plainName(name: string): string {
  // eslint-disable-next-line no-control-regex
  const base = (name.split('/').pop() ?? '').replace(/[\x00-\x1f\x7f\\]/g, '').trim();
  return base === '' || base === '.' || base === '..' ? 'download' : base.slice(0, 255);
}

function decodeBase64(text: string): Uint8Array | null {
  const clean = text.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean)) return null;
  try {
    const bin = atob(clean);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}

/** Makes the browser save `file` through a temporary Blob link. */
export function saveFile(file: FileTransfer): void {
  const url = URL.createObjectURL(new Blob([file.bytes as BlobPart], { type: 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = file.name;
  a.style.display = 'none';
  document.body.appendChild(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Saves every `OSC 1337 File=` the terminal receives; `report` hears of each save or problem. */
export function setupDownloads(term: Terminal, report: (text: string, isError: boolean) => void): void {
  term.parser.registerOscHandler(1337, (data) => {
    const parsed = parseFileTransfer(data);
    if (parsed === null) return false; // another iTerm2 command: not ours
    if ('error' in parsed) report(`Download failed: ${parsed.error}`, true);
    else {
      saveFile(parsed);
      report(`Downloaded ${parsed.name} (${parsed.bytes.length} bytes)`, false);
    }
    return true;
  });
}
