// The terminal's colours for the page's two themes (the page's own colours are in style.css).

import type { ITheme } from '@xterm/xterm';
import type { ThemeName } from './config';

const DARK: ITheme = {
  background: '#1b1d23',
  foreground: '#d8dee9',
  cursor: '#d8dee9',
  cursorAccent: '#1b1d23',
  selectionBackground: '#4c566a',
  black: '#2e3440',
  red: '#e06c75',
  green: '#98c379',
  yellow: '#e5c07b',
  blue: '#61afef',
  magenta: '#c678dd',
  cyan: '#56b6c2',
  white: '#d8dee9',
  brightBlack: '#6b7384',
  brightRed: '#ff7a85',
  brightGreen: '#b5e890',
  brightYellow: '#ffd68a',
  brightBlue: '#81c1ff',
  brightMagenta: '#de9bf0',
  brightCyan: '#7fd3dd',
  brightWhite: '#ffffff',
};

const LIGHT: ITheme = {
  background: '#fbfbfa',
  foreground: '#24292f',
  cursor: '#24292f',
  cursorAccent: '#fbfbfa',
  selectionBackground: '#b6d4fe',
  black: '#24292f',
  red: '#c0262d',
  green: '#1a7f37',
  yellow: '#8a6100',
  blue: '#0550ae',
  magenta: '#8250df',
  cyan: '#1b7c83',
  white: '#6e7781',
  brightBlack: '#57606a',
  brightRed: '#d43f3a',
  brightGreen: '#2da44e',
  brightYellow: '#9a6f00',
  brightBlue: '#218bff',
  brightMagenta: '#a475f9',
  brightCyan: '#3192aa',
  brightWhite: '#8c959f',
};

export function terminalTheme(name: ThemeName): ITheme {
  return name === 'light' ? LIGHT : DARK;
}
