// The small menus over the terminal (sessions, account, settings): one open at a time, closed
// by Escape or their close button, built from text nodes only (never markup from the server).

type Child = Node | string | null | undefined | false;

/** Creates an element with attributes, `on<event>` listeners and children (strings become text). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | ((ev: Event) => void)> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (typeof v === 'boolean') {
      if (v) el.setAttribute(k, '');
    } else el.setAttribute(k, v);
  }
  for (const c of children) if (c) el.append(c);
  return el;
}

let openPanel: Panel | null = null;

/** One menu: `render` fills it each time it opens. */
export class Panel {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;

  constructor(
    id: string,
    title: string,
    parent: HTMLElement,
    private readonly render: (body: HTMLElement) => void,
    private readonly onClose: () => void,
  ) {
    this.body = h('div', { class: 'panel-body' });
    this.el = h(
      'section',
      { id, class: 'panel', role: 'dialog', 'aria-label': title, hidden: true },
      h('header', {}, h('span', {}, title), h('button', { type: 'button', class: 'panel-close', title: 'Close', onclick: () => this.close() }, '×')),
      this.body,
    );
    this.el.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') this.close();
    });
    parent.appendChild(this.el);
  }

  get isOpen(): boolean {
    return !this.el.hidden;
  }

  open(): void {
    if (openPanel && openPanel !== this) openPanel.close();
    openPanel = this;
    this.refresh();
    this.el.hidden = false;
  }

  toggle(): void {
    if (this.isOpen) this.close();
    else this.open();
  }

  refresh(): void {
    this.body.replaceChildren();
    this.render(this.body);
  }

  close(): void {
    if (this.el.hidden) return;
    this.el.hidden = true;
    if (openPanel === this) openPanel = null;
    this.onClose();
  }
}
