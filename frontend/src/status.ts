// The status bar, the message beside it and the banner over the terminal: how the page tells
// people what the connection is doing. All of it is set as text, never as markup.

import type { ConnState, StateDetail } from './connection';

export interface StatusElements {
  status: HTMLElement;
  statusText: HTMLElement;
  message: HTMLElement;
  identity: HTMLElement;
  banner: HTMLElement;
  bannerText: HTMLElement;
  bannerButton: HTMLButtonElement;
}

/** What the banner's buttons do. */
export interface StatusActions {
  reconnect(): void;
  reload(): void;
  /** Called after a banner button's action (gives the keyboard back to the terminal). */
  refocus(): void;
}

export class StatusUi {
  private messageTimer: number | undefined;
  private countdownTimer: number | undefined;

  constructor(
    private readonly el: StatusElements,
    private readonly actions: StatusActions,
  ) {}

  /** A message beside the status; it goes away after 15 s unless `sticky`. */
  showMessage(text: string, sticky = false): void {
    this.el.message.textContent = text;
    this.el.message.title = text;
    if (this.messageTimer !== undefined) window.clearTimeout(this.messageTimer);
    this.messageTimer = sticky || text === '' ? undefined : window.setTimeout(() => this.showMessage(''), 15_000);
  }

  showIdentity(text: string): void {
    this.el.identity.textContent = text;
  }

  showBanner(text: string, button: string, action: () => void): void {
    this.el.bannerText.textContent = text;
    this.el.bannerButton.textContent = button;
    this.el.bannerButton.onclick = () => {
      action();
      this.actions.refocus();
    };
    this.el.banner.hidden = false;
  }

  hideBanner(): void {
    this.el.banner.hidden = true;
    this.el.bannerButton.onclick = null;
  }

  /** Shows a state of the connection in the status bar, and in the banner when it needs a person. */
  showState(state: ConnState, detail: StateDetail): void {
    if (this.countdownTimer !== undefined) window.clearInterval(this.countdownTimer);
    this.countdownTimer = undefined;
    switch (state) {
      case 'connecting':
      case 'ended':
        this.setStatus(state, state);
        break;
      case 'connected':
        this.setStatus(state, 'connected');
        this.hideBanner();
        break;
      case 'reconnecting':
        this.showReconnecting(detail);
        break;
      case 'disconnected':
        this.showDisconnected(detail);
        break;
    }
  }

  private setStatus(state: ConnState, text: string): void {
    this.el.status.dataset.state = state;
    this.el.statusText.textContent = text;
  }

  private showReconnecting(detail: StateDetail): void {
    const reason = detail.reason ? `${capitalize(detail.reason)}. ` : '';
    if (detail.retryInMs === undefined) {
      this.setStatus('reconnecting', 'reconnecting');
      if (!this.el.banner.hidden) this.el.bannerText.textContent = `${reason}Reconnecting…`;
      return;
    }
    const until = Date.now() + detail.retryInMs;
    const tick = () => {
      const s = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      this.setStatus('reconnecting', `reconnecting in ${s}s`);
      this.el.bannerText.textContent = `${reason}Reconnecting in ${s}s…`;
    };
    this.showBanner('', 'Reconnect now', () => this.actions.reconnect());
    tick();
    this.countdownTimer = window.setInterval(tick, 500);
    if (detail.reason && /^\d{3}: /.test(detail.reason)) this.showMessage(detail.reason);
  }

  private showDisconnected(detail: StateDetail): void {
    const reason = detail.reason ? `${capitalize(detail.reason)}.` : 'Disconnected.';
    this.setStatus('disconnected', 'disconnected');
    // 401: the server no longer knows this page's identity (it restarted with a new key, or
    // the login ended); only loading the page again gets one.
    if (detail.reason?.startsWith('401: ')) this.showBanner(reason, 'Reload page', () => this.actions.reload());
    else this.showBanner(reason, 'Reconnect', () => this.actions.reconnect());
    if (detail.reason) this.showMessage(detail.reason, true);
  }
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
