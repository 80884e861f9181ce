// The account menu: who this page is (`GET api/whoami`), what losing the cookie means, and in
// cookie mode the access key that carries the account to another browser (`api/access-key`).

import { callApi } from './api';
import { writeClipboard } from './clipboard';
import { h, Panel } from './panel';

export interface WhoAmI {
  user: string;
  mode: 'cookie' | 'header' | 'token' | string;
  access_key: boolean;
}

/** One line for people: what the account is and what losing it means, per identity mode. */
export function explain(who: WhoAmI): string {
  switch (who.mode) {
    case 'cookie':
      return `${who.user} is an account kept only by a cookie in this browser: clear cookies or switch browsers without an access key, and you get a new empty account (files and sessions stay with the old one).`;
    case 'token':
      return `${who.user} is the account of the token you signed in with: the same token gives the same account anywhere.`;
    default:
      return `${who.user} is the account your sign-in gives you; it does not depend on this browser.`;
  }
}

export class AccountMenu {
  readonly panel: Panel;
  private confirmReplace = false;

  /** `leave` runs before the page reloads as another account (stops re-attaching to this one). */
  constructor(parent: HTMLElement, private readonly leave: () => void, close: () => void) {
    this.panel = new Panel('account-panel', 'Account', parent, (body) => this.render(body), close);
  }

  private render(body: HTMLElement): void {
    this.confirmReplace = false;
    const info = h('p', { id: 'account-explain' }, 'Loading…');
    body.append(info);
    callApi<WhoAmI>('GET', 'whoami').then(
      (who) => {
        info.textContent = explain(who);
        info.dataset.user = who.user;
        if (who.mode === 'cookie') body.append(this.keySection(who), this.redeemSection());
      },
      (e: Error) => {
        info.textContent = `Cannot tell who you are: ${e.message}`;
        info.className = 'error';
      },
    );
  }

  private keySection(who: WhoAmI): HTMLElement {
    const out = h('div', { class: 'key-output' });
    const get = h('button', { type: 'button', id: 'get-access-key' }, who.access_key ? 'Replace access key' : 'Get access key');
    const warn = h('p', { class: 'hint' }, who.access_key ? 'This account has an access key. A new one replaces it: the old key stops working.' : 'An access key opens this account in any browser. It is shown once; keep it like a password.');
    get.addEventListener('click', () => {
      if (who.access_key && !this.confirmReplace) {
        this.confirmReplace = true;
        get.textContent = 'Replace it: the old key stops working';
        return;
      }
      get.disabled = true;
      callApi<{ key: string }>('POST', 'access-key').then(
        (res) => {
          who.access_key = true;
          out.replaceChildren(...this.shownKey(res.key));
        },
        (e: Error) => out.replaceChildren(h('p', { class: 'error' }, `No key: ${e.message}`)),
      ).finally(() => {
        get.disabled = false;
        this.confirmReplace = false;
        get.textContent = 'Replace access key';
      });
    });
    return h('div', { class: 'key-section' }, warn, get, out);
  }

  private shownKey(key: string): HTMLElement[] {
    const field = h('input', { id: 'access-key-value', type: 'text', readonly: true, value: key, spellcheck: 'false' });
    const copy = h('button', { type: 'button', id: 'copy-access-key' }, 'Copy');
    copy.addEventListener('click', () => {
      void writeClipboard(key).then(() => (copy.textContent = 'Copied'));
    });
    return [h('p', { class: 'hint' }, 'Your access key (shown only now):'), h('div', { class: 'key-row' }, field, copy)];
  }

  private redeemSection(): HTMLElement {
    const field = h('input', { id: 'redeem-key', type: 'password', placeholder: 'Paste an access key', autocomplete: 'off' });
    const result = h('p', { class: 'redeem-result' });
    const use = h('button', { type: 'button', id: 'use-access-key' }, 'Use');
    const redeem = () => {
      const key = field.value.trim();
      if (key === '') return;
      use.disabled = true;
      callApi<{ user: string }>('POST', 'access-key/redeem', { key }).then(
        (res) => {
          result.textContent = `Switching to ${res.user}…`;
          this.leave();
          window.location.reload();
        },
        (e: Error) => {
          result.textContent = e.message;
          result.className = 'redeem-result error';
          use.disabled = false;
        },
      );
    };
    use.addEventListener('click', redeem);
    field.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') redeem();
    });
    return h('div', { class: 'redeem-section' }, h('p', { class: 'hint' }, 'Use an access key: this browser becomes that account.'), h('div', { class: 'key-row' }, field, use), result);
  }
}
