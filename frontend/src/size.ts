// Keeps the terminal fitted to its box and the server's TTY at the terminal's size: fits once
// per frame on layout changes, sends a `resize` frame 80 ms after the size settles.

import type { Terminal } from '@xterm/xterm';
import type { FitAddon } from '@xterm/addon-fit';

import { clampSize } from './config';

/** The socket side of resizing: `send` returns whether the frame went out. */
export interface ResizeLink {
  connected(): boolean;
  send(cols: number, rows: number): boolean;
}

export class SizeSync {
  private sent = { cols: 0, rows: 0 };
  private resizeTimer: number | undefined;
  private fitFrame = 0;

  constructor(
    private readonly term: Terminal,
    private readonly fit: FitAddon,
    private readonly container: HTMLElement,
    private readonly link: ResizeLink,
  ) {
    term.onResize(() => {
      if (this.resizeTimer !== undefined) window.clearTimeout(this.resizeTimer);
      this.resizeTimer = window.setTimeout(() => this.sendIfChanged(), 80);
    });
    new ResizeObserver(() => this.scheduleFit()).observe(container);
    window.addEventListener('resize', () => this.scheduleFit());
  }

  /** Fits the terminal to its box now (skipped while the box is hidden). */
  fitNow(): void {
    if (this.container.clientWidth === 0 || this.container.clientHeight === 0) return; // hidden
    try {
      this.fit.fit();
    } catch (e) {
      console.warn('termpool: fit failed', e);
    }
  }

  /** A socket was attached with this TTY size: send ours if it differs. */
  attached(cols: number, rows: number): void {
    this.sent = { cols, rows };
    this.sendIfChanged();
  }

  private scheduleFit(): void {
    if (this.fitFrame) return;
    this.fitFrame = window.requestAnimationFrame(() => {
      this.fitFrame = 0;
      this.fitNow();
    });
  }

  private sendIfChanged(): void {
    if (this.resizeTimer !== undefined) window.clearTimeout(this.resizeTimer);
    this.resizeTimer = undefined;
    if (!this.link.connected()) return;
    const { cols, rows } = clampSize(this.term);
    if (cols === this.sent.cols && rows === this.sent.rows) return;
    if (this.link.send(cols, rows)) this.sent = { cols, rows };
  }
}
