// Builds the GraphiQL page's assets into internal/graphiql/assets, where the Go binary embeds them:
//   npm ci && npm run build
// The output depends only on package-lock.json and src/, so a rebuild gives the same bytes; the
// built files are committed, so `go build` needs no npm. THIRD_PARTY_LICENSES.txt lists every
// package in the bundle with its version and license text.
import { build } from 'esbuild';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', '..', 'internal', 'graphiql', 'assets');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: [join(here, 'src', 'main.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  outdir: out,
  entryNames: 'graphiql',
  loader: { '.woff2': 'dataurl', '.woff': 'dataurl', '.ttf': 'dataurl', '.svg': 'dataurl', '.png': 'dataurl' },
  define: { 'process.env.NODE_ENV': '"production"' },
  legalComments: 'none', // the licenses go to THIRD_PARTY_LICENSES.txt instead
  charset: 'utf8',
  metafile: true,
  logLevel: 'info',
});

// Packages that ship no license file, and the package of the same repository and license whose
// license file covers them.
const licenseFrom = {
  // facebook/react, compiler/packages/react-compiler-runtime: MIT, as react itself.
  'react-compiler-runtime': 'react',
  // graphql/graphiql, packages/graphiql-plugin-*: MIT, as graphiql itself.
  '@graphiql/plugin-doc-explorer': 'graphiql',
  '@graphiql/plugin-history': 'graphiql',
  // theKashey's react-remove-scroll family: MIT, Anton Korzunov, as react-remove-scroll.
  'react-remove-scroll-bar': 'react-remove-scroll',
};

// The MIT terms, for a package that declares MIT in package.json but ships no license file and has
// no sibling that does; its author, as package.json names them, is the copyright holder.
const mit = (holder) => `MIT License

Copyright (c) ${holder}

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.`;

// Every package the bundle took code from, found by walking up from each input file to its
// package.json (scoped and nested node_modules included).
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const i = input.lastIndexOf('node_modules/');
  if (i < 0) continue;
  const rest = input.slice(i + 'node_modules/'.length).split('/');
  const name = rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  const dir = join(here, input.slice(0, i), 'node_modules', name);
  if (packages.has(dir)) continue;
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const licenseDir = licenseFrom[name] ? join(here, 'node_modules', licenseFrom[name]) : dir;
  const file = readdirSync(licenseDir).find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
  let text;
  if (file) {
    text = readFileSync(join(licenseDir, file), 'utf8').trim();
    if (licenseDir !== dir) text = `(${name} ships no license file; ${licenseFrom[name]}, of the same author and license, does:)\n\n${text}`;
  } else if (pkg.license === 'MIT' && pkg.author) {
    const author = typeof pkg.author === 'string' ? pkg.author : pkg.author.name;
    text = `(${name} declares MIT in its package.json and ships no license file; the MIT terms, with its author:)\n\n${mit(author)}`;
  } else {
    throw new Error(`${name}@${pkg.version} ships no license file; name the package whose license covers it in licenseFrom`);
  }
  packages.set(dir, { name, version: pkg.version, license: pkg.license, text });
}
const list = [...packages.values()].sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
let text = 'Third-party software in the GraphiQL page Taskgraph serves (internal/graphiql/assets/graphiql.js and graphiql.css).\n' +
  'Built with esbuild from clients/graphiql (package.json, package-lock.json).\n\n';
text += list.map((p) => `- ${p.name} ${p.version} (${p.license})`).join('\n') + '\n';
for (const p of list) {
  text += `\n${'='.repeat(78)}\n${p.name} ${p.version}\n${'='.repeat(78)}\n\n${p.text}\n`;
}
writeFileSync(join(out, 'THIRD_PARTY_LICENSES.txt'), text);
for (const f of ['graphiql.js', 'graphiql.css']) {
  if (!existsSync(join(out, f))) throw new Error(`esbuild wrote no ${f}`);
}
console.log(`bundled ${list.length} packages; licenses in ${join(out, 'THIRD_PARTY_LICENSES.txt')}`);
