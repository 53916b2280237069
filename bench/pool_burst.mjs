#!/usr/bin/env node
// pool_burst.mjs — the adaptive warm pool as E2B SDK users see it: bursts of
// twice the pool's configured size, and sequential creates, through the
// official `e2b` package against a `sandpit serve` started as the compat
// harness starts it.
//
//   (cd test/compat && npm ci) && go build -o bin/sandpit ./cmd/sandpit
//   node bench/pool_burst.mjs [--floor 2] [--rounds 4] [--gap 3] [--sequential 30]
//                             [--idle 0] [--serve-arg=--warm-pool-memory=0]
//
// 1. sequential: S creates one after another, each followed by
//    commands.run("true") and kill (the way an agent loop runs), starting
//    from the pool at its floor.
// 2. with --idle N (seconds, e.g. 200): waits until the pool is back at its
//    floor, at most N seconds, and says how long that took; the bursts then
//    meet a pool that has forgotten the sequential demand.
// 3. bursts: R rounds of B = 2 × floor creates started at once; after each
//    round its sandboxes are killed and the script waits --gap seconds. The
//    first round is demand the pool has not seen (with --idle, or
//    --sequential 0); the next ones show what it learnt from it.
// For each phase: p50/p95/max of Sandbox.create (ms, nearest rank), and the
// pooled fraction from the daemon's sandpit_warm_pool_claims_total (hit and
// miss) before and after, with the pool's size and target.
// Env: SANDPIT_BIN (default <repo>/bin/sandpit). Markdown on stdout,
// progress on stderr.
import { createRequire } from 'node:module'
import { cpus, loadavg, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const compatDir = resolve(here, '..', 'test', 'compat')
const { startServer, useSdkEnv, waitFor } = await import(pathToFileURL(join(compatDir, 'harness.mjs')))
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
    floor: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '4' },
    gap: { type: 'string', default: '3' },
    sequential: { type: 'string', default: '30' },
    idle: { type: 'string', default: '0' },
    timeout: { type: 'string', default: '600' },
    'serve-arg': { type: 'string', multiple: true, default: [] },
  },
})
const FLOOR = Number(opt.floor)
const ROUNDS = Number(opt.rounds)
const GAP = Number(opt.gap)
const SEQ = Number(opt.sequential)
const IDLE = Number(opt.idle)
const TIMEOUT_S = Number(opt.timeout)
for (const [k, v] of Object.entries({ floor: FLOOR, rounds: ROUNDS, gap: GAP, sequential: SEQ, idle: IDLE, timeout: TIMEOUT_S })) {
  if (!Number.isInteger(v) || v < 0) {
    console.error(`--${k} must be a non-negative integer`)
    process.exit(2)
  }
}
const B = 2 * FLOOR
const REQ = { requestTimeoutMs: 60_000 }
const TPL = 'base'
const cmdLine = ['node', 'bench/pool_burst.mjs', ...process.argv.slice(2)].join(' ')
const startedAt = new Date()
const load0 = loadavg()
const now = () => performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const progress = (s) => process.stderr.write(`\r${s}        `)

function summary(ms) {
  const s = [...ms].sort((a, b) => a - b)
  const pct = (p) => s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)]
  return s.length ? { n: s.length, p50: pct(50), p95: pct(95), max: s.at(-1) } : { n: 0 }
}

let server = null
async function bail(why, code) {
  process.stderr.write(`\npool_burst.mjs: ${why}; stopping the daemon (it kills its sandboxes)\n`)
  await server?.stop().catch(() => {})
  process.exit(code)
}
const timer = setTimeout(() => bail(`--timeout ${TIMEOUT_S}s reached`, 3), TIMEOUT_S * 1000)
process.on('SIGINT', () => bail('interrupted', 130))

server = await startServer({ name: 'pool-burst', extraArgs: [`--warm-pool=${TPL}=${FLOOR}`, ...opt['serve-arg']] })
useSdkEnv(server)

/** The base template's pool as /metrics shows it. */
async function pool() {
  const text = await (await fetch(`${server.url}/metrics`)).text()
  const get = (name, extra = '') => {
    const re = new RegExp(`^${name}\\{${extra ? `${extra},` : ''}template="${TPL}"\\} (\\S+)$|^${name}\\{template="${TPL}"${extra ? `,${extra}` : ''}\\} (\\S+)$`, 'm')
    const m = text.match(re)
    return m ? Number(m[1] ?? m[2]) : 0
  }
  return {
    size: get('sandpit_warm_pool_sandboxes'),
    target: get('sandpit_warm_pool_target'),
    mem: get('sandpit_warm_pool_sandbox_memory_bytes'),
    hit: get('sandpit_warm_pool_claims_total', 'result="hit"'),
    miss: get('sandpit_warm_pool_claims_total', 'result="miss"'),
  }
}
const full = async () => {
  const p = await pool()
  return p.target > 0 && p.size >= p.target
}

const rows = []
async function phase(name, note, run) {
  const before = await pool()
  const times = await run()
  const after = await pool()
  const hit = after.hit - before.hit
  const miss = after.miss - before.miss
  rows.push({ name, note, s: summary(times), pooled: `${hit}/${hit + miss}`, size: before.size, target: before.target, after })
}

let idle = null
async function waitIdle() {
  const a = now()
  try {
    await waitFor(async () => {
      const p = await pool()
      return p.target === FLOOR && p.size === FLOOR
    }, { timeoutMs: IDLE * 1000, intervalMs: 1000, what: 'the pool to shrink to its floor' })
    idle = `back at its floor of ${FLOOR} ${((now() - a) / 1000).toFixed(0)} s after the sequential phase`
  } catch (err) {
    idle = `not back at its floor within ${IDLE} s: ${err.message}`
  }
}

let fatal = null
try {
  await waitFor(full, { timeoutMs: 60_000, what: 'the warm pool to fill' })
  if (SEQ > 0) {
    await phase('sequential', `${SEQ} creates, each then commands.run + kill`, async () => {
      const t = []
      for (let i = 0; i < SEQ; i++) {
        const a = now()
        const s = await Sandbox.create(REQ)
        t.push(now() - a)
        await s.commands.run('true', REQ)
        await s.kill(REQ)
        progress(`sequential ${i + 1}/${SEQ}`)
      }
      return t
    })
    process.stderr.write('\n')
    await sleep(GAP * 1000)
  }
  if (IDLE > 0) await waitIdle()
  for (let r = 1; r <= ROUNDS; r++) {
    await phase(`burst ${r}`, `${B} creates at once`, async () => {
      const t = []
      const boxes = await Promise.all(
        Array.from({ length: B }, async () => {
          const a = now()
          const s = await Sandbox.create(REQ)
          t.push(now() - a)
          return s
        }),
      )
      await Promise.all(boxes.map((s) => s.kill(REQ)))
      return t
    })
    progress(`burst ${r}/${ROUNDS}`)
    await sleep(GAP * 1000)
  }
  process.stderr.write('\n')
} catch (err) {
  fatal = err
}
const last = await pool().catch(() => null)
clearTimeout(timer)
await server.stop()

const f = (x) => (x === undefined ? '–' : x.toFixed(1))
const sdkVersion = requireFromCompat('e2b/package.json').version
const load1 = loadavg()
console.log(
  `sandpit's warm pool under bursts through the official SDK (e2b ${sdkVersion}, node ${process.version}), ` +
    `${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${startedAt.toISOString().slice(0, 16)}Z; ` +
    `load average ${load0.map((x) => x.toFixed(2)).join(' ')} before, ${load1.map((x) => x.toFixed(2)).join(' ')} after`,
)
console.log()
console.log(`    ${cmdLine}`)
console.log(`    (sandpit serve --warm-pool=${TPL}=${FLOOR} ${opt['serve-arg'].join(' ')})`)
console.log()
console.log('| phase | creates | pooled | pool size / target before | p50 ms | p95 ms | max ms | notes |')
console.log('|---|---:|---:|---:|---:|---:|---:|---|')
for (const r of rows) {
  console.log(`| ${r.name} | ${r.s.n} | ${r.pooled} | ${r.size} / ${r.target} | ${f(r.s.p50)} | ${f(r.s.p95)} | ${f(r.s.max)} | ${r.note} |`)
}
if (last) {
  console.log()
  console.log(`pool at the end: ${last.size} warm, target ${last.target}, ${(last.mem / 2 ** 20).toFixed(1)} MiB counted per warm sandbox; serve log: ${server.logPath}`)
}
if (idle) console.log(`\nidle: ${idle}`)
if (fatal) {
  console.log(`\n- fatal: ${fatal.name}: ${String(fatal.message).split('\n')[0]}`)
  process.exitCode = 1
}
process.exit()
