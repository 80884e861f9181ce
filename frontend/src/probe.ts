// Learns why a WebSocket upgrade was refused: browsers hide the HTTP answer from WebSocket code,
// so the page asks the same URL over plain HTTP and reads the status and body (docs/protocol.md).

import { httpProbeUrl } from './config';

export interface Refusal {
  status: number;
  body: string;
}

/** The refusal (401, 403, 429 or 503, body shortened to one line), or null when it was not one. */
export async function probeRefusal(loc: { protocol: string; host: string; pathname: string }): Promise<Refusal | null> {
  const ctl = new AbortController();
  const t = window.setTimeout(() => ctl.abort(), 3000);
  try {
    const res = await fetch(httpProbeUrl(loc), { credentials: 'same-origin', cache: 'no-store', signal: ctl.signal });
    if (![401, 403, 429, 503].includes(res.status)) return null;
    const body = (await res.text()).replace(/\s+/g, ' ').trim().slice(0, 300);
    return { status: res.status, body };
  } catch {
    return null;
  } finally {
    window.clearTimeout(t);
  }
}
