// The xterm.js terminal of the page: its options, addons and renderer (WebGL, else the DOM).

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { SearchAddon } from '@xterm/addon-search';
import { Unicode11Addon } from '@xterm/addon-unicode11';
import { WebLinksAddon } from '@xterm/addon-web-links';
import { WebglAddon } from '@xterm/addon-webgl';

import type { PageConfig, RendererName } from './config';
import type { Predictor } from './predict';
import { terminalTheme } from './theme';

declare global {
  interface Window {
    /** For tests: the terminal, and the predictive echo once the page has set it up. */
    termpool?: { term: Terminal; predict?: Predictor };
  }
}

export interface PageTerminal {
  term: Terminal;
  fit: FitAddon;
  search: SearchAddon;
}

/** Creates the terminal in `container`; `window.termpool.term` is it, for tests. */
export function createTerminal(cfg: PageConfig, container: HTMLElement): PageTerminal {
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
  return { term, fit, search };
}

function loadRenderer(term: Terminal, wanted: RendererName, container: HTMLElement): void {
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
