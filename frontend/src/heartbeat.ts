// Application pings on a connected socket, and the verdict that a socket which stopped answering
// them is dead even though the browser has not noticed.

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

export class Heartbeat {
  private timer: number | undefined;
  private lastPong = 0;
  private id = 0;

  constructor(
    private readonly link: PingLink,
    private readonly opts: HeartbeatOptions,
    private readonly onDead: () => void,
  ) {}

  start(): void {
    this.stop();
    if (this.opts.pingIntervalMs <= 0) return;
    this.timer = window.setInterval(() => this.tick(), this.opts.pingIntervalMs);
  }

  /** A `pong` frame arrived. */
  pong(): void {
    this.lastPong = Date.now();
  }

  stop(): void {
    if (this.timer !== undefined) window.clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    if (!this.link.open()) return;
    if (this.lastPong !== 0 && Date.now() - this.lastPong > this.opts.pongTimeoutMs) {
      // The server answered pings before and stopped: the connection is dead even if the
      // browser has not noticed.
      this.onDead();
      return;
    }
    this.link.send(JSON.stringify({ type: 'ping', id: ++this.id }));
  }
}
