// One terminal connection over the WebSocket protocol (docs/protocol.md), across reconnects: it
// owns at most one socket at a time, and opens a new one after a drop, asking to re-attach.

import { CLOSE_IDLE } from './idle';
import { backoffDelay, type BackoffOptions } from './backoff';
import { wsUrl } from './config';
import { closeReason, parseTextFrame, type ReadyFrame, type TextFrame } from './frames';
import { Heartbeat, type HeartbeatOptions } from './heartbeat';
import { probeRefusal } from './probe';
import type { SessionStore } from './session-store';

export type { ReadyFrame } from './frames';

export type ConnState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'ended';

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
  /** The server will detach this socket in `detachIn` seconds unless input or `stay` comes. */
  onIdle?(detachIn: number): void;
  /** A round trip measured with ping and pong, in milliseconds. */
  onRoundTrip?(ms: number): void;
}

export interface ReconnectOptions extends BackoffOptions, HeartbeatOptions {
  autoReconnect: boolean;
  /** Automatic attempts in a row before giving up (the Reconnect button still works). */
  maxAttempts: number;
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

/** Close code of a socket whose session another socket re-attached to. */
const TAKEN_OVER = 4001;

/** One socket of the connection and what it has seen so far. */
interface SocketLife {
  gen: number;
  ws: WebSocket;
  /** The session id sent in the URL, if any. */
  asked: string | null;
  opened: boolean;
  gotReady: boolean;
  exited: boolean;
}

interface DropInfo {
  opened: boolean;
  gotReady: boolean;
  reason: string;
  code?: number;
}

/**
 * Every socket gets a generation number, so that late events of a replaced socket are ignored.
 * A socket that drops without an `exit` frame is replaced with exponential backoff, asking the
 * server to re-attach with `?session=<id>` (the id from the last `ready`).
 */
export class Connection {
  private ws: WebSocket | null = null;
  private generation = 0;
  private state: ConnState = 'connecting';
  private attempt = 0;
  private retryTimer: number | undefined;
  private heartbeat: Heartbeat | null = null;
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
    const asked = this.session;
    const url = wsUrl(this.loc, { ...this.events.size(), session: asked });
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
    const life: SocketLife = { gen, ws, asked, opened: false, gotReady: false, exited: false };
    const current = () => gen === this.generation;
    ws.onopen = () => {
      if (current()) life.opened = true;
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (current()) this.onMessage(life, ev);
    };
    ws.onclose = (ev: CloseEvent) => {
      if (current()) this.onClose(life, ev);
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

  /** Attaches this tab to another live session of the user's (the current one is left detached). */
  attachTo(id: string): void {
    this.session = id;
    this.connect({ manual: true });
  }

  /** Closes for good and forgets the session: the page is about to load as another account. */
  forget(): void {
    this.session = null;
    this.store.clear();
    this.close();
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

  private onMessage(life: SocketLife, ev: MessageEvent): void {
    if (typeof ev.data !== 'string') {
      this.events.onOutput(new Uint8Array(ev.data as ArrayBuffer));
      return;
    }
    const msg = parseTextFrame(ev.data);
    if (msg === null) return;
    switch (msg.type) {
      case 'ready':
        this.onReady(life, msg as unknown as ReadyFrame);
        break;
      case 'exit':
        life.exited = true;
        this.session = null;
        this.events.onExit(typeof msg.code === 'number' ? msg.code : null);
        break;
      case 'error':
        this.onErrorFrame(life, msg);
        break;
      case 'pong':
        this.heartbeat?.pong(msg.id);
        break;
      case 'idle':
        this.events.onIdle?.(typeof msg.detach_in === 'number' ? msg.detach_in : 0);
        break;
      default:
        // Newer servers may add frame types; old clients ignore them (docs/protocol.md).
        break;
    }
  }

  private onReady(life: SocketLife, ready: ReadyFrame): void {
    life.gotReady = true;
    const firstOfPage = !this.everReady;
    this.everReady = true;
    this.attempt = 0;
    if (typeof ready.session === 'string' && ready.session !== '') this.session = ready.session;
    this.startHeartbeat(life);
    this.setState('connected', {});
    this.events.onReady(ready, { firstOfPage, askedToResume: life.asked !== null });
  }

  private onErrorFrame(life: SocketLife, msg: TextFrame): void {
    const code = String(msg.code ?? 'internal');
    const message = String(msg.message ?? '');
    if (code === 'session_not_found' && life.asked !== null) {
      // The old session is gone (ended, expired, or never ours): the server already gave
      // us a fresh one. Nothing for the user to act on.
      console.info('termpool: previous session not found, started a new one');
      return;
    }
    this.events.onError(code, message);
  }

  private onClose(life: SocketLife, ev: CloseEvent): void {
    this.ws = null;
    this.stopHeartbeat();
    if (life.exited) {
      this.setState('ended', {});
      return;
    }
    if (ev.code === CLOSE_IDLE && ev.reason === 'idle') {
      // Detached for inactivity: reconnecting by itself would hold the slot forever again.
      this.setState('disconnected', { attempt: this.attempt, reason: 'detached after inactivity' });
      return;
    }
    const reason = closeReason(ev, life.opened);
    this.dropped(life.gen, { opened: life.opened, gotReady: life.gotReady, reason, code: ev.code });
  }

  private startHeartbeat(life: SocketLife): void {
    this.stopHeartbeat();
    const link = {
      open: () => life.gen === this.generation && life.ws.readyState === WebSocket.OPEN,
      send: (text: string) => life.ws.send(text),
    };
    const dead = () => {
      // Drop the dead socket and reconnect.
      this.detachSocket();
      this.dropped(life.gen, { opened: true, gotReady: true, reason: 'connection timed out' });
    };
    this.heartbeat = new Heartbeat(link, this.opts, dead, (ms) => this.events.onRoundTrip?.(ms));
    this.heartbeat.start();
  }

  private stopHeartbeat(): void {
    this.heartbeat?.stop();
    this.heartbeat = null;
  }

  private dropped(gen: number, info: DropInfo): void {
    if (gen !== this.generation) return;
    if (!info.gotReady) this.attempt += 1;
    else this.attempt = 0;
    if (info.opened) {
      // 4001: another tab took this session (docs/protocol.md); taking it back by ourselves
      // would make the two tabs steal it from each other for ever.
      this.retryOrGiveUp(gen, info, info.code === TAKEN_OVER, info.reason);
      return;
    }
    // The upgrade never happened. A refused upgrade is a plain HTTP error with a body that says
    // why, but browsers hide it from WebSocket code: ask the same URL over HTTP.
    probeRefusal(this.loc).then(
      (res) => {
        if (!res) return this.retryOrGiveUp(gen, info, false, info.reason);
        const text = res.body ? `${res.status}: ${res.body}` : `HTTP ${res.status}`;
        // 401/403 will not fix themselves by retrying; 429/503 may.
        this.retryOrGiveUp(gen, info, res.status === 401 || res.status === 403, text);
      },
      () => this.retryOrGiveUp(gen, info, false, info.reason),
    );
  }

  private retryOrGiveUp(gen: number, info: DropInfo, fatal: boolean, reason: string): void {
    if (gen !== this.generation) return;
    if (!this.opts.autoReconnect || fatal || this.attempt >= this.opts.maxAttempts) {
      this.setState('disconnected', { attempt: this.attempt, reason });
      return;
    }
    const delay = info.gotReady && this.attempt === 0 ? Math.min(250, this.opts.baseDelayMs) : backoffDelay(Math.max(0, this.attempt - 1), this.opts);
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = undefined;
      if (gen === this.generation) this.connect();
    }, delay);
    this.setState('reconnecting', { retryInMs: delay, attempt: this.attempt, reason });
  }

  private clearRetry(): void {
    if (this.retryTimer !== undefined) window.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  /** Forgets the current socket: its late events are ignored from now on. */
  private detachSocket(): void {
    this.stopHeartbeat();
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
