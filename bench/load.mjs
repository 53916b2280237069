#!/usr/bin/env node
// load.mjs — sandpit under load, as E2B SDK users see it: many clients at
// once through the official `e2b` package against a `sandpit serve` started
// the same way as the compat harness.
//
//   (cd test/compat && npm ci) && make build
//   node bench/load.mjs [--concurrency 8] [--cycles 200] [--live 100] [--burst 0]
//                       [--rate 0] [--timeout 900] [--serve-arg=--warm-pool=off]
//
// (a) cycles: C workers share N cycles of Sandbox.create → commands.run("true")
//     → kill; prints cycles/s and p50/p95/p99/max of each step. With --rate R
//     the cycles are offered at R per second (cycle i due at start + i/R,
//     taken by the first free worker, create timed from when it was due)
//     instead of back to back: a closed loop at saturation measures C over
//     the throughput, a rate below capacity the latency at that throughput.
// (b) live: L sandboxes created (C at a time) and kept; then every one runs
//     commands.run("true") (C at a time) while, with --burst B, B creates are
//     started at once; p50/p95/p99/max of each.
// (c) the daemon's CPU seconds (utime+stime of the serve process, from
//     /proc/PID/stat) per phase, its RSS, and the host's MemAvailable drop per
//     live sandbox.
// --cycles 0 or --live 0 skips a phase. --timeout bounds the whole run: on
// expiry (or an error, or ^C) the daemon is stopped, which kills every
// sandbox it holds (--kill-on-stop), and the script exits non-zero.
// Env: SANDPIT_BIN (default <repo>/bin/sandpit). Markdown on stdout,
// progress on stderr.
import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, totalmem } from 'node:os'
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
    concurrency: { type: 'string', short: 'c', default: '8' },
    cycles: { type: 'string', short: 'n', default: '200' },
    live: { type: 'string', default: '100' },
    burst: { type: 'string', default: '0' },
    warmup: { type: 'string', default: '3' },
    // cycles started per second in the cycles phase, at most C at once; 0: closed loop
    rate: { type: 'string', default: '0' },
    // seconds for the whole run, server start to stop
    timeout: { type: 'string', default: '900' },
    // extra flags for `sandpit serve`, e.g. --serve-arg=--warm-pool=off
    'serve-arg': { type: 'string', multiple: true, default: [] },
  },
})
const C = Math.max(1, Number(opt.concurrency))
const N = Number(opt.cycles)
const L = Number(opt.live)
const B = Number(opt.burst)
const WARMUP = Number(opt.warmup)
const RATE = Number(opt.rate)
if (!(RATE >= 0)) {
  console.error('--rate must be a non-negative number')
  process.exit(2)
}
const TIMEOUT_S = Number(opt.timeout)
for (const [k, v] of Object.entries({ concurrency: C, cycles: N, live: L, burst: B, warmup: WARMUP, timeout: TIMEOUT_S })) {
  if (!Number.isInteger(v) || v < 0) {
    console.error(`--${k} must be a non-negative integer`)
    process.exit(2)
  }
}
// No single SDK call may hang the run: a stuck request fails as an error.
const REQ = { requestTimeoutMs: 60_000 }
const cmdLine = ['node', 'bench/load.mjs', ...process.argv.slice(2)].join(' ')
const startedAt = new Date()

function pct(sorted, p) {
  // nearest-rank
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]
}
function summary(ms) {
  const s = [...ms].sort((a, b) => a - b)
  if (s.length === 0) return { n: 0 }
  const p50 = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
  return { n: s.length, p50, p95: pct(s, 95), p99: pct(s, 99), max: s.at(-1) }
}
const now = () => performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Errors of one phase: a count and the first few distinct messages. */
function errorLog() {
  const first = []
  let count = 0
  return {
    add(step, err) {
      count++
      const msg = `${step}: ${err?.name ?? 'Error'}: ${String(err?.message ?? err).split('\n')[0].slice(0, 200)}`
      if (first.length < 5 && !first.includes(msg)) first.push(msg)
    },
    get count() {
      return count
    },
    first,
  }
}

/** Runs fn(i) for i in [0, n) on `workers` concurrent loops. */
async function pool(n, workers, fn) {
  let next = 0
  const loop = async () => {
    while (!aborted && next < n) await fn(next++)
  }
  await Promise.all(Array.from({ length: Math.min(workers, n) }, loop))
}

const CLK_TCK = 100 // Linux USER_HZ on every architecture sandpit runs on
/** utime+stime (s) of a process, and its children's that it has waited for. */
// hostBusy is the host's CPU time spent on anything but idle and iowait,
// in seconds, from /proc/stat: the daemon and its sandboxes, the SDK
// clients, and the kernel threads that tear namespaces down for them.
function hostBusy() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number)
  const [user, nice, system, , , irq, softirq, steal] = f
  return (user + nice + system + irq + softirq + steal) / 100 // USER_HZ
}

function cpuOf(pid) {
  let stat
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return { self: NaN, children: NaN } // the daemon is gone: the run reports it
  }
  // Fields after the command name (which may hold spaces) start at field 3.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const self = (Number(f[11]) + Number(f[12])) / CLK_TCK
  let children = (Number(f[13]) + Number(f[14])) / CLK_TCK
  // The sandbox inits are the children of the daemon's spawner (a child of
  // the daemon that lives as long as it): their CPU is in the spawner's
  // children's time, and the spawner's own in its own.
  for (const child of childrenOf(pid)) {
    const c = cpuOf(child)
    if (!Number.isNaN(c.self)) children += c.self + c.children
  }
  return { self, children }
}
function childrenOf(pid) {
  const out = []
  let tasks = []
  try {
    tasks = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const t of tasks) {
    const kids = safe(() => readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8')) ?? ''
    for (const k of kids.split(' ')) if (k.trim()) out.push(Number(k))
  }
  return out
}
function rssMiB(pid) {
  const m = safe(() => readFileSync(`/proc/${pid}/status`, 'utf8'))?.match?.(/^VmRSS:\s+(\d+) kB/m)
  return m ? Number(m[1]) / 1024 : NaN
}
function memAvailableMiB() {
  const m = readFileSync('/proc/meminfo', 'utf8').match(/^MemAvailable:\s+(\d+) kB/m)
  return Number(m[1]) / 1024
}

let aborted = false
let server = null
let stopping = null
async function stopServer() {
  if (!server) return
  stopping ??= server.stop().catch((err) => process.stderr.write(`warning: stopping sandpit serve: ${err.message}\n`))
  await stopping
}
async function bail(why, code) {
  aborted = true
  process.stderr.write(`\nload.mjs: ${why}; stopping the daemon (it kills its sandboxes)\n`)
  await stopServer()
  process.exit(code)
}
const timer = setTimeout(() => bail(`--timeout ${TIMEOUT_S}s reached`, 3), TIMEOUT_S * 1000)
process.on('SIGINT', () => bail('interrupted', 130))
process.on('SIGTERM', () => bail('terminated', 143))

server = await startServer({ name: 'load-bench', extraArgs: opt['serve-arg'] })
useSdkEnv(server)
const progress = (s) => process.stderr.write(`\r${s}        `)

const out = { cycles: null, live: null }
let WARM_AT_RATE = 0
let fatal = null
try {
  await settle()
  for (let i = 0; i < WARMUP; i++) {
    const s = await Sandbox.create(REQ)
    await s.commands.run('true', REQ)
    await s.kill(REQ)
  }

  // With a rate, 2 s of warm-up at that rate first, so the warm pool has
  // learnt the rate as it does in the first seconds of any sustained load.
  if (N > 0 && RATE > 0) {
    WARM_AT_RATE = Math.max(WARMUP * C, Math.round(2 * RATE))
    const warm = await cyclesPhase(WARM_AT_RATE)
    if (warm.errors.count > 0) throw new Error(`${warm.errors.count} errors in the warm-up at the rate: ${warm.errors.first.join('; ')}`)
  }
  if (N > 0) out.cycles = await cyclesPhase(N)
  if (L > 0 && !server.exited) out.live = await livePhase()
} catch (err) {
  fatal = err
} finally {
  clearTimeout(timer)
}
const rssEnd = rssMiB(server.pid)
const diedEarly = server.exited
const stages = diedEarly ? null : await createStages().catch((err) => `(reading /metrics: ${err.message})`)
await stopServer()

async function metricsText() {
  const res = await fetch(`${server.url}/metrics`, { headers: { 'X-API-KEY': server.apiKey }, signal: AbortSignal.timeout(5000) })
  return res.text()
}

/**
 * The lines of a /metrics text that re matches (groups: a name, a label's
 * value, the value): the values of those named first and of the others, by
 * label.
 */
function split(text, re, first) {
  const a = {}
  const b = {}
  for (const m of text.matchAll(re)) (m[1] === first ? a : b)[m[2]] = Number(m[3])
  return [a, b]
}

/**
 * Where the daemon's creates spent their time over the whole run: the mean
 * of each stage of sandpit_sandbox_create_seconds (a cold create's stages,
 * "pool" for a claim), and the warm pool's hits and misses.
 */
async function createStages() {
  const text = await metricsText()
  const [sum, count] = split(text, /^sandpit_sandbox_create_seconds_(sum|count)\{stage="([^"]+)"\} (\S+)$/gm, 'sum')
  const parts = Object.keys(count)
    .filter((st) => count[st] > 0)
    .map((st) => `${st} ${((sum[st] / count[st]) * 1000).toFixed(1)} ms (n=${count[st]})`)
  const claims = {}
  for (const m of text.matchAll(/^sandpit_warm_pool_claims_total\{result="(hit|miss)",template="([^"]+)"\} (\S+)$/gm)) {
    claims[m[1]] = (claims[m[1]] ?? 0) + Number(m[3])
  }
  return `create stages, mean over the run: ${parts.join(', ')}; warm pool claims: ${claims.hit ?? 0} hit, ${claims.miss ?? 0} miss`
}

/**
 * Waits until the daemon has settled after its start: every warm pool at
 * its target (/metrics) and then the host under 15 % busy for a quarter
 * second. The daemon answers /health before its pool is full, and a
 * code-interpreter spare goes on warming its kernels in the pool, a second
 * or more of one CPU that cycles measured meanwhile would pay for.
 */
async function settle() {
  const deadline = now() + 60_000
  for (;;) {
    const [have, want] = split(await metricsText(), /^sandpit_warm_pool_(sandboxes|target)\{template="([^"]+)"\} (\S+)$/gm, 'sandboxes')
    if (Object.keys(want).every((t) => (have[t] ?? 0) >= want[t])) break
    if (now() > deadline) {
      process.stderr.write(`warning: the warm pool did not fill (${JSON.stringify(have)} of ${JSON.stringify(want)}); measuring anyway\n`)
      break
    }
    await sleep(100)
  }
  for (let prev = hostBusy(); now() < deadline; ) {
    await sleep(250)
    const cur = hostBusy()
    if (cur - prev < 0.15 * 0.25 * cpus().length) return
    prev = cur
  }
  process.stderr.write('warning: the host did not fall quiet; measuring anyway\n')
}

async function cyclesPhase(N) {
  const errors = errorLog()
  const t = { create: [], command: [], kill: [], cycle: [] }
  let done = 0
  const cpu0 = cpuOf(server.pid)
  const busy0 = hostBusy()
  const client0 = process.cpuUsage()
  const t0 = now()
  await pool(N, C, async (i) => {
    let a = now()
    if (RATE > 0) {
      const due = t0 + (i * 1000) / RATE
      if (due > a) await new Promise((resolve) => setTimeout(resolve, due - a))
      a = due // the wait for a free worker counts (no coordinated omission)
    }
    let s
    try {
      s = await Sandbox.create(REQ)
    } catch (err) {
      return errors.add('create', err)
    }
    const b = now()
    t.create.push(b - a)
    try {
      const r = await s.commands.run('true', REQ)
      if (r.exitCode !== 0) throw new Error(`true exited ${r.exitCode}`)
      t.command.push(now() - b)
    } catch (err) {
      errors.add('commands.run', err)
    }
    const c = now()
    try {
      await s.kill(REQ)
      t.kill.push(now() - c)
      t.cycle.push(now() - a)
      done++
    } catch (err) {
      errors.add('kill', err)
    }
    progress(`cycles ${done}/${N}`)
  })
  const wall = (now() - t0) / 1000
  const cpu1 = cpuOf(server.pid)
  const busy = hostBusy() - busy0
  process.stderr.write('\n')
  const client = process.cpuUsage(client0)
  return {
    t,
    errors,
    wall,
    done,
    busy,
    cpu: cpu1.self - cpu0.self,
    cpuChildren: cpu1.children - cpu0.children,
    // The SDK clients share the host's CPUs with the daemon: their share says how much was left.
    cpuClient: (client.user + client.system) / 1e6,
    rss: rssMiB(server.pid),
  }
}

async function livePhase() {
  const errors = errorLog()
  const live = []
  const create = []
  // Let the warm pool refill and the host settle before the baseline.
  await sleep(2000)
  const mem0 = memAvailableMiB()
  const rss0 = rssMiB(server.pid)
  const cpu0 = cpuOf(server.pid)
  const t0 = now()
  await pool(L, C, async () => {
    const a = now()
    try {
      // Kept for the whole phase: a timeout well beyond it.
      live.push(await Sandbox.create({ ...REQ, timeoutMs: 3_600_000 }))
      create.push(now() - a)
    } catch (err) {
      errors.add('create (live)', err)
    }
    progress(`live ${live.length}/${L}`)
  })
  const createWall = (now() - t0) / 1000
  const cpu1 = cpuOf(server.pid)
  process.stderr.write('\n')
  await sleep(2000)
  const mem1 = memAvailableMiB()
  const rss1 = rssMiB(server.pid)

  // Every live sandbox runs a command: one at a time, then C at a time with
  // nothing else going on, then C at a time while B creates start at once.
  const quiet1 = []
  const quietC = []
  for (const [times, workers] of [[quiet1, 1], [quietC, C]]) {
    await pool(live.length, workers, async (i) => {
      const a = now()
      try {
        const r = await live[i].commands.run('true', REQ)
        if (r.exitCode !== 0) throw new Error(`true exited ${r.exitCode}`)
        times.push(now() - a)
      } catch (err) {
        errors.add('commands.run (live, quiet)', err)
      }
    })
  }
  const cpu15 = cpuOf(server.pid)
  const command = []
  const burst = []
  const burstBoxes = []
  const sweep = pool(live.length, C, async (i) => {
    const a = now()
    try {
      const r = await live[i].commands.run('true', REQ)
      if (r.exitCode !== 0) throw new Error(`true exited ${r.exitCode}`)
      command.push(now() - a)
    } catch (err) {
      errors.add('commands.run (live)', err)
    }
  })
  const t1 = now()
  const bursts = Array.from({ length: B }, async () => {
    const a = now()
    try {
      burstBoxes.push(await Sandbox.create(REQ))
      burst.push(now() - a)
    } catch (err) {
      errors.add('create (burst)', err)
    }
  })
  await Promise.all([sweep, ...bursts])
  const sweepWall = (now() - t1) / 1000
  const cpu2 = cpuOf(server.pid)

  const kill = []
  const all = [...live, ...burstBoxes]
  await pool(all.length, C, async (i) => {
    const a = now()
    try {
      await all[i].kill(REQ)
      kill.push(now() - a)
    } catch (err) {
      errors.add('kill (live)', err)
    }
    progress(`killed ${kill.length}/${all.length}`)
  })
  process.stderr.write('\n')
  return {
    errors,
    create,
    createWall,
    command,
    burst,
    kill,
    sweepWall,
    n: live.length,
    memPer: (mem0 - mem1) / Math.max(1, live.length),
    memDrop: mem0 - mem1,
    rss0,
    rss1,
    cpuCreate: cpu1.self - cpu0.self,
    cpuSweep: cpu2.self - cpu15.self,
    quiet1,
    quietC,
  }
}

function safe(fn) {
  try {
    return fn()
  } catch {
    return NaN
  }
}

const f = (x) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(1))
const row = (name, ms, note = '') => {
  const s = summary(ms)
  return `| ${name} | ${s.n} | ${f(s.p50)} | ${f(s.p95)} | ${f(s.p99)} | ${f(s.max)} | ${note} |`
}
const sdkVersion = requireFromCompat('e2b/package.json').version
console.log(
  `sandpit under load through the official SDK (e2b ${sdkVersion}, node ${process.version}), ` +
    `${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${startedAt.toISOString().slice(0, 16)}Z`,
)
console.log()
console.log(`    ${cmdLine}`)
if (opt['serve-arg'].length) console.log(`    (sandpit serve ${opt['serve-arg'].join(' ')})`)
const head = '| measure | n | p50 ms | p95 ms | p99 ms | max ms | notes |\n|---|---:|---:|---:|---:|---:|---|'
const printErrors = (e) => {
  console.log(`\nerrors: ${e.count}`)
  for (const m of e.first) console.log(`- ${m}`)
}
if (out.cycles) {
  const c = out.cycles
  console.log()
  console.log(
    `**Cycles**: ${c.done}/${N} create → commands.run("true") → kill at concurrency ${C}` +
      (RATE > 0 ? ` (offered ${RATE} cycles/s after ${WARM_AT_RATE} warm-up cycles at that rate, create timed from when each was due)` : '') +
      ` in ${c.wall.toFixed(1)} s: ` +
      `**${(c.done / c.wall).toFixed(1)} cycles/s**; CPU: daemon ${c.cpu.toFixed(1)} s + its reaped children (sandbox processes) ` +
      `${c.cpuChildren.toFixed(1)} s = ${(((c.cpu + c.cpuChildren) / Math.max(1, c.done)) * 1000).toFixed(1)} ms per cycle ` +
      `(${(((c.cpu + c.cpuChildren) / c.wall / cpus().length) * 100).toFixed(0)}% of the host's CPUs); daemon RSS ${f(c.rss)} MiB after; this node process (the SDK clients) ${c.cpuClient.toFixed(1)} s; ` +
      `the whole host busy ${((c.busy / c.wall / cpus().length) * 100).toFixed(0)}%, ${((c.busy / Math.max(1, c.done)) * 1000).toFixed(1)} ms of CPU per cycle.`,
  )
  console.log()
  console.log(head)
  console.log(row('Sandbox.create', c.t.create))
  console.log(row('commands.run("true")', c.t.command, 'first command on the new sandbox'))
  console.log(row('kill', c.t.kill))
  console.log(row('whole cycle', c.t.cycle))
  printErrors(c.errors)
}
if (out.live) {
  const l = out.live
  console.log()
  console.log(
    `**Live**: ${l.n}/${L} sandboxes created at concurrency ${C} in ${l.createWall.toFixed(1)} s ` +
      `(daemon CPU ${l.cpuCreate.toFixed(1)} s); host MemAvailable dropped ${l.memDrop.toFixed(0)} MiB: ` +
      `**${l.memPer.toFixed(2)} MiB per live sandbox**; daemon RSS ${f(l.rss0)} → ${f(l.rss1)} MiB. ` +
      `Then each ran commands.run("true"), three times (table)` +
      `; the last round took ${l.sweepWall.toFixed(1)} s, daemon CPU ${l.cpuSweep.toFixed(1)} s.`,
  )
  console.log()
  console.log(head)
  console.log(row('Sandbox.create (to fill)', l.create, `concurrency ${C}`))
  console.log(row('commands.run("true") on a live sandbox, one at a time', l.quiet1, `${l.n} live, nothing else running`))
  console.log(row(`commands.run("true") on a live sandbox, ${C} at a time`, l.quietC, `${l.n} live, nothing else running`))
  console.log(row(`commands.run("true") on a live sandbox, ${C} at a time` + (B > 0 ? ', during the burst' : ''), l.command, `${l.n} live` + (B > 0 ? `, ${B} creates started with the first` : '')))
  if (B > 0) console.log(row('Sandbox.create in the burst', l.burst, `${B} at once, with ${l.n} live`))
  console.log(row('kill', l.kill, `concurrency ${C}`))
  printErrors(l.errors)
}
console.log()
console.log(`daemon RSS at the end: ${f(rssEnd)} MiB; serve log: ${server.logPath}`)
if (stages) console.log(`\n${stages}`)
if (diedEarly) {
  console.log(`\n- fatal: sandpit serve exited during the run (code ${diedEarly.code}, signal ${diedEarly.signal})`)
  process.exitCode = 1
}
if (fatal) {
  console.log(`\n- fatal: ${fatal.name}: ${String(fatal.message).split('\n')[0]}`)
  process.exitCode = 1
}
if ((out.cycles?.errors.count ?? 0) + (out.live?.errors.count ?? 0) > 0) process.exitCode = 1
process.exit()
