// Application pings on a connected socket: they measure the round trip (for predictive echo) and
// find a socket that stopped answering, dead even though the browser has not noticed.

export interface HeartbeatOptions {
  /** Send an application ping this often while connected (0 disables). */
  pingIntervalMs: number;
  /** Drop the socket when no pong came for this long (only once the server has answered one). */
  pongTimeoutMs: number;
}

/** The socket a heartbeat pings: `open` is false once it was replaced or closed. */
export interface PingLink {
  open(): boolean;
  send(text: string): void;
}

/** The first pings after connecting, in ms from the start: a round trip is known quickly. */
const FIRST_PINGS_MS = [0, 500, 1500];

export class Heartbeat {
  private timers: number[] = [];
  private lastPong = 0;
  private id = 0;
  private readonly sentAt = new Map<number, number>();

  constructor(
    private readonly link: PingLink,
    private readonly opts: HeartbeatOptions,
    private readonly onDead: () => void,
    private readonly onRoundTrip: (ms: number) => void = () => {},
  ) {}

  start(): void {
    this.stop();
    if (this.opts.pingIntervalMs <= 0) return;
    for (const at of FIRST_PINGS_MS) this.timers.push(window.setTimeout(() => this.ping(), at));
    this.timers.push(window.setInterval(() => this.tick(), this.opts.pingIntervalMs));
  }

  /** A `pong` frame arrived, with the id of its ping. */
  pong(id: unknown): void {
    const now = performance.now();
    this.lastPong = Date.now();
    if (typeof id !== 'number') return;
    const sent = this.sentAt.get(id);
    this.sentAt.delete(id);
    if (sent !== undefined) this.onRoundTrip(now - sent);
  }

  stop(): void {
    // Timeout and interval ids share one pool, so clearTimeout ends either.
    for (const t of this.timers) window.clearTimeout(t);
    this.timers = [];
    this.sentAt.clear();
  }

  private tick(): void {
    if (!this.link.open()) return;
    if (this.lastPong !== 0 && Date.now() - this.lastPong > this.opts.pongTimeoutMs) {
      // The server answered pings before and stopped: the connection is dead even if the
      // browser has not noticed.
      this.onDead();
      return;
    }
    this.ping();
  }

  private ping(): void {
    if (!this.link.open()) return;
    const id = ++this.id;
    // Only the latest few matter; a server that never answers must not grow the map.
    if (this.sentAt.size > 8) this.sentAt.clear();
    this.sentAt.set(id, performance.now());
    this.link.send(JSON.stringify({ type: 'ping', id }));
  }
}
