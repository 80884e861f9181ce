// One terminal connection over the WebSocket protocol (see PROTOCOL.md), across reconnects.
//
// A `Connection` owns at most one socket at a time. Every socket gets a generation number so
// that late events of a replaced socket are ignored. When a socket drops without an `exit` frame,
// the connection, with `autoReconnect`, opens a new socket with exponential backoff, asking the
// server to re-attach with `?session=<id>` (the id from the last `ready`).
//
// Across page loads the id goes through sessionStorage, but only while no page holds it: it is
// written when the page goes away (`persist`, on pagehide) and taken out again by the next page.
// So a reload re-attaches, while a duplicated tab (which copies sessionStorage) gets a session
// of its own instead of fighting the original tab for one.

import { httpProbeUrl, wsUrl } from './config';

export type ConnState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'ended';

export interface ReadyFrame {
  type: 'ready';
  protocol: number;
  session: string;
  user: string;
  container: string | null;
  mode: string;
  cols: number;
  rows: number;
  resumed: boolean;
}

export interface StateDetail {
  /** For `reconnecting`: milliseconds until the next automatic attempt, if one is scheduled. */
  retryInMs?: number;
  /** Consecutive failed attempts so far. */
  attempt?: number;
  /** Why the last socket closed or could not open, for people. */
  reason?: string;
  /** For `ended`: the shell's exit code. */
  exitCode?: number | null;
}

export interface ConnectionEvents {
  /** Current terminal size, read at connect time for the `cols`/`rows` query parameters. */
  size(): { cols: number; rows: number };
  onState(state: ConnState, detail: StateDetail): void;
  /**
   * The first frame of every socket. `firstOfPage` is true for the page's first successful
   * socket; `askedToResume` says whether a session id was sent.
   */
  onReady(ready: ReadyFrame, info: { firstOfPage: boolean; askedToResume: boolean }): void;
  onOutput(bytes: Uint8Array): void;
  onExit(code: number | null): void;
  onError(code: string, message: string): void;
}

export interface ReconnectOptions {
  autoReconnect: boolean;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Automatic attempts in a row before giving up (the Reconnect button still works). */
  maxAttempts: number;
  /** Send an application ping this often while connected (0 disables). */
  pingIntervalMs: number;
  /** Drop the socket when no pong came for this long (only once the server has answered one). */
  pongTimeoutMs: number;
}

export const DEFAULT_RECONNECT: ReconnectOptions = {
  autoReconnect: true,
  baseDelayMs: 500,
  maxDelayMs: 10_000,
  maxAttempts: 30,
  pingIntervalMs: 20_000,
  pongTimeoutMs: 65_000,
};

/** Largest binary frame the page sends; big pastes are split (the server's frame limit is 1 MiB). */
export const MAX_INPUT_FRAME = 64 * 1024;

/** Delay before automatic attempt number `attempt` (0-based): 0.5 s, 1 s, 2 s ... capped, with jitter. */
export function backoffDelay(attempt: number, opts: Pick<ReconnectOptions, 'baseDelayMs' | 'maxDelayMs'>, rnd = Math.random): number {
  const exp = Math.min(opts.maxDelayMs, opts.baseDelayMs * Math.pow(2, Math.min(attempt, 30)));
  return Math.round(exp * (0.8 + 0.2 * rnd()));
}

/** Hands the session id of this tab over to the next page load (sessionStorage survives reloads). */
export class SessionStore {
  constructor(private readonly key: string) {}
  /** Reads and removes the stored id. */
  take(): string | null {
    try {
      const id = window.sessionStorage.getItem(this.key);
      window.sessionStorage.removeItem(this.key);
      return id;
    } catch {
      return null;
    }
  }
  set(id: string): void {
    try {
      window.sessionStorage.setItem(this.key, id);
    } catch {
      /* storage unavailable: re-attach just won't survive a reload */
    }
  }
  clear(): void {
    try {
      window.sessionStorage.removeItem(this.key);
    } catch {
      /* ignore */
    }
  }
}

const CLOSE_REASONS: Record<number, string> = {
  1001: 'the server is going away',
  1008: 'refused by the server (policy)',
  1009: 'a message was too big for the server',
  1011: 'server error',
  1012: 'the server is restarting',
  1013: 'the server is busy, try again later',
};

export class Connection {
  private ws: WebSocket | null = null;
  private generation = 0;
  private state: ConnState = 'connecting';
  private attempt = 0;
  private retryTimer: number | undefined;
  private pingTimer: number | undefined;
  private everReady = false;
  private session: string | null;
  private readonly encoder = new TextEncoder();

  constructor(
    private readonly loc: { protocol: string; host: string; pathname: string },
    private readonly events: ConnectionEvents,
    private readonly store: SessionStore,
    private readonly opts: ReconnectOptions = DEFAULT_RECONNECT,
  ) {
    this.session = store.take();
  }

  get currentState(): ConnState {
    return this.state;
  }

  get sessionId(): string | null {
    return this.session;
  }

  /** The page is going away (reload, navigation): leave the session id for the next page. */
  persist(): void {
    if (this.session !== null && this.state !== 'ended') this.store.set(this.session);
  }

  /** The page is back (from the back/forward cache): the id is ours again, not the next page's. */
  unpersist(): void {
    this.store.clear();
  }

  /**
   * Opens a new socket, replacing any current one. `fresh` forgets the remembered session so the
   * server starts a new shell; `manual` (the Reconnect button) resets the backoff.
   */
  connect(options: { fresh?: boolean; manual?: boolean } = {}): void {
    this.clearRetry();
    if (options.fresh) this.session = null;
    if (options.manual) this.attempt = 0;
    this.detachSocket();

    const gen = ++this.generation;
    const session = this.session;
    const { cols, rows } = this.events.size();
    const url = wsUrl(this.loc, { cols, rows, session });
    this.setState(this.everReady && !options.fresh ? 'reconnecting' : 'connecting', { attempt: this.attempt });

    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.dropped(gen, { opened: false, gotReady: false, reason: String(e) });
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;

    let opened = false;
    let gotReady = false;
    let exited = false;
    let lastPong = 0;

    ws.onopen = () => {
      if (gen !== this.generation) return;
      opened = true;
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (gen !== this.generation) return;
      if (typeof ev.data !== 'string') {
        this.events.onOutput(new Uint8Array(ev.data as ArrayBuffer));
        return;
      }
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(ev.data) as Record<string, unknown>;
      } catch {
        console.warn('termpool: ignoring a text frame that is not JSON');
        return;
      }
      switch (msg.type) {
        case 'ready': {
          const ready = msg as unknown as ReadyFrame;
          gotReady = true;
          const firstOfPage = !this.everReady;
          this.everReady = true;
          this.attempt = 0;
          if (typeof ready.session === 'string' && ready.session !== '') this.session = ready.session;
          this.startPing(gen, () => lastPong, ws);
          this.setState('connected', {});
          this.events.onReady(ready, { firstOfPage, askedToResume: session !== null });
          break;
        }
        case 'exit': {
          exited = true;
          this.session = null;
          const code = typeof msg.code === 'number' ? msg.code : null;
          this.events.onExit(code);
          break;
        }
        case 'error': {
          const code = String(msg.code ?? 'internal');
          const message = String(msg.message ?? '');
          if (code === 'session_not_found' && session !== null) {
            // The old session is gone (ended, expired, or never ours): the server already gave
            // us a fresh one. Nothing for the user to act on.
            console.info('termpool: previous session not found, started a new one');
            break;
          }
          this.events.onError(code, message);
          break;
        }
        case 'pong':
          lastPong = Date.now();
          break;
        default:
          // Newer servers may add frame types; old clients ignore them (PROTOCOL.md).
          break;
      }
    };
    ws.onclose = (ev: CloseEvent) => {
      if (gen !== this.generation) return;
      this.ws = null;
      this.stopPing();
      if (exited) {
        this.setState('ended', {});
        return;
      }
      const reason = ev.reason || CLOSE_REASONS[ev.code] || (opened ? 'connection lost' : 'could not connect');
      this.dropped(gen, { opened, gotReady, reason, code: ev.code });
    };
    ws.onerror = () => {
      /* always followed by close */
    };
  }

  /** Sends terminal input as binary frames, split so that none exceeds MAX_INPUT_FRAME. */
  sendBytes(bytes: Uint8Array): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    for (let i = 0; i < bytes.length; i += MAX_INPUT_FRAME) {
      ws.send(bytes.subarray(i, Math.min(bytes.length, i + MAX_INPUT_FRAME)));
    }
    return true;
  }

  sendText(text: string): boolean {
    return this.sendBytes(this.encoder.encode(text));
  }

  sendControl(msg: { type: string; [k: string]: unknown }): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  /** An automatic retry is waiting: try now instead (page became visible, network came back). */
  retryNowIfWaiting(): void {
    if (this.retryTimer !== undefined) this.connect();
  }

  /** Closes the socket for good (no reconnect). */
  close(): void {
    this.clearRetry();
    this.detachSocket();
  }

  private dropped(gen: number, info: { opened: boolean; gotReady: boolean; reason: string; code?: number }): void {
    if (gen !== this.generation) return;
    if (!info.gotReady) this.attempt += 1;
    else this.attempt = 0;
    const decide = (fatal: boolean, reason: string) => {
      if (gen !== this.generation) return;
      if (this.opts.autoReconnect && !fatal && this.attempt < this.opts.maxAttempts) {
        const delay = info.gotReady && this.attempt === 0 ? Math.min(250, this.opts.baseDelayMs) : backoffDelay(Math.max(0, this.attempt - 1), this.opts);
        this.retryTimer = window.setTimeout(() => {
          this.retryTimer = undefined;
          if (gen === this.generation) this.connect();
        }, delay);
        this.setState('reconnecting', { retryInMs: delay, attempt: this.attempt, reason });
      } else {
        this.setState('disconnected', { attempt: this.attempt, reason });
      }
    };
    if (info.opened) {
      decide(false, info.reason);
      return;
    }
    // The upgrade never happened. A refused upgrade is a plain HTTP error with a body that says
    // why (PROTOCOL.md), but browsers hide it from WebSocket code: ask the same URL over HTTP.
    this.probe().then(
      (res) => {
        if (!res) return decide(false, info.reason);
        const text = res.body ? `${res.status}: ${res.body}` : `HTTP ${res.status}`;
        // 401/403 will not fix themselves by retrying; 429/503 may.
        decide(res.status === 401 || res.status === 403, text);
      },
      () => decide(false, info.reason),
    );
  }

  private async probe(): Promise<{ status: number; body: string } | null> {
    const ctl = new AbortController();
    const t = window.setTimeout(() => ctl.abort(), 3000);
    try {
      const res = await fetch(httpProbeUrl(this.loc), { credentials: 'same-origin', cache: 'no-store', signal: ctl.signal });
      if (![401, 403, 429, 503].includes(res.status)) return null;
      const body = (await res.text()).replace(/\s+/g, ' ').trim().slice(0, 300);
      return { status: res.status, body };
    } catch {
      return null;
    } finally {
      window.clearTimeout(t);
    }
  }

  private startPing(gen: number, lastPong: () => number, ws: WebSocket): void {
    this.stopPing();
    if (this.opts.pingIntervalMs <= 0) return;
    let id = 0;
    this.pingTimer = window.setInterval(() => {
      if (gen !== this.generation || ws.readyState !== WebSocket.OPEN) return;
      const last = lastPong();
      if (last !== 0 && Date.now() - last > this.opts.pongTimeoutMs) {
        // The server answered pings before and stopped: the connection is dead even if the
        // browser has not noticed. Drop it and reconnect.
        this.detachSocket();
        this.dropped(gen, { opened: true, gotReady: true, reason: 'connection timed out' });
        return;
      }
      ws.send(JSON.stringify({ type: 'ping', id: ++id }));
    }, this.opts.pingIntervalMs);
  }

  private stopPing(): void {
    if (this.pingTimer !== undefined) window.clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  private clearRetry(): void {
    if (this.retryTimer !== undefined) window.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  /** Forgets the current socket: its late events are ignored from now on. */
  private detachSocket(): void {
    this.stopPing();
    const old = this.ws;
    this.ws = null;
    if (old) {
      old.onopen = old.onmessage = old.onclose = old.onerror = null;
      try {
        old.close(1000);
      } catch {
        /* ignore */
      }
    }
  }

  private setState(state: ConnState, detail: StateDetail): void {
    this.state = state;
    this.events.onState(state, detail);
  }
}
