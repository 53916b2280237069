#!/usr/bin/env node
// restart_bench.mjs — how long a restarted `sandpit serve` takes to take
// over the sandboxes the earlier run left running.
//
//   (cd test/compat && npm ci) && make build
//   node bench/restart_bench.mjs [--sandboxes 100] [--concurrency 4]
//
// Env: SANDPIT_BIN (default <repo>/bin/sandpit). It starts a daemon (no
// warm pool), creates N sandboxes, each with a background process, then
// restarts the daemon twice on the same data dir: after SIGTERM and after
// SIGKILL. For each restart it prints the manager's own figure (the
// "recovered" log line: adopting every sandbox, matching its freezer and
// network rules, arming its deadline) and the time from spawning the new
// daemon to its first healthy /health, and checks that every sandbox is
// listed and answers a command. Everything is killed at the end.
import { rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const compatDir = resolve(here, '..', 'test', 'compat')
const { startServer, useSdkEnv } = await import(pathToFileURL(join(compatDir, 'harness.mjs')))
const requireFromCompat = createRequire(join(compatDir, 'package.json'))
let e2b
try {
  e2b = await import(pathToFileURL(requireFromCompat.resolve('e2b')))
} catch (err) {
  console.error(`cannot load the e2b SDK from ${compatDir}/node_modules: run (cd test/compat && npm ci) first\n${err.message}`)
  process.exit(1)
}
const { Sandbox } = e2b

const { values: opt } = parseArgs({
  options: {
    sandboxes: { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '4' },
  },
})
const n = Number(opt.sandboxes)
const conc = Number(opt.concurrency)
const serveArgs = ['--warm-pool', 'off']

async function pool(items, f) {
  const out = []
  let next = 0
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < items.length) {
        const i = next++
        out[i] = await f(items[i], i)
      }
    }),
  )
  return out
}

function recoveredLine(server) {
  const line = server.readLog().split('\n').find((l) => l.includes('msg=recovered'))
  if (!line) throw new Error(`no "recovered" line in ${server.logPath}`)
  const field = (k) => line.match(new RegExp(`${k}=(\\S+)`))?.[1]
  return { adopted: Number(field('adopted')), reaped: Number(field('reaped')), took: field('took') }
}

function ms(took) {
  // Go durations as slog prints them: "35.12ms", "1.2s", "850µs".
  const m = took.match(/^([\d.]+)(µs|us|ms|s)$/)
  if (!m) return NaN
  return Number(m[1]) * { µs: 1e-3, us: 1e-3, ms: 1, s: 1000 }[m[2]]
}

const first = await startServer({ name: 'bench-restart-1', keepDataDir: true, extraArgs: serveArgs })
useSdkEnv(first)
const ids = []
const rows = []
let last = first
try {
  const t0 = performance.now()
  const sbxs = await pool(Array.from({ length: n }), async () => {
    const sbx = await Sandbox.create({ timeoutMs: 3_600_000, metadata: { bench: 'restart' } })
    await sbx.commands.run('sleep 3600', { background: true, timeoutMs: 0 })
    return sbx
  })
  ids.push(...sbxs.map((s) => s.sandboxId))
  console.error(`created ${n} sandboxes in ${((performance.now() - t0) / 1000).toFixed(1)} s`)

  for (const how of ['SIGTERM', 'SIGKILL']) {
    if (how === 'SIGTERM') await last.stop()
    else await last.crash()
    const spawned = performance.now()
    const next = await startServer({ name: `bench-restart-${how}`, dataDir: first.dataDir, apiKey: first.apiKey, keepDataDir: true, extraArgs: serveArgs })
    const healthy = performance.now() - spawned
    last = next
    useSdkEnv(next)
    const rec = recoveredLine(next)
    const listed = []
    for (const p = Sandbox.list({ query: { metadata: { bench: 'restart' } }, limit: 100 }); p.hasNext; ) listed.push(...(await p.nextItems()))
    const answered = await pool(ids, async (id) => (await (await Sandbox.connect(id)).commands.run('echo ok')).stdout === 'ok\n')
    rows.push({ how, ...rec, healthy, listed: listed.length, answered: answered.filter(Boolean).length })
  }
} finally {
  await pool(ids, (id) => Sandbox.kill(id).catch(() => false))
  await last.stop().catch(() => {})
  rmSync(first.dataDir, { recursive: true, force: true })
}

console.log(`| restart of a daemon with ${n} sandboxes | adopted | reaped | Recover (ms) | spawn → healthy (ms) | listed after | answer a command after |`)
console.log('|---|---|---|---|---|---|---|')
for (const r of rows) {
  console.log(`| after ${r.how} | ${r.adopted} | ${r.reaped} | ${ms(r.took).toFixed(1)} | ${r.healthy.toFixed(0)} | ${r.listed} | ${r.answered} |`)
}
