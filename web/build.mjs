// Builds the console into internal/console/dist: one JS bundle and one CSS
// file with content hashes in their names (served as immutable), and
// index.html naming them. Run by `go generate ./internal/console` or
// `npm run build` here; the output is committed.
import { build } from 'esbuild'
import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const out = resolve(here, '..', 'internal', 'console', 'dist')
const assets = join(out, 'assets')

rmSync(out, { recursive: true, force: true })
mkdirSync(assets, { recursive: true })

const result = await build({
  entryPoints: [join(here, 'src', 'main.js')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome111', 'firefox115', 'safari16.4'],
  outdir: assets,
  entryNames: 'app-[hash]',
  assetNames: '[name]-[hash]',
  metafile: true,
  legalComments: 'eof',
  logLevel: 'warning',
})

let js = ''
let css = ''
const sizes = []
for (const [file, info] of Object.entries(result.metafile.outputs)) {
  if (file.endsWith('.js')) js = basename(file)
  if (file.endsWith('.css')) css = basename(file)
  sizes.push(`${basename(file)} ${(info.bytes / 1024).toFixed(0)} KiB`)
}

const icon = readFileSync(join(here, 'src', 'icon.svg'))
const iconName = `icon-${createHash('sha256').update(icon).digest('hex').slice(0, 8)}.svg`
writeFileSync(join(assets, iconName), icon)

const html = readFileSync(join(here, 'src', 'index.html'), 'utf8')
  .replaceAll('{{js}}', `/assets/${js}`)
  .replaceAll('{{css}}', `/assets/${css}`)
  .replaceAll('{{icon}}', `/assets/${iconName}`)
writeFileSync(join(out, 'index.html'), html)
// What the bundle was built from, so a Go test can tell a stale bundle
// (web/ edited, `make console` not run) without node: sha256 over each
// input's path and bytes, in path order. internal/console computes the same.
const inputs = ['build.mjs', 'package-lock.json']
const walk = (dir) => {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) walk(p)
    else inputs.push(relative(here, p))
  }
}
walk(join(here, 'src'))
inputs.sort()
const sum = createHash('sha256')
for (const f of inputs) sum.update(`${f}\0`).update(readFileSync(join(here, f))).update('\0')
writeFileSync(join(out, 'source.sha256'), `${sum.digest('hex')}\n`)

console.log(`console built into ${out}: ${sizes.join(', ')}`)
