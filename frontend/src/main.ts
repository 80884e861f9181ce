// termpool terminal page: wires the terminal, the status UI and the connection together.
// Output from the server is only ever written to the terminal (bytes) or to textContent: nothing
// the server or the shell sends becomes markup.

import '@xterm/xterm/css/xterm.css';
import './style.css';

import type { Terminal } from '@xterm/xterm';

import { basePath, clampSize, parseConfig, predictSetting } from './config';
import { Connection, type ConnectionEvents, type ReadyFrame } from './connection';
import { FlowControl } from './flow';
import { IdleNotice } from './idle';
import { forwardInput, handleShortcuts } from './input';
import { TerminalPredictor } from './predict-xterm';
import { SearchBox } from './search';
import { sessionFromHash } from './sessions';
import { SessionStore } from './session-store';
import { effectiveSettings, localStore, readStored } from './settings';
import { SizeSync } from './size';
import { StatusUi } from './status';
import { createTerminal } from './terminal';
import { TitleTracker } from './title';
import { setupWorkspace, type Workspace } from './workspace';

/** Modes a program may have left on; reset before a re-attached or new shell paints the screen. */
const RESET_MODES =
  '\x1b[!p' + // DECSTR: insert mode, origin mode, scroll region, SGR, charsets, cursor keys, ...
  '\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1004l\x1b[?1005l\x1b[?1006l\x1b[?1015l' + // mouse, focus
  '\x1b[?2004l\x1b[?25h'; // bracketed paste, cursor visible

function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`termpool: missing #${id}`);
  return el as T;
}

/** The parts of the page that the connection's events act on. */
interface Page {
  term: Terminal;
  status: StatusUi;
  flow: FlowControl;
  size: SizeSync;
  title: TitleTracker;
  workspace: Workspace;
  predictor: TerminalPredictor;
  conn: () => Connection;
}

function main(): void {
  const cfg = parseConfig(window.location.search);
  const settings = effectiveSettings(cfg, window.location.search, readStored(localStore()));
  Object.assign(cfg, { fontSize: settings.fontSize, theme: settings.theme });
  document.documentElement.dataset.theme = cfg.theme;
  const container = byId<HTMLDivElement>('terminal');
  const { term, fit, search } = createTerminal(cfg, container);

  let conn: Connection | undefined;
  const live = () => conn as Connection;
  const status = new StatusUi(statusElements(), {
    reconnect: () => live().connect({ manual: true }),
    reload: () => window.location.reload(),
    refocus: () => term.focus(),
  });
  const flow = new FlowControl((type) => {
    conn?.sendControl({ type });
  });
  const size = new SizeSync(term, fit, container, {
    connected: () => live().currentState === 'connected',
    send: (cols, rows) => live().sendControl({ type: 'resize', cols, rows }),
  });
  const searchBox = new SearchBox(term, search, byId('search'), byId<HTMLInputElement>('search-input'));
  const idle = new IdleNotice(status, () => live().sendControl({ type: 'stay' }));
  const predictor = new TerminalPredictor(term, predictSetting(cfg.predict, localStorageOrNull()));
  window.termpool = { term, predict: predictor.engine };
  const workspace = setupWorkspace({ term, container, app: byId('app'), conn: live, settings, refit: () => size.fitNow() });
  forwardInput(
    term,
    (bytes) => {
      idle.clear();
      return live().sendBytes(workspace.keybar ? workspace.keybar.filter(bytes) : bytes);
    },
    (data) => predictor.typed(data),
  );
  handleShortcuts(term, () => searchBox.open());
  const title = new TitleTracker(term);

  const store = new SessionStore(`termpool.session:${basePath(window.location.pathname) || '/'}`);
  takeSessionLink(store);
  const events = connectionEvents({ term, status, flow, size, title, predictor, workspace, conn: live });
  events.onIdle = (detachIn) => idle.warn(detachIn);
  conn = new Connection(window.location, events, store);
  followPageLifecycle(conn);
  // Fit before connecting so the TTY is created with the right size (no resize race).
  whenFontsReady(() => {
    size.fitNow();
    live().connect();
    term.focus();
  });
}

function statusElements(): ConstructorParameters<typeof StatusUi>[0] {
  return {
    status: byId('status'),
    statusText: byId('status-text'),
    message: byId('message'),
    identity: byId('identity'),
    banner: byId('banner'),
    bannerText: byId('banner-text'),
    bannerButton: byId<HTMLButtonElement>('banner-button'),
  };
}

function connectionEvents(page: Page): ConnectionEvents {
  const { term, status, flow, predictor } = page;
  return {
    size: () => clampSize(term),
    onState: (state, detail) => {
      status.showState(state, detail);
      page.workspace.onState(state, detail);
    },
    onReady: (ready, info) => onReady(page, ready, info.firstOfPage),
    onOutput: (bytes) => {
      const n = bytes.length;
      flow.written(n);
      term.write(bytes, () => {
        flow.processed(n);
        predictor.parsed();
      });
    },
    onExit: (code) => {
      term.write(`\r\n\x1b[0m[session ended, code ${code === null ? 'unknown' : code}]\r\n`);
      status.showBanner('The session has ended.', 'Start a new session', () => page.conn().connect({ fresh: true, manual: true }));
    },
    onError: (code, message) => status.showMessage(message ? `${code}: ${message}` : code),
    onRoundTrip: (ms) => predictor.roundTrip(ms),
  };
}

function onReady(page: Page, ready: ReadyFrame, firstOfPage: boolean): void {
  const { term, status } = page;
  page.flow.newConnection();
  page.predictor.reset();
  status.showIdentity(ready.container ? `${ready.user}@${ready.container}` : `${ready.user} (${ready.mode})`);
  page.title.setFallback(`${ready.container ? `${ready.user}@${ready.container}` : ready.user} — termpool`);
  status.showMessage('');
  if (!firstOfPage) {
    // The screen still shows the previous socket's view. A resumed session repaints it (the
    // server sends the current screen); a new one starts below the old output.
    if (term.buffer.active.type === 'alternate') term.write('\x1b[?1049l');
    term.write(RESET_MODES);
    if (!ready.resumed) term.write('\r\n');
  }
  page.size.attached(ready.cols, ready.rows);
}

/** A `#session=<id>` link (the sessions menu's "New tab") attaches this page to that session. */
function takeSessionLink(store: SessionStore): void {
  const id = sessionFromHash(window.location.hash);
  if (id === null) return;
  store.set(id);
  window.history.replaceState(null, '', window.location.pathname + window.location.search);
}

function localStorageOrNull(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null; // denied (e.g. third-party frame with storage blocked)
  }
}

/** Reload hands the session to the next page; a visible page or a network back retries at once. */
function followPageLifecycle(conn: Connection): void {
  window.addEventListener('pagehide', () => conn.persist());
  window.addEventListener('pageshow', (ev) => {
    if (ev.persisted) conn.unpersist();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') conn.retryNowIfWaiting();
  });
  window.addEventListener('online', () => conn.retryNowIfWaiting());
}

/** Runs `start` once the fonts are loaded (so the fit measures the right glyphs), at most 0.5 s later. */
function whenFontsReady(start: () => void): void {
  const fonts = (document as Document & { fonts?: FontFaceSet }).fonts;
  if (!fonts?.ready) {
    start();
    return;
  }
  let started = false;
  const once = () => {
    if (!started) {
      started = true;
      start();
    }
  };
  fonts.ready.then(once, once);
  window.setTimeout(once, 500); // never wait long for fonts
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', main);
else main();
