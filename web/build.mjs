// Builds the console into internal/console/dist: one JS bundle and one CSS
// file with content hashes in their names (served as immutable), and
// index.html naming them. Run by `go generate ./internal/console` or
// `npm run build` here; the output is committed.
import { build } from 'esbuild'
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
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
console.log(`console built into ${out}: ${sizes.join(', ')}`)
