// The reader's own settings (font size, theme, copy-on-select, predictive echo), kept in
// localStorage; URL parameters still win over them for the page they are given to.

import { MAX_FONT_SIZE, MIN_FONT_SIZE, PREDICT_STORAGE_KEY, type PageConfig, type ThemeName } from './config';

export type PredictChoice = 'auto' | 'on' | 'off';

export interface Settings {
  fontSize: number;
  theme: ThemeName;
  copyOnSelect: boolean;
  predict: PredictChoice;
}

export const SETTINGS_KEY = 'termpool.settings';
/** The predictive-echo setting keeps the key config.ts reads it from. */
const PREDICT_KEY = PREDICT_STORAGE_KEY;

type Store = Pick<Storage, 'getItem' | 'setItem'>;

/** The stored settings, each field checked; anything missing or bad is left out. */
export function readStored(store: Store | null): Partial<Settings> {
  const out: Partial<Settings> = {};
  let raw: Record<string, unknown> = {};
  try {
    raw = JSON.parse(store?.getItem(SETTINGS_KEY) ?? '{}') ?? {};
  } catch {
    /* corrupt: ignore it */
  }
  if (typeof raw.fontSize === 'number' && raw.fontSize >= MIN_FONT_SIZE && raw.fontSize <= MAX_FONT_SIZE) out.fontSize = raw.fontSize;
  if (raw.theme === 'dark' || raw.theme === 'light') out.theme = raw.theme;
  if (typeof raw.copyOnSelect === 'boolean') out.copyOnSelect = raw.copyOnSelect;
  const predict = store?.getItem(PREDICT_KEY);
  if (predict === 'auto' || predict === 'on' || predict === 'off') out.predict = predict;
  return out;
}

/** The page's settings: the URL's `fontSize`/`theme` when given, else the stored ones, else `cfg`'s defaults. */
export function effectiveSettings(cfg: PageConfig, search: string, stored: Partial<Settings>): Settings {
  const q = new URLSearchParams(search);
  const fromUrl = (name: string) => (q.get(name) ?? '').trim() !== '';
  return {
    fontSize: fromUrl('fontSize') ? cfg.fontSize : (stored.fontSize ?? cfg.fontSize),
    theme: fromUrl('theme') ? cfg.theme : (stored.theme ?? cfg.theme),
    copyOnSelect: stored.copyOnSelect ?? false,
    predict: stored.predict ?? 'auto',
  };
}

export function saveSettings(store: Store | null, s: Settings): void {
  try {
    store?.setItem(SETTINGS_KEY, JSON.stringify({ fontSize: s.fontSize, theme: s.theme, copyOnSelect: s.copyOnSelect }));
    store?.setItem(PREDICT_KEY, s.predict);
  } catch {
    /* storage full or denied: the settings hold for this page only */
  }
}

export function localStore(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null; // denied (e.g. a third-party frame with storage blocked)
  }
}
