// The sessions menu: this user's live and detached sessions (`GET api/sessions`), re-attached in
// this tab or a new one, or ended (`DELETE api/sessions/<id>`).

import { callApi } from './api';
import { h, Panel } from './panel';

export interface SessionInfo {
  id: string;
  opened_at: number;
  cols: number;
  rows: number;
  attached: boolean;
  command: string | null;
}

export interface SessionList {
  user: string;
  limit: number;
  sessions: SessionInfo[];
}

/** "3 min ago", "2 h ago", ... for a unix time in seconds. */
export function ago(unixSecs: number, nowMs: number): string {
  const s = Math.max(0, Math.round(nowMs / 1000 - unixSecs));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

/** The page URL that makes a new tab attach to `id` (read by `sessionFromHash`). */
export function attachUrl(loc: { pathname: string; search: string }, id: string): string {
  return `${loc.pathname}${loc.search}#session=${encodeURIComponent(id)}`;
}

/** The session a `#session=<id>` link asks for, or null. */
export function sessionFromHash(hash: string): string | null {
  const m = /^#session=([A-Za-z0-9-]{1,64})$/.exec(hash);
  return m ? m[1] : null;
}

export interface SessionActions {
  current(): string | null;
  attachHere(id: string): void;
}

export class SessionsMenu {
  readonly panel: Panel;
  private note = '';

  constructor(parent: HTMLElement, private readonly actions: SessionActions, close: () => void) {
    this.panel = new Panel('sessions-panel', 'Your sessions', parent, (body) => this.render(body), close);
  }

  /** Opens the list, with `note` above it (e.g. why it was opened). */
  show(note = ''): void {
    this.note = note;
    this.panel.open();
  }

  private render(body: HTMLElement): void {
    if (this.note) body.append(h('p', { class: 'panel-note' }, this.note));
    const list = h('div', { class: 'session-list' }, 'Loading…');
    body.append(list);
    callApi<SessionList>('GET', 'sessions').then(
      (res) => this.fill(list, res),
      (e: Error) => list.replaceChildren(h('p', { class: 'error' }, `Cannot list sessions: ${e.message}`)),
    );
  }

  private fill(list: HTMLElement, res: SessionList): void {
    list.replaceChildren(h('p', { class: 'hint' }, `${res.sessions.length} of at most ${res.limit} sessions of ${res.user}.`));
    const sorted = [...res.sessions].sort((a, b) => b.opened_at - a.opened_at);
    for (const s of sorted) list.append(this.row(s));
  }

  private row(s: SessionInfo): HTMLElement {
    const here = s.id === this.actions.current();
    const state = here ? 'this tab' : s.attached ? 'attached elsewhere' : 'detached';
    const tr = h(
      'div',
      { class: 'session', 'data-session': s.id, 'data-attached': String(s.attached) },
      h('span', { class: 'session-command' }, s.command ?? '?'),
      h('span', { class: 'session-meta' }, `opened ${ago(s.opened_at, Date.now())}, ${s.cols}×${s.rows}, ${state}`),
    );
    const buttons = h('span', { class: 'session-buttons' });
    if (!here) {
      buttons.append(
        h('button', { type: 'button', class: 'attach-here', onclick: () => {
          this.panel.close();
          this.actions.attachHere(s.id);
        } }, 'Attach here'),
        h('button', { type: 'button', class: 'attach-new-tab', onclick: () => window.open(attachUrl(window.location, s.id), '_blank') }, 'New tab'),
      );
    }
    buttons.append(h('button', { type: 'button', class: 'end-session', onclick: () => this.end(s, tr) }, 'End'));
    tr.append(buttons);
    return tr;
  }

  private end(s: SessionInfo, tr: HTMLElement): void {
    callApi<null>('DELETE', `sessions/${encodeURIComponent(s.id)}`).then(
      // Gone for the person at once; the server may list it a moment longer while it hangs up.
      () => tr.remove(),
      (e: Error) => tr.append(h('p', { class: 'error' }, `Cannot end it: ${e.message}`)),
    );
  }
}
