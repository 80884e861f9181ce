// Predictive local echo on slow links, after mosh: typed characters shown at once as an overlay
// and checked against the server's echo in their cell. Pure logic: the terminal and the overlay
// are behind `ScreenView` and `PredictionOverlay` (predict-xterm.ts binds them to xterm.js).

export type PredictMode = 'auto' | 'on' | 'off';

/** In `auto` mode predictions are shown from this smoothed round trip up... */
export const PREDICT_ON_RTT_MS = 30;
/** ...and stop again below this one (the gap keeps a jittery link from flapping). */
export const PREDICT_OFF_RTT_MS = 20;
/** An unconfirmed prediction is given up after this long, or three round trips if longer. */
export const MIN_CONFIRM_TIMEOUT_MS = 1000;

/** A line of the terminal that follows scrolling and trimming (an xterm.js marker); -1 once gone. */
export interface LineAnchor {
  readonly line: number;
  dispose(): void;
}

/** What the predictor reads of the terminal; lines count from the top of the scrollback. */
export interface ScreenView {
  cols(): number;
  altScreen(): boolean;
  cursor(): { col: number; line: number };
  anchor(line: number): LineAnchor;
  /** The character in a cell, '' when blank. */
  cell(line: number, col: number): string;
}

export interface Prediction {
  /** The character expected in the cell; '' for a Backspace, which expects the cell blank. */
  readonly ch: string;
  readonly erase: boolean;
  readonly col: number;
  readonly anchor: LineAnchor;
  readonly epoch: number;
  readonly at: number;
  shown: boolean;
}

/** Draws predictions over the terminal, never into its buffer. */
export interface PredictionOverlay {
  show(p: Prediction): void;
  hide(p: Prediction): void;
  /** Where the cursor will be: after `p` (see `nextCol`), or nowhere (null) when nothing is shown. */
  cursorAfter(p: Prediction | null): void;
}

export interface PredictStats {
  /** Keys predicted (shown or not). */
  predicted: number;
  /** Predictions drawn on screen. */
  shown: number;
  confirmed: number;
  /** Predictions the server did not echo as predicted... */
  wrong: number;
  /** ...and those of them that had been drawn (then removed). */
  shownWrong: number;
}

type Verdict = 'confirmed' | 'wrong' | 'pending';

/**
 * Predictions of one epoch are shown only once one of them was confirmed. A new epoch starts with
 * every key that is neither printable nor a Backspace over keys just typed (Enter, arrows, control
 * keys), with a misprediction and with a reset (resize, new socket, alternate screen): after
 * those the page waits for one confirmed echo before it shows guesses again, so an echo-less
 * prompt shows nothing.
 */
export class Predictor {
  readonly stats: PredictStats = { predicted: 0, shown: 0, confirmed: 0, wrong: 0, shownWrong: 0 };
  private active = false;
  private srtt: number | null = null;
  private epoch = 1;
  private confirmedEpoch = 0;
  private pending: Prediction[] = [];
  /** Keys went out that were not predicted: positions are unknown until older predictions resolve. */
  private unplaced = false;
  /** Where the keys typed since the last interruption began: Backspace never erases before it. */
  private runStart: { anchor: LineAnchor; col: number } | null = null;

  constructor(
    private readonly screen: ScreenView,
    private readonly overlay: PredictionOverlay,
    private mode: PredictMode,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.updateActive();
  }

  /** Whether keys are being predicted now (the mode, and in `auto` the round trip). */
  get enabled(): boolean {
    return this.active;
  }

  get smoothedRtt(): number | null {
    return this.srtt;
  }

  get currentMode(): PredictMode {
    return this.mode;
  }

  get hasPending(): boolean {
    return this.pending.length > 0;
  }

  setMode(mode: PredictMode): void {
    this.mode = mode;
    this.updateActive();
  }

  /** A measured round trip (ping to pong), smoothed like TCP's SRTT. */
  roundTrip(ms: number): void {
    this.srtt = this.srtt === null ? ms : (7 * this.srtt + ms) / 8;
    this.updateActive();
  }

  /** Keys typed (xterm.js `onData`) that went out to the server. */
  input(data: string): void {
    if (!this.active) return;
    if (this.screen.altScreen()) {
      this.reset();
      return;
    }
    const placed = data === BACKSPACE ? this.erase() : isPrintable(data) && this.predict(data);
    if (!placed) this.interrupt();
  }

  /** Compares predictions with the screen: after output was parsed, and on a timer while pending. */
  check(): void {
    if (this.pending.length === 0) return;
    if (this.screen.altScreen()) {
      this.reset();
      return;
    }
    const cursor = this.screen.cursor();
    const timeout = Math.max(MIN_CONFIRM_TIMEOUT_MS, 3 * (this.srtt ?? 0));
    const now = this.now();
    // In typing order: a guess is judged only once every earlier one was confirmed.
    const queue = [...this.pending];
    for (let i = 0; i < queue.length; i++) {
      const verdict = judge(this.screen, queue, i, cursor, now - queue[i].at > timeout);
      if (verdict === 'pending') break;
      if (verdict === 'wrong') {
        this.mispredicted(queue[i]);
        break;
      }
      this.confirm(queue[i]);
    }
    this.syncCursor();
  }

  /** Forgets every prediction and starts a new epoch (resize, new socket, alternate screen). */
  reset(): void {
    this.dropAll();
    this.epoch += 1;
  }

  private updateActive(): void {
    const rtt = this.srtt;
    const slow = rtt !== null && rtt >= (this.active ? PREDICT_OFF_RTT_MS : PREDICT_ON_RTT_MS);
    const on = this.mode === 'on' || (this.mode === 'auto' && slow);
    if (on === this.active) return;
    this.active = on;
    this.reset();
  }

  /** Places a prediction for `ch`; false when its cell is not known to be free. */
  private predict(ch: string): boolean {
    if (this.unplaced && this.pending.length > 0) return false;
    this.unplaced = false;
    const at = this.predictedCursor();
    if (at.line < 0 || at.col >= this.screen.cols() || !this.blankFrom(at.line, at.col)) return false;
    if (this.runStart === null) this.runStart = { anchor: this.screen.anchor(at.line), col: at.col };
    this.place(ch, at, false);
    return true;
  }

  /** Predicts a Backspace at the end of the line: only over keys typed in this run. */
  private erase(): boolean {
    const run = this.runStart;
    if (run === null || (this.unplaced && this.pending.length > 0)) return false;
    const at = this.predictedCursor();
    if (at.line !== run.anchor.line || at.col - 1 < run.col) return false;
    this.place('', { line: at.line, col: at.col - 1 }, true);
    return true;
  }

  private place(ch: string, at: { line: number; col: number }, erase: boolean): void {
    const anchor = this.screen.anchor(at.line);
    const p: Prediction = { ch, erase, col: at.col, anchor, epoch: this.epoch, at: this.now(), shown: false };
    this.pending.push(p);
    this.stats.predicted += 1;
    if (p.epoch <= this.confirmedEpoch) this.show(p);
    this.syncCursor();
  }

  /** Where the cursor will be once the server has echoed every pending prediction. */
  private predictedCursor(): { line: number; col: number } {
    const last = this.pending[this.pending.length - 1];
    return last ? { line: last.anchor.line, col: nextCol(last) } : this.screen.cursor();
  }

  /**
   * Nothing but blanks (spaces look the same) from `col` to the end of the row, once the pending
   * Backspaces have erased their cells (which may still show what they erase).
   */
  private blankFrom(line: number, col: number): boolean {
    const erased = new Set(this.pending.filter((p) => p.erase && p.anchor.line === line).map((p) => p.col));
    for (let x = col; x < this.screen.cols(); x++) {
      const c = this.screen.cell(line, x);
      if (c !== '' && c !== ' ' && !erased.has(x)) return false;
    }
    return true;
  }

  /** A key that is not predicted: later keys may land anywhere until the server shows where. */
  private interrupt(): void {
    this.epoch += 1;
    this.unplaced = true;
    this.endRun();
  }

  private endRun(): void {
    this.runStart?.anchor.dispose();
    this.runStart = null;
  }

  private show(p: Prediction): void {
    p.shown = true;
    this.stats.shown += 1;
    this.overlay.show(p);
  }

  private confirm(p: Prediction): void {
    this.remove(p);
    this.stats.confirmed += 1;
    if (p.epoch <= this.confirmedEpoch) return;
    this.confirmedEpoch = p.epoch;
    for (const q of this.pending) {
      if (!q.shown && q.epoch <= this.confirmedEpoch) this.show(q);
    }
  }

  /** Every later prediction was placed after this one: all of them go, and guessing stops. */
  private mispredicted(p: Prediction): void {
    this.stats.wrong += 1;
    if (p.shown) this.stats.shownWrong += 1;
    this.reset();
  }

  private remove(p: Prediction): void {
    this.pending = this.pending.filter((q) => q !== p);
    if (p.shown) this.overlay.hide(p);
    p.anchor.dispose();
  }

  private dropAll(): void {
    for (const p of this.pending) {
      if (p.shown) this.overlay.hide(p);
      p.anchor.dispose();
    }
    this.pending = [];
    this.unplaced = false;
    this.endRun();
    this.overlay.cursorAfter(null);
  }

  private syncCursor(): void {
    const shown = this.pending.filter((p) => p.shown);
    this.overlay.cursorAfter(shown.length > 0 ? shown[shown.length - 1] : null);
  }
}

/** What xterm.js sends for the Backspace key. */
const BACKSPACE = '\x7f';

/** The column of the cursor once `p` was echoed. */
export function nextCol(p: Prediction): number {
  return p.erase ? p.col : p.col + 1;
}

/** A single printable ASCII character: the keys whose echo a shell prompt can be expected to make. */
export function isPrintable(data: string): boolean {
  if (data.length !== 1) return false;
  const c = data.charCodeAt(0);
  return c >= 0x20 && c < 0x7f;
}

/**
 * A character is confirmed when its cell shows it; wrong when the cell shows another one, when
 * the cursor went past the cell or to another line without writing it, or after the timeout.
 * A Backspace is confirmed when its cell is blank with the cursor back on it. When later keys
 * in the same cell came in the same piece of output, the cell shows the last of them: a key (or
 * Backspace) is confirmed too when its cell shows a key typed there after it.
 */
function judge(screen: ScreenView, queue: Prediction[], i: number, cursor: { col: number; line: number }, expired: boolean): Verdict {
  const p = queue[i];
  const line = p.anchor.line;
  if (line < 0) return 'wrong';
  const got = screen.cell(line, p.col);
  // A space and an empty cell look the same: erasing may write either.
  const blank = got === '' || got === ' ';
  if (p.erase ? cursor.line === line && blank && cursor.col <= p.col : got === p.ch) return 'confirmed';
  // Only a character is evidence: a blank cell is also what a key not yet echoed leaves.
  const later = queue.find((q, j) => j > i && !q.erase && q.col === p.col && q.anchor.line === line);
  if (later !== undefined && got === later.ch) return 'confirmed';
  if (expired || cursor.line !== line) return 'wrong';
  if (p.erase) return cursor.col > p.col + 1 ? 'wrong' : 'pending';
  return !blank || cursor.col > p.col ? 'wrong' : 'pending';
}
