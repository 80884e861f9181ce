// Flow control between the server and xterm.js: bytes handed to `term.write` and not yet parsed
// are pending; above the high watermark the server is asked to pause (it stops reading the TTY,
// so a flooding program blocks instead of the browser), below the low watermark to resume.

export const HIGH_WATERMARK = 512 * 1024;
export const LOW_WATERMARK = 128 * 1024;

export class FlowControl {
  private pending = 0;
  private paused = false;

  constructor(
    private readonly send: (msg: 'pause' | 'resume') => void,
    private readonly high = HIGH_WATERMARK,
    private readonly low = LOW_WATERMARK,
  ) {}

  /** Bytes handed to the terminal and not yet processed. */
  get backlog(): number {
    return this.pending;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Call before writing `n` bytes to the terminal. */
  written(n: number): void {
    this.pending += n;
    if (!this.paused && this.pending > this.high) {
      this.paused = true;
      this.send('pause');
    }
  }

  /** Call from the write callback of a chunk of `n` bytes. */
  processed(n: number): void {
    this.pending = Math.max(0, this.pending - n);
    if (this.paused && this.pending < this.low) {
      this.paused = false;
      this.send('resume');
    }
  }

  /**
   * A new socket starts unpaused on the server side; forget the old socket's pause state (the
   * backlog itself stays: it is the terminal's). The next write re-pauses if still needed.
   */
  newConnection(): void {
    this.paused = false;
  }
}
