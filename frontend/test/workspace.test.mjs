// Unit tests of the workspace parts' pure logic: OSC 52 and OSC 1337 decoding, the key bar's
// modifiers, stored settings against URL parameters, API error text, session links.
//   cd frontend && npm ci && node --test test/

import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const mods = {};
const names = ['clipboard', 'download', 'keybar', 'settings', 'api', 'upload', 'sessions', 'account', 'config'];

before(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'termpool-unit-ws-'));
  try {
    await esbuild.build({
      absWorkingDir: root,
      entryPoints: Object.fromEntries(names.map((n) => [n, `src/${n}.ts`])),
      outdir: dir,
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      outExtension: { '.js': '.mjs' },
      logLevel: 'error',
    });
    for (const n of names) mods[n] = await import(pathToFileURL(path.join(dir, `${n}.mjs`)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const b64 = (s) => Buffer.from(s).toString('base64');

test('OSC 52: writes decode as UTF-8, reads and bad payloads are refused', () => {
  const { osc52Text } = mods.clipboard;
  assert.equal(osc52Text(`c;${b64('hello')}`), 'hello');
  assert.equal(osc52Text(`;${b64('héllo ✓')}`), 'héllo ✓');
  assert.equal(osc52Text('c;?'), null, 'a read is never answered');
  assert.equal(osc52Text('c;not base64!'), null);
  assert.equal(osc52Text('nothing'), null);
  assert.equal(osc52Text('c;'), '', 'an empty write clears');
});

test('OSC 1337 File=: name, size and contents; other commands are not ours', () => {
  const { parseFileTransfer, plainName } = mods.download;
  const body = Buffer.from([0, 1, 2, 255, 10, 13]);
  const ok = parseFileTransfer(`File=name=${b64('dir/a b.bin')};size=6;inline=0:${body.toString('base64')}`);
  assert.equal(ok.name, 'a b.bin', 'only the last path component');
  assert.deepEqual(Buffer.from(ok.bytes), body);
  assert.equal(parseFileTransfer('SetMark'), null);
  assert.ok('error' in parseFileTransfer(`File=name=${b64('x')};size=7:${body.toString('base64')}`), 'size mismatch');
  assert.ok('error' in parseFileTransfer(`File=name=${b64('x')};size=1:@@@`), 'bad base64');
  assert.ok('error' in parseFileTransfer(`File=name=${b64('x')};size=1`), 'no contents');
  assert.equal(parseFileTransfer(`File=size=0;inline=0:`).name, 'download', 'no name');
  assert.equal(plainName('..'), 'download');
  assert.equal(plainName('a\x1b[31mb\x07'), 'a[31mb', 'control characters dropped');
  assert.equal(plainName('x'.repeat(300)).length, 255);
});

test('key bar: sticky Ctrl makes control codes, Alt prefixes ESC', () => {
  const { applyModifiers } = mods.keybar;
  const k = (s) => new TextEncoder().encode(s);
  const none = { ctrl: false, alt: false };
  assert.deepEqual([...applyModifiers(k('c'), { ...none, ctrl: true })], [3]);
  assert.deepEqual([...applyModifiers(k('C'), { ...none, ctrl: true })], [3]);
  assert.deepEqual([...applyModifiers(k('['), { ...none, ctrl: true })], [0x1b]);
  assert.deepEqual([...applyModifiers(k(' '), { ...none, ctrl: true })], [0]);
  assert.deepEqual([...applyModifiers(k('?'), { ...none, ctrl: true })], [0x7f]);
  assert.deepEqual([...applyModifiers(k('x'), { ...none, alt: true })], [0x1b, 0x78]);
  assert.deepEqual([...applyModifiers(k('d'), { ctrl: true, alt: true })], [0x1b, 4]);
  assert.deepEqual([...applyModifiers(k('\x1b[A'), { ...none, ctrl: true })], [...k('\x1b[A')], 'arrows pass');
  assert.deepEqual([...applyModifiers(k('ab'), none)], [...k('ab')]);
});

test('settings: stored values apply unless the URL gives them; bad stored values are ignored', () => {
  const { readStored, effectiveSettings, saveSettings } = mods.settings;
  const { parseConfig } = mods.config;
  const mem = () => {
    const m = new Map();
    return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), m };
  };
  const store = mem();
  saveSettings(store, { fontSize: 20, theme: 'light', copyOnSelect: true, predict: 'off' });
  const stored = readStored(store);
  assert.deepEqual(stored, { fontSize: 20, theme: 'light', copyOnSelect: true, predict: 'off' });
  assert.equal(store.m.get('termpool.predict'), 'off', 'predict kept where the predictive echo reads it');
  assert.deepEqual(effectiveSettings(parseConfig(''), '', stored), { fontSize: 20, theme: 'light', copyOnSelect: true, predict: 'off' });
  const urlWins = effectiveSettings(parseConfig('?fontSize=9&theme=dark'), '?fontSize=9&theme=dark', stored);
  assert.equal(urlWins.fontSize, 9);
  assert.equal(urlWins.theme, 'dark');
  const bad = mem();
  bad.setItem('termpool.settings', '{"fontSize":1e9,"theme":"neon","copyOnSelect":"yes"}');
  assert.deepEqual(readStored(bad), {});
  bad.setItem('termpool.settings', 'not json');
  assert.deepEqual(readStored(bad), {});
  assert.deepEqual(effectiveSettings(parseConfig(''), '', {}), { fontSize: 14, theme: 'dark', copyOnSelect: false, predict: 'auto' });
});

test('API paths follow the base path; errors read the server text', () => {
  const { apiUrl, errorText } = mods.api;
  assert.equal(apiUrl('/', 'sessions'), '/api/sessions');
  assert.equal(apiUrl('/terminal/', 'whoami'), '/terminal/api/whoami');
  assert.equal(apiUrl('/container-terminal', 'upload'), '/api/upload');
  assert.equal(apiUrl('/terminal/container-terminal/', 'sessions'), '/terminal/api/sessions');
  assert.equal(errorText(409, '{"error":"a.txt already exists"}'), 'a.txt already exists');
  assert.equal(errorText(502, '<html>bad gateway</html>'), 'the server answered HTTP 502');
  const { uploadError } = mods.upload;
  assert.match(uploadError('big.iso', 413, '{"error":"over 100 MB"}'), /too large.*over 100 MB/);
  assert.equal(uploadError('a.txt', 409, '{"error":"a.txt already exists"}'), 'Not uploaded: a.txt already exists');
  assert.match(uploadError('a', 507, '{"error":"Disk quota exceeded"}'), /no space left: Disk quota exceeded/);
});

test('session links and ages', () => {
  const { attachUrl, sessionFromHash, ago } = mods.sessions;
  const id = '0b5f3a52-8f7e-4c1a-9d55-1f1f1f1f1f1f';
  const url = attachUrl({ pathname: '/terminal/', search: '?theme=light' }, id);
  assert.equal(url, `/terminal/?theme=light#session=${id}`);
  assert.equal(sessionFromHash(url.slice(url.indexOf('#'))), id);
  assert.equal(sessionFromHash('#session=../../x'), null);
  assert.equal(sessionFromHash(''), null);
  assert.equal(ago(1000, 1_030_000), '30 s ago');
  assert.equal(ago(1000, 1000_000 + 7200_000), '2 h ago');
});

test('account explanation says what losing the cookie means', () => {
  const { explain } = mods.account;
  assert.match(explain({ user: 'u1', mode: 'cookie', access_key: false }), /cookie.*access key.*new empty account/);
  assert.match(explain({ user: 'u1', mode: 'token', access_key: false }), /token/);
});
