#!/usr/bin/env node
// template_bench.mjs — templates as an E2B SDK user sees them: the official
// `Template` builder builds a six-layer template against `sandpit serve`
// (no warm pool), then creates alternate between `base` and the template,
// and the same build runs again from the cache.
//
//   (cd test/compat && npm ci) && make build
//   node bench/template_bench.mjs [--creates 40] [--rebuilds 10]
//
// Prints a Markdown table of p50/p95 ms.
import { createRequire } from 'node:module'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const compatDir = resolve(here, '..', 'test', 'compat')
const { startServer, useSdkEnv } = await import(pathToFileURL(join(compatDir, 'harness.mjs')))
const requireFromCompat = createRequire(join(compatDir, 'package.json'))
const { Sandbox, Template } = await import(pathToFileURL(requireFromCompat.resolve('e2b')))

const { values: opt } = parseArgs({
  options: {
    creates: { type: 'string', default: '40' },
    rebuilds: { type: 'string', default: '10' },
  },
})
const N_CREATE = Number(opt.creates)
const N_REBUILD = Number(opt.rebuilds)

function summary(ms) {
  const s = [...ms].sort((a, b) => a - b)
  const p50 = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
  const p95 = s[Math.max(0, Math.ceil(0.95 * s.length) - 1)]
  return { n: s.length, p50, p95, min: s[0], max: s.at(-1) }
}
const now = () => performance.now()

const server = await startServer({ name: 'template-bench', extraArgs: ['--warm-pool=off'] })
useSdkEnv(server)
const rows = []
const record = (name, ms, note = '') => rows.push({ name, ...summary(ms), note })
try {
  const ctx = mkdtempSync(join(tmpdir(), 'sandpit-tplbench-'))
  writeFileSync(join(ctx, 'app.py'), 'print("hello from the template")\n')
  const tpl = Template({ fileContextPath: ctx })
    .fromTemplate('base')
    .setEnvs({ APP_ENV: 'bench' })
    .runCmd('mkdir -p /opt/app && head -c 8388608 /dev/urandom > /opt/app/blob', { user: 'root' })
    .copy('app.py', '/opt/app/')
    .runCmd('python3 /opt/app/app.py > /opt/app/out.txt', { user: 'root' })
    .setWorkdir('/opt/app')
    .runCmd('echo layer-four > /opt/app/four.txt', { user: 'root' })
  const name = `bench-${Date.now()}`
  let t = now()
  const logs = []
  await Template.build(tpl, name, { onBuildLogs: (e) => logs.push(e.message) })
  const firstBuild = now() - t
  record('first build (6 steps, 4 layer steps run)', [firstBuild], 'Template.build resolves; the SDK polls status every 200 ms')

  const rebuild = []
  let serverSide = ''
  for (let i = 0; i < N_REBUILD; i++) {
    const l = []
    t = now()
    await Template.build(tpl, name, { onBuildLogs: (e) => l.push(e.message) })
    rebuild.push(now() - t)
    serverSide = l.find((m) => m.includes('served from cache')) ?? serverSide
  }
  record('cached rebuild, through the SDK', rebuild, `server: "${serverSide.trim()}"`)

  for (const warm of ['base', name]) {
    const s = await Sandbox.create(warm)
    await s.kill()
  }
  const fromBase = []
  const fromTpl = []
  for (let i = 0; i < N_CREATE; i++) {
    for (const [tplName, into] of [['base', fromBase], [name, fromTpl]]) {
      t = now()
      const s = await Sandbox.create(tplName)
      into.push(now() - t)
      if (tplName === name && i === 0) {
        const r = await s.commands.run('cat four.txt; echo $APP_ENV; cat out.txt')
        if (r.stdout !== 'layer-four\nbench\nhello from the template\n') throw new Error(`template sandbox says ${JSON.stringify(r.stdout)}`)
      }
      await s.kill()
    }
  }
  record('Sandbox.create from base', fromBase, 'cold, alternating with the next row')
  record('Sandbox.create from the template', fromTpl, 'cold; its 4 layers stacked over base')
} finally {
  await server.stop()
}
console.log(`sandpit templates through the official SDK (node bench/template_bench.mjs --creates ${N_CREATE} --rebuilds ${N_REBUILD}), ${new Date().toISOString().slice(0, 16)}Z\n`)
console.log('| measure | n | p50 ms | p95 ms | min ms | max ms | notes |')
console.log('|---|---:|---:|---:|---:|---:|---|')
for (const r of rows) {
  console.log(`| ${r.name} | ${r.n} | ${r.p50.toFixed(2)} | ${r.p95.toFixed(2)} | ${r.min.toFixed(2)} | ${r.max.toFixed(2)} | ${r.note} |`)
}
