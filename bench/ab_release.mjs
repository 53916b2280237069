#!/usr/bin/env node
// ab_release.mjs — this build against another sandpit binary (an earlier
// release) in the same minutes: creates alternate between the two daemons,
// so the machine's noise falls on both alike. Tells a regression from a
// slower machine.
//
//   make build
//   git worktree add /tmp/old <commit> && (cd /tmp/old && go build -o /tmp/sandpit-old ./cmd/sandpit)
//   node bench/ab_release.mjs --old /tmp/sandpit-old [--creates 40] [--serve-arg=--warm-pool=off]
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
    old: { type: 'string' },
    creates: { type: 'string', default: '40' },
    'serve-arg': { type: 'string', multiple: true, default: [] },
  },
})
if (!opt.old) {
  console.error('usage: node bench/ab_release.mjs --old BIN [--creates N] [--serve-arg=...]')
  process.exit(2)
}
const N = Number(opt.creates)
const servers = {}
// keepDataDir: an older binary may not know the flags the harness adds
// for throwaway data dirs; every sandbox is killed below either way.
process.env.SANDPIT_BIN = resolve(opt.old)
servers.old = await startServer({ name: 'ab-old', keepDataDir: true, extraArgs: opt['serve-arg'] })
process.env.SANDPIT_BIN = resolve(here, '..', 'bin', 'sandpit')
servers.new = await startServer({ name: 'ab-new', keepDataDir: true, extraArgs: opt['serve-arg'] })
const times = { old: [], new: [] }
try {
  for (let i = 0; i < N + 3; i++) {
    for (const side of i % 2 ? ['old', 'new'] : ['new', 'old']) {
      const s = servers[side]
      const conn = { apiUrl: s.url, sandboxUrl: s.url, apiKey: s.apiKey }
      const t0 = performance.now()
      const sbx = await Sandbox.create(conn)
      const create = performance.now() - t0
      const t1 = performance.now()
      await sbx.commands.run('true')
      const first = performance.now() - t1
      if (i >= 3) times[side].push([create, first])
      await sbx.kill()
    }
  }
} finally {
  await Promise.all(Object.values(servers).map((s) => s.stop()))
}
const p50 = (a) => {
  const s = [...a].sort((x, y) => x - y)
  return (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2).toFixed(2)
}
console.log(`| binary (${N} creates each, alternating${opt['serve-arg'].length ? ', serve ' + opt['serve-arg'].join(' ') : ''}) | create p50 ms | first command p50 ms |`)
console.log('|---|---:|---:|')
for (const side of ['old', 'new']) {
  console.log(`| ${side === 'old' ? opt.old : 'bin/sandpit'} | ${p50(times[side].map((t) => t[0]))} | ${p50(times[side].map((t) => t[1]))} |`)
}
