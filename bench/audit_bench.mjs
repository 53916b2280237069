#!/usr/bin/env node
// audit_bench.mjs — what the audit log costs a create, as an E2B SDK user
// sees it: two `sandpit serve`s on this machine, one with the audit log
// (the default) and one with --no-audit, creates alternating between them
// so the machine's noise falls on both alike. Prints p50/p95 of each and
// the difference of the medians.
//
//   (cd test/compat && npm ci) && make build
//   node bench/audit_bench.mjs [--creates 50] [--serve-arg=--warm-pool=off]
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
    creates: { type: 'string', default: '50' },
    'serve-arg': { type: 'string', multiple: true, default: [] },
  },
})
const N = Number(opt.creates)

function summary(ms) {
  const s = [...ms].sort((a, b) => a - b)
  const p50 = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
  return { p50, p95: s[Math.max(0, Math.ceil(0.95 * s.length) - 1)] }
}

const servers = {
  on: await startServer({ name: 'bench-audit-on', extraArgs: opt['serve-arg'] }),
  off: await startServer({ name: 'bench-audit-off', extraArgs: ['--no-audit', ...opt['serve-arg']] }),
}
const times = { on: [], off: [] }
try {
  for (let i = 0; i < N + 3; i++) {
    for (const side of i % 2 ? ['on', 'off'] : ['off', 'on']) {
      const s = servers[side]
      const conn = { apiUrl: s.url, sandboxUrl: s.url, apiKey: s.apiKey }
      const t0 = performance.now()
      const sbx = await Sandbox.create(conn)
      const took = performance.now() - t0
      if (i >= 3) times[side].push(took) // the first three warm up
      await sbx.kill()
    }
  }
} finally {
  await Promise.all(Object.values(servers).map((s) => s.stop()))
}
const on = summary(times.on)
const off = summary(times.off)
const extra = opt['serve-arg'].length ? ` (serve ${opt['serve-arg'].join(' ')})` : ''
console.log(`| Sandbox.create${extra}, ${N} each, alternating | p50 ms | p95 ms |`)
console.log('|---|---|---|')
console.log(`| audit log on (default) | ${on.p50.toFixed(2)} | ${on.p95.toFixed(2)} |`)
console.log(`| --no-audit | ${off.p50.toFixed(2)} | ${off.p95.toFixed(2)} |`)
console.log(`| difference of the medians | ${(on.p50 - off.p50).toFixed(2)} | |`)
