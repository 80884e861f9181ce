// The settings menu: font size, theme, copy-on-select and predictive echo, applied at once and
// remembered in localStorage (see settings.ts).

import type { Terminal } from '@xterm/xterm';

import { MAX_FONT_SIZE, MIN_FONT_SIZE } from './config';
import { h, Panel } from './panel';
import { localStore, saveSettings, type PredictChoice, type Settings } from './settings';
import { terminalTheme } from './theme';

/** Applies the look of `s` to the page and the terminal (the caller refits). */
export function applyLook(term: Terminal, s: Settings): void {
  document.documentElement.dataset.theme = s.theme;
  term.options.fontSize = s.fontSize;
  term.options.theme = terminalTheme(s.theme);
}

export function settingsMenu(parent: HTMLElement, term: Terminal, s: Settings, changed: () => void, close: () => void): Panel {
  const update = (patch: Partial<Settings>) => {
    Object.assign(s, patch);
    saveSettings(localStore(), s);
    applyLook(term, s);
    changed();
  };
  return new Panel('settings-panel', 'Settings', parent, (body) => {
    const size = h('input', { id: 'setting-font-size', type: 'number', min: String(MIN_FONT_SIZE), max: String(MAX_FONT_SIZE), value: String(s.fontSize) });
    size.addEventListener('change', () => {
      const n = Number(size.value);
      if (Number.isFinite(n)) update({ fontSize: Math.min(MAX_FONT_SIZE, Math.max(MIN_FONT_SIZE, Math.round(n))) });
      size.value = String(s.fontSize);
    });
    const theme = select('setting-theme', [['dark', 'Dark'], ['light', 'Light']], s.theme, (v) => update({ theme: v as Settings['theme'] }));
    const copy = h('input', { id: 'setting-copy-on-select', type: 'checkbox', checked: s.copyOnSelect });
    copy.addEventListener('change', () => update({ copyOnSelect: copy.checked }));
    const predict = select('setting-predict', [['auto', 'Auto (slow links)'], ['on', 'On'], ['off', 'Off']], s.predict, (v) => update({ predict: v as PredictChoice }));
    body.append(
      row('Font size', size),
      row('Theme', theme),
      row('Copy on select', copy),
      row('Predictive echo', predict),
      h('p', { class: 'hint' }, 'Kept in this browser. Predictive echo applies from the next page load; URL parameters (fontSize, theme) win over these.'),
    );
  }, close);
}

function row(label: string, control: HTMLElement): HTMLElement {
  return h('label', { class: 'setting' }, h('span', {}, label), control);
}

function select(id: string, options: [string, string][], value: string, onChange: (v: string) => void): HTMLSelectElement {
  const el = h('select', { id }, ...options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
  el.addEventListener('change', () => onChange(el.value));
  return el;
}
