// The key bar of touch devices: keys an on-screen keyboard lacks (Esc, Ctrl, Alt, Tab, arrows,
// | ~ / -), Ctrl and Alt sticking for the next key, and refitting when that keyboard opens.

export type Modifier = 'ctrl' | 'alt';

/** The keys of the bar: a label and the bytes it sends, or a sticky modifier. */
export const KEYS: ReadonlyArray<{ label: string; send?: string; mod?: Modifier; title: string }> = [
  { label: 'Esc', send: '\x1b', title: 'Escape' },
  { label: 'Ctrl', mod: 'ctrl', title: 'Ctrl for the next key' },
  { label: 'Alt', mod: 'alt', title: 'Alt for the next key' },
  { label: 'Tab', send: '\t', title: 'Tab' },
  { label: '←', send: '\x1b[D', title: 'Left' },
  { label: '↑', send: '\x1b[A', title: 'Up' },
  { label: '↓', send: '\x1b[B', title: 'Down' },
  { label: '→', send: '\x1b[C', title: 'Right' },
  { label: '|', send: '|', title: '|' },
  { label: '~', send: '~', title: '~' },
  { label: '/', send: '/', title: '/' },
  { label: '-', send: '-', title: '-' },
];

/**
 * Applies latched modifiers to one key's bytes: Ctrl maps a letter or one of `@[\]^_ ` and `?`
 * to its control code, Alt prefixes ESC (as xterm's meta-sends-escape does).
 */
export function applyModifiers(bytes: Uint8Array, mods: { ctrl: boolean; alt: boolean }): Uint8Array {
  let out = bytes;
  if (mods.ctrl && out.length === 1) {
    const b = out[0];
    if ((b >= 0x40 && b <= 0x5f) || (b >= 0x61 && b <= 0x7a)) out = Uint8Array.of(b & 0x1f);
    else if (b === 0x20) out = Uint8Array.of(0);
    else if (b === 0x3f) out = Uint8Array.of(0x7f);
  }
  if (mods.alt) {
    const prefixed = new Uint8Array(out.length + 1);
    prefixed[0] = 0x1b;
    prefixed.set(out, 1);
    out = prefixed;
  }
  return out;
}

/** Whether this looks like a phone or tablet (a coarse pointer or touch points, and no fine pointer). */
export function isTouchDevice(): boolean {
  const coarse = window.matchMedia?.('(pointer: coarse)').matches ?? false;
  return coarse || (navigator.maxTouchPoints > 0 && !(window.matchMedia?.('(pointer: fine)').matches ?? false));
}

export class KeyBar {
  private readonly mods = { ctrl: false, alt: false };
  private readonly buttons = new Map<Modifier, HTMLButtonElement>();
  private readonly encoder = new TextEncoder();

  /** Builds the bar into `el`; `send` takes a key's bytes (already through `filter`). */
  constructor(
    private readonly el: HTMLElement,
    private readonly send: (bytes: Uint8Array) => void,
    private readonly refocus: () => void,
  ) {
    for (const key of KEYS) el.appendChild(this.button(key));
  }

  /** Keys typed on the device's keyboard pass here: latched modifiers apply once, then release. */
  filter(bytes: Uint8Array): Uint8Array {
    if (!this.mods.ctrl && !this.mods.alt) return bytes;
    const out = applyModifiers(bytes, this.mods);
    this.release();
    return out;
  }

  show(): void {
    this.el.hidden = false;
    document.documentElement.dataset.keybar = 'on';
  }

  private button(key: (typeof KEYS)[number]): HTMLButtonElement {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = key.label;
    b.title = key.title;
    if (key.mod) {
      b.dataset.mod = key.mod;
      this.buttons.set(key.mod, b);
    }
    // Keep the focus (and the on-screen keyboard) on the terminal while tapping the bar.
    b.addEventListener('pointerdown', (ev) => ev.preventDefault());
    b.addEventListener('mousedown', (ev) => ev.preventDefault());
    b.addEventListener('click', () => {
      if (key.mod) this.toggle(key.mod);
      else if (key.send !== undefined) this.send(this.filter(this.encoder.encode(key.send)));
      this.refocus();
    });
    return b;
  }

  private toggle(mod: Modifier): void {
    this.mods[mod] = !this.mods[mod];
    this.buttons.get(mod)?.setAttribute('aria-pressed', String(this.mods[mod]));
  }

  private release(): void {
    for (const mod of ['ctrl', 'alt'] as const) {
      this.mods[mod] = false;
      this.buttons.get(mod)?.setAttribute('aria-pressed', 'false');
    }
  }
}

/**
 * Keeps the page as tall as the visual viewport, so the terminal refits above an on-screen
 * keyboard instead of being covered by it.
 */
export function followVisualViewport(onChange: () => void): void {
  const vv = window.visualViewport;
  if (!vv) return;
  const apply = () => {
    document.body.style.height = `${Math.round(vv.height)}px`;
    onChange();
  };
  vv.addEventListener('resize', apply);
  apply();
}
