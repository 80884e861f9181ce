// Builds the terminal page into dist/: index.html, assets/app.js, assets/app.css.
//
//   node build.mjs            production build (minified)
//   node build.mjs --dev      unminified, with inline source maps
//   node build.mjs --out DIR  write somewhere else than ./dist
//
// The Rust build (build.rs) runs this and embeds every file of the output directory.

import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const dev = args.includes('--dev');
const outIdx = args.indexOf('--out');
const outDir = path.resolve(outIdx >= 0 && args[outIdx + 1] ? args[outIdx + 1] : path.join(here, 'dist'));
const assetsDir = path.join(outDir, 'assets');

await rm(outDir, { recursive: true, force: true });
await mkdir(assetsDir, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.ts' },
  outdir: assetsDir,
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  minify: !dev,
  sourcemap: dev ? 'inline' : false,
  legalComments: 'eof',
  charset: 'utf8',
  logLevel: 'warning',
  metafile: true,
  loader: { '.ttf': 'file', '.woff': 'file', '.woff2': 'file', '.svg': 'file' },
  assetNames: '[name]-[hash]',
});

const js = await readFile(path.join(assetsDir, 'app.js'));
const css = await readFile(path.join(assetsDir, 'app.css'));
const buildId = createHash('sha256').update(js).update(css).digest('hex').slice(0, 12);

const html = (await readFile(path.join(here, 'src', 'index.html'), 'utf8')).replaceAll('__BUILD_ID__', buildId);
await writeFile(path.join(outDir, 'index.html'), html);

const outputs = Object.entries(result.metafile.outputs)
  .map(([file, info]) => `${path.relative(outDir, path.resolve(here, file))} ${info.bytes}`)
  .sort();
console.log(`termpool page built into ${outDir} (build ${buildId}): index.html ${html.length}, ${outputs.join(', ')}`);
