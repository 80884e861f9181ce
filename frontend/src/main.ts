// termpool terminal page: xterm.js wired to the termpool WebSocket protocol (PROTOCOL.md).
//
// Output from the server is only ever written to the terminal (bytes) or to textContent: nothing
// the server or the shell sends becomes markup.

import '@xterm/xterm/css/xterm.css';
import './style.css';

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { SearchAddon } from '@xterm/addon-search';
import { Unicode11Addon } from '@xterm/addon-unicode11';
import { WebLinksAddon } from '@xterm/addon-web-links';
import { WebglAddon } from '@xterm/addon-webgl';

import { basePath, clampSize, parseConfig } from './config';
import { Connection, SessionStore, type ConnState, type ReadyFrame, type StateDetail } from './connection';
import { FlowControl } from './flow';
import { terminalTheme } from './theme';

declare global {
  interface Window {
    termpool?: { term: Terminal };
  }
}

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

function main(): void {
  const cfg = parseConfig(window.location.search);
  document.documentElement.dataset.theme = cfg.theme;

  const container = byId<HTMLDivElement>('terminal');
  const statusEl = byId<HTMLSpanElement>('status');
  const statusText = byId<HTMLSpanElement>('status-text');
  const messageEl = byId<HTMLSpanElement>('message');
  const identityEl = byId<HTMLSpanElement>('identity');
  const banner = byId<HTMLDivElement>('banner');
  const bannerText = byId<HTMLSpanElement>('banner-text');
  const bannerButton = byId<HTMLButtonElement>('banner-button');
  const searchBox = byId<HTMLDivElement>('search');
  const searchInput = byId<HTMLInputElement>('search-input');

  const term = new Terminal({
    fontSize: cfg.fontSize,
    fontFamily: cfg.fontFamily,
    theme: terminalTheme(cfg.theme),
    allowProposedApi: true, // the unicode API used by the unicode11 addon is still "proposed"
    cursorBlink: true,
    scrollback: 10_000,
    macOptionIsMeta: true,
  });
  window.termpool = { term };

  const fit = new FitAddon();
  const search = new SearchAddon();
  term.loadAddon(fit);
  term.loadAddon(search);
  term.loadAddon(new WebLinksAddon());
  term.loadAddon(new Unicode11Addon());
  term.unicode.activeVersion = '11';

  term.open(container);
  loadRenderer(term, cfg.renderer, container);

  // ---- status line ----------------------------------------------------------------------------

  let messageTimer: number | undefined;
  function showMessage(text: string, sticky = false): void {
    messageEl.textContent = text;
    messageEl.title = text;
    if (messageTimer !== undefined) window.clearTimeout(messageTimer);
    messageTimer = sticky || text === '' ? undefined : window.setTimeout(() => showMessage(''), 15_000);
  }

  function showBanner(text: string, button: string, action: () => void): void {
    bannerText.textContent = text;
    bannerButton.textContent = button;
    bannerButton.onclick = () => {
      action();
      term.focus();
    };
    banner.hidden = false;
  }

  function hideBanner(): void {
    banner.hidden = true;
    bannerButton.onclick = null;
  }

  let countdownTimer: number | undefined;
  function setStatus(state: ConnState, text: string): void {
    statusEl.dataset.state = state;
    statusText.textContent = text;
  }

  // ---- output and flow control ----------------------------------------------------------------

  let conn: Connection;
  const flow = new FlowControl((type) => {
    conn?.sendControl({ type });
  });

  function writeOutput(bytes: Uint8Array): void {
    const n = bytes.length;
    flow.written(n);
    term.write(bytes, () => flow.processed(n));
  }

  // ---- size -----------------------------------------------------------------------------------

  let sentSize = { cols: 0, rows: 0 };
  let resizeTimer: number | undefined;

  function sendSizeIfChanged(): void {
    if (resizeTimer !== undefined) window.clearTimeout(resizeTimer);
    resizeTimer = undefined;
    if (conn.currentState !== 'connected') return;
    const { cols, rows } = clampSize(term);
    if (cols === sentSize.cols && rows === sentSize.rows) return;
    if (conn.sendControl({ type: 'resize', cols, rows })) sentSize = { cols, rows };
  }

  term.onResize(() => {
    if (resizeTimer !== undefined) window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(sendSizeIfChanged, 80);
  });

  let fitFrame = 0;
  function scheduleFit(): void {
    if (fitFrame) return;
    fitFrame = window.requestAnimationFrame(() => {
      fitFrame = 0;
      doFit();
    });
  }
  function doFit(): void {
    if (container.clientWidth === 0 || container.clientHeight === 0) return; // hidden
    try {
      fit.fit();
    } catch (e) {
      console.warn('termpool: fit failed', e);
    }
  }
  new ResizeObserver(scheduleFit).observe(container);
  window.addEventListener('resize', scheduleFit);

  // ---- input ----------------------------------------------------------------------------------

  const encoder = new TextEncoder();
  term.onData((data) => {
    conn.sendBytes(encoder.encode(data));
  });
  term.onBinary((data) => {
    // "binary" strings carry one byte per char (e.g. some mouse reports): send them raw.
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
    conn.sendBytes(bytes);
  });

  term.attachCustomKeyEventHandler((ev) => {
    if (!(ev.ctrlKey && ev.shiftKey) || ev.altKey || ev.metaKey) return true;
    const key = ev.code || ev.key;
    if (key === 'KeyC' || ev.key === 'C' || ev.key === 'c') {
      // Ctrl+Shift+C copies (and must not open the browser's element inspector).
      ev.preventDefault();
      if (ev.type === 'keydown') void copySelection(term);
      return false;
    }
    if (key === 'KeyV' || ev.key === 'V' || ev.key === 'v') {
      // Let the browser deliver its paste event to xterm's textarea; xterm.js handles it
      // (bracketed paste included) and it arrives through onData.
      return false;
    }
    if (key === 'KeyF' || ev.key === 'F' || ev.key === 'f') {
      ev.preventDefault();
      if (ev.type === 'keydown') openSearch();
      return false;
    }
    return true;
  });

  // ---- search ---------------------------------------------------------------------------------

  function openSearch(): void {
    searchBox.hidden = false;
    const sel = term.getSelection();
    if (sel && !sel.includes('\n')) searchInput.value = sel;
    searchInput.focus();
    searchInput.select();
  }
  function closeSearch(): void {
    searchBox.hidden = true;
    search.clearDecorations();
    term.focus();
  }
  searchInput.addEventListener('input', () => {
    if (searchInput.value) search.findNext(searchInput.value, { incremental: true });
    else term.clearSelection();
  });
  searchInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      closeSearch();
    } else if (ev.key === 'Enter') {
      ev.preventDefault();
      if (!searchInput.value) return;
      if (ev.shiftKey) search.findPrevious(searchInput.value);
      else search.findNext(searchInput.value);
    }
  });

  // ---- connection -----------------------------------------------------------------------------

  const store = new SessionStore(`termpool.session:${basePath(window.location.pathname) || '/'}`);

  function onState(state: ConnState, detail: StateDetail): void {
    if (countdownTimer !== undefined) window.clearInterval(countdownTimer);
    countdownTimer = undefined;
    switch (state) {
      case 'connecting':
        setStatus(state, 'connecting');
        break;
      case 'connected':
        setStatus(state, 'connected');
        hideBanner();
        break;
      case 'reconnecting': {
        const reason = detail.reason ? `${capitalize(detail.reason)}. ` : '';
        if (detail.retryInMs === undefined) {
          setStatus(state, 'reconnecting');
          if (!banner.hidden) bannerText.textContent = `${reason}Reconnecting…`;
          break;
        }
        const until = Date.now() + detail.retryInMs;
        const tick = () => {
          const s = Math.max(0, Math.ceil((until - Date.now()) / 1000));
          setStatus(state, `reconnecting in ${s}s`);
          bannerText.textContent = `${reason}Reconnecting in ${s}s…`;
        };
        showBanner('', 'Reconnect now', () => conn.connect({ manual: true }));
        tick();
        countdownTimer = window.setInterval(tick, 500);
        if (detail.reason && /^\d{3}: /.test(detail.reason)) showMessage(detail.reason);
        break;
      }
      case 'disconnected': {
        const reason = detail.reason ? `${capitalize(detail.reason)}.` : 'Disconnected.';
        setStatus(state, 'disconnected');
        // 401: the server no longer knows this page's identity (it restarted with a new key, or
        // the login ended); only loading the page again gets one.
        if (detail.reason?.startsWith('401: ')) showBanner(reason, 'Reload page', () => window.location.reload());
        else showBanner(reason, 'Reconnect', () => conn.connect({ manual: true }));
        if (detail.reason) showMessage(detail.reason, true);
        break;
      }
      case 'ended':
        setStatus(state, 'ended');
        break;
    }
  }

  // Programs (and most shell prompts) set the window title; it becomes the tab's title.
  let defaultTitle = document.title;
  let programTitle = '';
  term.onTitleChange((title) => {
    programTitle = title.slice(0, 200);
    document.title = programTitle || defaultTitle;
  });

  function onReady(ready: ReadyFrame, info: { firstOfPage: boolean; askedToResume: boolean }): void {
    flow.newConnection();
    const where = ready.container ? `${ready.user}@${ready.container}` : `${ready.user} (${ready.mode})`;
    identityEl.textContent = where;
    defaultTitle = `${ready.container ? `${ready.user}@${ready.container}` : ready.user} — termpool`;
    if (!programTitle) document.title = defaultTitle;
    showMessage('');
    if (!info.firstOfPage) {
      // The screen still shows the previous socket's view. A resumed session repaints it (the
      // server sends the current screen); a new one starts below the old output.
      if (term.buffer.active.type === 'alternate') term.write('\x1b[?1049l');
      term.write(RESET_MODES);
      if (!ready.resumed) term.write('\r\n');
    }
    sentSize = { cols: ready.cols, rows: ready.rows };
    sendSizeIfChanged();
  }

  function onExit(code: number | null): void {
    term.write(`\r\n\x1b[0m[session ended, code ${code === null ? 'unknown' : code}]\r\n`);
    showBanner('The session has ended.', 'Start a new session', () => conn.connect({ fresh: true, manual: true }));
  }

  function onError(code: string, message: string): void {
    showMessage(message ? `${code}: ${message}` : code);
  }

  conn = new Connection(
    window.location,
    {
      size: () => clampSize(term),
      onState,
      onReady,
      onOutput: writeOutput,
      onExit,
      onError,
    },
    store,
  );

  window.addEventListener('pagehide', () => conn.persist());
  window.addEventListener('pageshow', (ev) => {
    if (ev.persisted) conn.unpersist();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') conn.retryNowIfWaiting();
  });
  window.addEventListener('online', () => conn.retryNowIfWaiting());

  // Fit before connecting so the TTY is created with the right size (no resize race).
  const start = () => {
    doFit();
    conn.connect();
    term.focus();
  };
  const fonts = (document as Document & { fonts?: FontFaceSet }).fonts;
  if (fonts?.ready) {
    let started = false;
    const once = () => {
      if (!started) {
        started = true;
        start();
      }
    };
    fonts.ready.then(once, once);
    window.setTimeout(once, 500); // never wait long for fonts
  } else {
    start();
  }
}

function loadRenderer(term: Terminal, wanted: 'webgl' | 'dom', container: HTMLElement): void {
  container.dataset.renderer = 'dom';
  if (wanted !== 'webgl') return;
  try {
    const webgl = new WebglAddon();
    webgl.onContextLoss(() => {
      // The GPU went away (driver reset, too many contexts): fall back to the DOM renderer.
      console.warn('termpool: WebGL context lost, using the DOM renderer');
      webgl.dispose();
      container.dataset.renderer = 'dom';
    });
    term.loadAddon(webgl);
    container.dataset.renderer = 'webgl';
  } catch (e) {
    console.info('termpool: WebGL unavailable, using the DOM renderer', e);
  }
}

async function copySelection(term: Terminal): Promise<void> {
  const text = term.getSelection();
  if (!text) return;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API unavailable (plain http on a non-local host): use a temporary textarea.
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.style.position = 'fixed';
    ta.style.opacity = '0';
    document.body.appendChild(ta);
    ta.select();
    try {
      document.execCommand('copy');
    } finally {
      ta.remove();
    }
  }
  term.focus();
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', main);
else main();
