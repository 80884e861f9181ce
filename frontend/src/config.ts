// Page settings read from the URL query string, and the WebSocket address derived from the page's.

import type { PredictMode } from './predict';

export type ThemeName = 'dark' | 'light';
export type RendererName = 'webgl' | 'dom';

export interface PageConfig {
  fontSize: number;
  fontFamily: string;
  theme: ThemeName;
  renderer: RendererName;
  /** `predict` of the URL, null when absent or not one of auto|on|off. */
  predict: PredictMode | null;
}

export const DEFAULT_FONT_SIZE = 14;
export const MIN_FONT_SIZE = 6;
export const MAX_FONT_SIZE = 72;
export const DEFAULT_FONT_FAMILY =
  '"DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, "Liberation Mono", monospace';

/** Reads `fontSize` (clamped to 6..72), `theme` (dark|light), `fontFamily`, `renderer` (webgl|dom), `predict`. */
export function parseConfig(search: string): PageConfig {
  const q = new URLSearchParams(search);
  let fontSize = DEFAULT_FONT_SIZE;
  const rawSize = q.get('fontSize');
  if (rawSize !== null && rawSize.trim() !== '') {
    const n = Number(rawSize);
    if (Number.isFinite(n)) fontSize = Math.min(MAX_FONT_SIZE, Math.max(MIN_FONT_SIZE, n));
  }
  const theme: ThemeName = q.get('theme') === 'light' ? 'light' : 'dark';
  const renderer: RendererName = q.get('renderer') === 'dom' ? 'dom' : 'webgl';
  let fontFamily = DEFAULT_FONT_FAMILY;
  const rawFamily = q.get('fontFamily');
  if (rawFamily !== null) {
    // xterm.js puts this into a canvas font and a stylesheet: only plain family names get
    // through (quotes, comments or escapes would change the CSS around it), each quoted by us.
    const families = rawFamily
      .split(',')
      .map((f) => f.trim().replace(/^(["'])(.*)\1$/, '$2'))
      .filter((f) => /^[A-Za-z0-9 _-]{1,64}$/.test(f))
      .slice(0, 8);
    if (families.length > 0) fontFamily = `${families.map((f) => `"${f}"`).join(', ')}, monospace`;
  }
  return { fontSize, fontFamily, theme, renderer, predict: parsePredictMode(q.get('predict')) };
}

function parsePredictMode(v: string | null): PredictMode | null {
  return v === 'auto' || v === 'on' || v === 'off' ? v : null;
}

/** Where the predictive-echo setting is remembered across visits. */
export const PREDICT_STORAGE_KEY = 'termpool.predict';

/**
 * The predictive-echo setting: the URL's wins and is remembered, else the remembered one, else
 * `auto`. `storage` is localStorage, null (or throwing) where the browser denies it.
 */
export function predictSetting(fromUrl: PredictMode | null, storage: Pick<Storage, 'getItem' | 'setItem'> | null): PredictMode {
  try {
    if (fromUrl !== null) {
      storage?.setItem(PREDICT_STORAGE_KEY, fromUrl);
      return fromUrl;
    }
    return parsePredictMode(storage?.getItem(PREDICT_STORAGE_KEY) ?? null) ?? 'auto';
  } catch {
    return fromUrl ?? 'auto';
  }
}

/** The largest terminal the server accepts, in columns and in rows (docs/protocol.md). */
export const MAX_TERMINAL_DIM = 1000;

/**
 * The size to ask the server for: a huge window with a tiny font can lay out more than the
 * server accepts, which it would refuse (and the TTY would stay at its old size).
 */
export function clampSize(size: { cols: number; rows: number }): { cols: number; rows: number } {
  const clamp = (n: number) => Math.min(MAX_TERMINAL_DIM, Math.max(1, Math.floor(n) || 1));
  return { cols: clamp(size.cols), rows: clamp(size.rows) };
}

/**
 * The page at `/` talks to `/ws`, the page at `/container-terminal` to `/container-terminal/ws`:
 * the socket lives under whatever path the page was served from.
 */
export function basePath(pathname: string): string {
  let p = pathname.replace(/\/index\.html$/, '');
  p = p.replace(/\/+$/, '');
  return p;
}

export function wsUrl(
  loc: { protocol: string; host: string; pathname: string },
  params: { cols: number; rows: number; session?: string | null },
): string {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = new URLSearchParams();
  q.set('cols', String(params.cols));
  q.set('rows', String(params.rows));
  if (params.session) q.set('session', params.session);
  return `${scheme}//${loc.host}${basePath(loc.pathname)}/ws?${q.toString()}`;
}

/** The same endpoint over plain HTTP, used only to learn why an upgrade was refused. */
export function httpProbeUrl(loc: { protocol: string; host: string; pathname: string }): string {
  return `${loc.protocol}//${loc.host}${basePath(loc.pathname)}/ws`;
}
