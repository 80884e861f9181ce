// The find box over the terminal (Ctrl+Shift+F): incremental search through the scrollback.

import type { Terminal } from '@xterm/xterm';
import type { SearchAddon } from '@xterm/addon-search';

export class SearchBox {
  constructor(
    private readonly term: Terminal,
    private readonly search: SearchAddon,
    private readonly box: HTMLElement,
    private readonly input: HTMLInputElement,
  ) {
    input.addEventListener('input', () => {
      if (input.value) search.findNext(input.value, { incremental: true });
      else term.clearSelection();
    });
    input.addEventListener('keydown', (ev) => this.onKey(ev));
  }

  /** Shows the box, primed with the selection when it is one line. */
  open(): void {
    this.box.hidden = false;
    const sel = this.term.getSelection();
    if (sel && !sel.includes('\n')) this.input.value = sel;
    this.input.focus();
    this.input.select();
  }

  close(): void {
    this.box.hidden = true;
    this.search.clearDecorations();
    this.term.focus();
  }

  private onKey(ev: KeyboardEvent): void {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      this.close();
    } else if (ev.key === 'Enter') {
      ev.preventDefault();
      const text = this.input.value;
      if (!text) return;
      if (ev.shiftKey) this.search.findPrevious(text);
      else this.search.findNext(text);
    }
  }
}
