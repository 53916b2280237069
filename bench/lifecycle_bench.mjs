#!/usr/bin/env node
// lifecycle_bench.mjs — resume latency as an E2B SDK user sees it, by
// pause kind: memory (a thaw) and filesystem-only (a new boot on the kept
// writable layer, the agent's start, the template's start command). For
// each kind one sandbox is paused and resumed N times; each round times
// Sandbox.connect (the resume, 201) and connect plus a first command (the
// sandbox usable again). Also times pause itself. Prints p50/p95 in ms.
//
//   (cd test/compat && npm ci) && make build
//   node bench/lifecycle_bench.mjs [--rounds 30] [--template base]
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const compatDir = resolve(here, '..', 'test', 'compat')
const { startServer } = await import(pathToFileURL(join(compatDir, 'harness.mjs')))
const { Sandbox } = await import(pathToFileURL(createRequire(join(compatDir, 'package.json')).resolve('e2b')))

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '30' },
    template: { type: 'string', default: 'base' },
  },
})
const N = Number(opt.rounds)

function summary(ms) {
  const s = [...ms].sort((a, b) => a - b)
  const p50 = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
  return { p50: p50.toFixed(1), p95: s[Math.max(0, Math.ceil(0.95 * s.length) - 1)].toFixed(1) }
}

const server = await startServer({ name: 'bench-lifecycle' })
const conn = { apiUrl: server.url, sandboxUrl: server.url, apiKey: server.apiKey }
const rows = []
try {
  for (const keepMemory of [true, false]) {
    let sbx = await Sandbox.create(opt.template, conn)
    // Something to keep: a file, and memory in use.
    await sbx.commands.run('head -c 50000000 /dev/urandom > /dev/shm/blob; echo x > ~/f')
    const pause = []
    const connect = []
    const usable = []
    for (let i = 0; i < N + 2; i++) {
      let t0 = performance.now()
      await sbx.pause({ keepMemory })
      const p = performance.now() - t0
      t0 = performance.now()
      sbx = await Sandbox.connect(sbx.sandboxId, conn)
      const c = performance.now() - t0
      await sbx.commands.run('true')
      const u = performance.now() - t0
      if (i >= 2) { // the first two warm up
        pause.push(p)
        connect.push(c)
        usable.push(u)
      }
    }
    await sbx.kill()
    const kind = keepMemory ? 'memory' : 'filesystem'
    rows.push([`pause (${kind})`, summary(pause)])
    rows.push([`resume: connect (${kind})`, summary(connect)])
    rows.push([`resume: connect + first command (${kind})`, summary(usable)])
  }
} finally {
  await server.stop()
}
console.log(`| step (${N} rounds, template ${opt.template}) | p50 ms | p95 ms |`)
console.log('|---|---|---|')
for (const [name, s] of rows) console.log(`| ${name} | ${s.p50} | ${s.p95} |`)
