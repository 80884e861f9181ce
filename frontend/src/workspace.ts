// The workspace parts of the page around the terminal (sessions, account, settings, uploads,
// downloads, clipboard, key bar), wired to the status bar's buttons; none sit on the output path.

import type { Terminal } from '@xterm/xterm';

import { AccountMenu } from './account';
import { setupClipboard } from './clipboard';
import type { Connection, ConnState, StateDetail } from './connection';
import { setupDownloads } from './download';
import { followVisualViewport, isTouchDevice, KeyBar } from './keybar';
import { SessionsMenu } from './sessions';
import type { Settings } from './settings';
import { settingsMenu } from './settings-menu';
import { setupUploads, type UploadUi } from './upload';

export interface WorkspaceParts {
  term: Terminal;
  /** The box of the terminal (drops, right-click) and the page area the menus open over. */
  container: HTMLElement;
  app: HTMLElement;
  conn(): Connection;
  settings: Settings;
  refit(): void;
}

export interface Workspace {
  /** Typed input passes here (the key bar's sticky Ctrl/Alt); null when there is no key bar. */
  keybar: KeyBar | null;
  onState(state: ConnState, detail: StateDetail): void;
}

function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`termpool: missing #${id}`);
  return el as T;
}

export function setupWorkspace(p: WorkspaceParts): Workspace {
  const { term } = p;
  const refocus = () => term.focus();
  const notice = noticeUi();
  setupClipboard(term, p.container, { copyOnSelect: () => p.settings.copyOnSelect, problem: (t) => notice.done(t, true) });
  setupDownloads(term, (t, isError) => notice.done(t, isError));
  setupUploads(p.container, byId<HTMLInputElement>('upload-input'), { ...notice, session: () => p.conn().sessionId });

  const sessions = new SessionsMenu(p.app, {
    current: () => p.conn().sessionId,
    attachHere: (id) => {
      term.reset();
      p.conn().attachTo(id);
    },
  }, refocus);
  const account = new AccountMenu(p.app, () => p.conn().forget(), refocus);
  const settings = settingsMenu(p.app, term, p.settings, p.refit, refocus);
  byId('sessions-button').addEventListener('click', () => sessions.panel.toggle());
  byId('account-button').addEventListener('click', () => account.panel.toggle());
  byId('settings-button').addEventListener('click', () => settings.toggle());
  byId('upload-button').addEventListener('click', () => byId<HTMLInputElement>('upload-input').click());

  let keybar: KeyBar | null = null;
  if (isTouchDevice()) {
    keybar = new KeyBar(byId('keybar'), (bytes) => p.conn().sendBytes(bytes), refocus);
    keybar.show();
    followVisualViewport(p.refit);
  }
  let offeredList = false;
  return {
    keybar,
    onState: (state, detail) => {
      // At the session limit the server refuses a new shell with 429: offer the list to pick from.
      if ((state === 'reconnecting' || state === 'disconnected') && detail.reason?.startsWith('429')) {
        if (!offeredList) sessions.show('You are at the session limit: attach to one of your sessions or end one.');
        offeredList = true;
      } else if (state === 'connected') offeredList = false;
    },
  };
}

/** The transfer line of the status bar: a progress bar while uploading, then the outcome. */
function noticeUi(): Pick<UploadUi, 'progress' | 'done'> {
  const box = byId('transfer');
  const text = byId('transfer-text');
  const bar = byId<HTMLProgressElement>('transfer-progress');
  let timer: number | undefined;
  return {
    progress: (name, fraction) => {
      window.clearTimeout(timer);
      box.hidden = false;
      box.dataset.state = 'uploading';
      bar.hidden = false;
      if (fraction === null) bar.removeAttribute('value');
      else bar.value = fraction;
      text.textContent = `Uploading ${name}…`;
    },
    done: (t, isError) => {
      window.clearTimeout(timer);
      box.hidden = false;
      box.dataset.state = isError ? 'error' : 'done';
      bar.hidden = true;
      text.textContent = t;
      text.title = t;
      timer = window.setTimeout(() => (box.hidden = true), isError ? 30_000 : 10_000);
    },
  };
}
