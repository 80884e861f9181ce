// Idle detach as the page shows it: the server's `idle` warning becomes a banner with a Stay
// button, and its close 4000 a "Detached after inactivity" banner (docs/protocol.md).

import type { StatusUi } from './status';

/** Close code (with reason `idle`) of a socket the server detached after no input. */
export const CLOSE_IDLE = 4000;

/** The warning banner: shown on `idle`, gone on Stay, on any input, or on a new connection. */
export class IdleNotice {
  private shown = false;

  constructor(
    private readonly status: StatusUi,
    private readonly stay: () => void,
  ) {}

  warn(detachIn: number): void {
    this.shown = true;
    const when = detachIn > 0 ? ` in ${detachIn} s` : '';
    this.status.showBanner(`No input for a while: this terminal will be detached${when}.`, 'Stay', () => {
      this.stay();
      this.clear();
    });
  }

  /** Input went to the server: it keeps the session, so the warning goes. */
  clear(): void {
    if (!this.shown) return;
    this.shown = false;
    this.status.hideBanner();
  }
}
