// The tab's title: the one a program sets (most shell prompts do), else who and where the shell is.

import type { Terminal } from '@xterm/xterm';

export class TitleTracker {
  private fallback = document.title;
  private program = '';

  constructor(term: Terminal) {
    term.onTitleChange((title) => {
      this.program = title.slice(0, 200);
      document.title = this.program || this.fallback;
    });
  }

  /** The title shown while no program has set one. */
  setFallback(title: string): void {
    this.fallback = title;
    if (!this.program) document.title = title;
  }
}
