// Binds the predictor (predict.ts) to xterm.js: the screen read through the buffer API, and
// predictions drawn as decorations, DOM elements over the cells, never written into the buffer.

import type { IDecoration, IMarker, Terminal } from '@xterm/xterm';

import { nextCol, Predictor, type LineAnchor, type Prediction, type PredictionOverlay, type PredictMode, type ScreenView } from './predict';

/** How often pending predictions are checked while no output arrives (for the timeout). */
const CHECK_INTERVAL_MS = 200;

/** Removes an element after xterm.js has drawn the next frame, so a confirmed glyph never blinks. */
function afterNextFrame(fn: () => void): void {
  window.requestAnimationFrame(() => fn());
}

function screenOf(term: Terminal): ScreenView {
  const cursorLine = () => term.buffer.active.baseY + term.buffer.active.cursorY;
  return {
    cols: () => term.cols,
    altScreen: () => term.buffer.active.type === 'alternate',
    cursor: () => ({ col: term.buffer.active.cursorX, line: cursorLine() }),
    anchor: (line): LineAnchor => {
      const marker = term.registerMarker(line - cursorLine());
      return {
        get line() {
          return marker.line;
        },
        dispose: () => marker.dispose(),
      };
    },
    cell: (line, col) => term.buffer.active.getLine(line)?.getCell(col)?.getChars() ?? '',
  };
}

class DecorationOverlay implements PredictionOverlay {
  private readonly shown = new Map<Prediction, { marker: IMarker; deco: IDecoration | undefined }>();
  private cursor: { marker: IMarker; deco: IDecoration | undefined } | null = null;

  constructor(private readonly term: Terminal) {}

  show(p: Prediction): void {
    this.shown.set(p, this.draw(p.anchor.line, p.col, (el) => this.paintGlyph(el, p.ch)));
  }

  hide(p: Prediction): void {
    const d = this.shown.get(p);
    this.shown.delete(p);
    if (d) afterNextFrame(() => d.marker.dispose());
  }

  cursorAfter(p: Prediction | null): void {
    const old = this.cursor;
    this.cursor = null;
    if (old) afterNextFrame(() => old.marker.dispose());
    if (p === null || nextCol(p) >= this.term.cols) return;
    this.cursor = this.draw(p.anchor.line, nextCol(p), (el) => this.paintCursor(el));
  }

  /** A one-cell decoration on its own marker (so it goes independently of the prediction's). */
  private draw(line: number, col: number, paint: (el: HTMLElement) => void): { marker: IMarker; deco: IDecoration | undefined } {
    const b = this.term.buffer.active;
    const marker = this.term.registerMarker(line - (b.baseY + b.cursorY));
    const deco = this.term.registerDecoration({ marker, x: col, width: 1, layer: 'top' });
    deco?.onRender(paint);
    return { marker, deco };
  }

  private paintGlyph(el: HTMLElement, ch: string): void {
    const theme = this.term.options.theme ?? {};
    el.classList.add('termpool-prediction');
    el.textContent = ch; // text, never markup
    el.style.fontFamily = this.term.options.fontFamily ?? 'monospace';
    el.style.fontSize = `${this.term.options.fontSize ?? 14}px`;
    el.style.color = theme.foreground ?? '';
    el.style.backgroundColor = theme.background ?? '';
  }

  private paintCursor(el: HTMLElement): void {
    el.classList.add('termpool-prediction-cursor');
    el.style.backgroundColor = this.term.options.theme?.cursor ?? '';
  }
}

/** The page's predictive echo: feed it typed keys, parsed output and round trips. */
export class TerminalPredictor {
  readonly engine: Predictor;
  private timer: number | undefined;

  constructor(term: Terminal, mode: PredictMode) {
    this.engine = new Predictor(screenOf(term), new DecorationOverlay(term), mode);
    // Positions are void once the screen changes size or switches buffer.
    term.onResize(() => this.reset());
    term.buffer.onBufferChange(() => this.reset());
  }

  /** Keys that went out to the server. */
  typed(data: string): void {
    this.engine.input(data);
    this.schedule();
  }

  /** Output was parsed into the buffer. */
  parsed(): void {
    this.engine.check();
  }

  roundTrip(ms: number): void {
    this.engine.roundTrip(ms);
  }

  reset(): void {
    this.engine.reset();
  }

  private schedule(): void {
    if (this.timer !== undefined || !this.engine.hasPending) return;
    this.timer = window.setTimeout(() => {
      this.timer = undefined;
      this.engine.check();
      this.schedule();
    }, CHECK_INTERVAL_MS);
  }
}
