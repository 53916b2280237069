#!/usr/bin/env node
// sdk_bench.mjs — sandpit latency as an E2B SDK user sees it: the official
// `e2b` package (installed by test/compat) against a `sandpit serve` started
// the same way as the compat harness.
//
//   (cd test/compat && npm ci) && make build
//   node bench/sdk_bench.mjs [--creates 50] [--commands 200] [--reads 200]
//                            [--transfer-mb 1024] [--serve-arg=--warm-pool=off]
//
// Env: SANDPIT_BIN (default <repo>/bin/sandpit). Prints a Markdown table of
// p50/p95 for: create (Sandbox.create resolves), first command after create,
// create + first command, commands.run("true") on a warm sandbox, files.read
// of a small file, and kill.
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
    creates: { type: 'string', default: '50' },
    commands: { type: 'string', default: '200' },
    reads: { type: 'string', default: '200' },
    'transfer-mb': { type: 'string', default: '1024' },
    // extra flags for `sandpit serve`, e.g. --serve-arg=--warm-pool=off for cold creates
    'serve-arg': { type: 'string', multiple: true, default: [] },
    warmup: { type: 'string', default: '3' },
  },
})
const N_CREATE = Number(opt.creates)
const N_CMD = Number(opt.commands)
const N_READ = Number(opt.reads)
const TRANSFER_MB = Number(opt['transfer-mb'])
const WARMUP = Number(opt.warmup)

function pct(sorted, p) {
  // nearest-rank
  const i = Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)
  return sorted[i]
}
function summary(ms) {
  const s = [...ms].sort((a, b) => a - b)
  const p50 = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
  return { n: s.length, p50, p95: pct(s, 95), min: s[0], max: s.at(-1) }
}
const now = () => performance.now()

// The transfer writes TRANSFER_MB into the sandbox's home: give it a disk
// that holds it twice over, since an upload replacing a file holds both
// for a moment (the default disk is 1 GiB).
const diskArg = TRANSFER_MB > 0 ? [`--default-disk-mb=${2 * TRANSFER_MB + 512}`] : []
const server = await startServer({ name: 'sdk-bench', extraArgs: [...diskArg, ...opt['serve-arg']] })
useSdkEnv(server)
const rows = []
const errors = []
let transfer = null
const record = (name, ms, note = '') => rows.push({ name, ...summary(ms), note })

try {
  // warm-up: the first create pays one-off costs (template setup, page cache).
  for (let i = 0; i < WARMUP; i++) {
    const s = await Sandbox.create()
    await s.commands.run('true')
    await s.kill()
  }

  const create = []
  const firstCmd = []
  const createAndFirst = []
  const kill = []
  for (let i = 0; i < N_CREATE; i++) {
    const t0 = now()
    const s = await Sandbox.create()
    const t1 = now()
    const r = await s.commands.run('true')
    const t2 = now()
    if (r.exitCode !== 0) throw new Error(`true exited ${r.exitCode}`)
    await s.kill()
    const t3 = now()
    create.push(t1 - t0)
    firstCmd.push(t2 - t1)
    createAndFirst.push(t2 - t0)
    kill.push(t3 - t2)
    process.stderr.write(`\rcreates ${i + 1}/${N_CREATE}`)
  }
  process.stderr.write('\n')
  record('create (Sandbox.create resolves)', create, 'sequential, no warm pool unless the server has one')
  record('first commands.run("true") after create', firstCmd)
  record('create + first command', createAndFirst, 'what a user waits for before the sandbox does work')
  record('kill', kill)

  const s = await Sandbox.create()
  try {
    for (let i = 0; i < 10; i++) await s.commands.run('true')
    const cmd = []
    for (let i = 0; i < N_CMD; i++) {
      const t0 = now()
      await s.commands.run('true')
      cmd.push(now() - t0)
    }
    record('commands.run("true") round trip', cmd, 'warm sandbox')

    try {
      await s.files.write('/tmp/small.txt', 'x'.repeat(100))
      const reads = []
      for (let i = 0; i < N_READ; i++) {
        const t0 = now()
        await s.files.read('/tmp/small.txt')
        reads.push(now() - t0)
      }
      record('files.read of 100 bytes', reads, 'warm sandbox')
    } catch (err) {
      errors.push(`files.read: ${err.message.split('\n')[0]}`)
    }

    if (TRANSFER_MB > 0) {
      try {
        const size = TRANSFER_MB * 2 ** 20
        const block = new Uint8Array(2 ** 20)
        crypto.getRandomValues(block.subarray(0, 65536))
        for (let off = 65536; off < block.length; off += 65536) block.copyWithin(off, 0, 65536)
        let sent = 0
        const body = new ReadableStream({
          pull(c) {
            if (sent >= size) return c.close()
            c.enqueue(block.slice())
            sent += block.length
          },
        })
        const t0 = now()
        await s.files.write('/home/user/transfer.bin', body, { requestTimeoutMs: 600_000 })
        const up = (now() - t0) / 1000
        const info = await s.files.getInfo('/home/user/transfer.bin')
        if (info.size !== size) throw new Error(`uploaded ${info.size} bytes, want ${size}`)
        const t1 = now()
        const rs = await s.files.read('/home/user/transfer.bin', { format: 'stream', requestTimeoutMs: 600_000 })
        let n = 0
        for await (const chunk of rs) n += chunk.length
        const down = (now() - t1) / 1000
        if (n !== size) throw new Error(`downloaded ${n} bytes, want ${size}`)
        transfer = { mb: TRANSFER_MB, up: size / 1e6 / up, down: size / 1e6 / down }
        await s.files.remove('/home/user/transfer.bin')
      } catch (err) {
        errors.push(`transfer: ${err.message.split('\n')[0]}`)
      }
    }
  } finally {
    await s.kill().catch(() => {})
  }

  // Floors, to tell the server's share from the client's: a plain HTTP
  // round trip to the daemon, and the SDK's commands.run against a stub envd
  // (another process) that answers Start with start+end at once.
  const health = []
  for (let i = 0; i < N_CMD; i++) {
    const t0 = now()
    const r = await fetch(`${server.url}/health`)
    await r.arrayBuffer()
    health.push(now() - t0)
  }
  record('floor: fetch GET /health on the daemon', health, 'node fetch (undici) HTTP/1.1 round trip')
  const stub = await startStub()
  try {
    const s2 = await Sandbox.connect('stub', { apiUrl: stub.url, sandboxUrl: stub.url, apiKey: 'e2b_' + '0'.repeat(40) })
    for (let i = 0; i < 10; i++) await s2.commands.run('true')
    const floor = []
    for (let i = 0; i < N_CMD; i++) {
      const t0 = now()
      await s2.commands.run('true')
      floor.push(now() - t0)
    }
    record('floor: commands.run("true") against a stub envd', floor, 'the SDK\'s own cost per command')
  } finally {
    stub.child.kill()
  }
} catch (err) {
  errors.push(`${err.name}: ${err.message.split('\n')[0]}`)
} finally {
  await server.stop()
}

/** A stub control plane + envd in a child process: connect answers, Start replies start+end at once. */
async function startStub() {
  const code = `
    const http = require('node:http')
    const env = (flag, obj) => { const b = Buffer.from(JSON.stringify(obj)); const h = Buffer.alloc(5); h[0] = flag; h.writeUInt32BE(b.length, 1); return Buffer.concat([h, b]) }
    let pid = 100
    const srv = http.createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        if (req.url.startsWith('/v2/sandboxes/')) {
          res.writeHead(200, { 'Content-Type': 'application/json' })
          return res.end(JSON.stringify({ sandboxID: 'stub', templateID: 'base', clientID: 'x', envdVersion: '0.6.13', envdAccessToken: 'tok' }))
        }
        if (req.url === '/process.Process/Start') {
          res.writeHead(200, { 'Content-Type': 'application/connect+json' })
          res.write(env(0, { event: { start: { pid: ++pid } } }))
          res.write(env(0, { event: { end: { exited: true, status: 'exit status 0' } } }))
          return res.end(env(2, {}))
        }
        res.writeHead(404).end()
      })
    })
    srv.listen(0, '127.0.0.1', () => console.log(srv.address().port))
  `
  const { spawn } = await import('node:child_process')
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise((r) => child.stdout.once('data', (d) => r(Number(String(d).trim()))))
  return { child, url: `http://127.0.0.1:${port}` }
}

const f = (x) => x.toFixed(2)
const sdkVersion = requireFromCompat('e2b/package.json').version
const serveArgs = opt['serve-arg'].length ? `, serve ${opt['serve-arg'].join(' ')}` : ''
console.log(`sandpit through the official SDK (e2b ${sdkVersion}, node ${process.version}${serveArgs}), ${new Date().toISOString().slice(0, 16)}Z`)
console.log()
console.log('| measure | n | p50 ms | p95 ms | min ms | max ms | notes |')
console.log('|---|---:|---:|---:|---:|---:|---|')
for (const r of rows) console.log(`| ${r.name} | ${r.n} | ${f(r.p50)} | ${f(r.p95)} | ${f(r.min)} | ${f(r.max)} | ${r.note} |`)
if (transfer) {
  console.log()
  console.log(`| transfer of ${transfer.mb} MiB (streams, one file) | MB/s |`)
  console.log('|---|---:|')
  console.log(`| files.write (upload) | ${transfer.up.toFixed(0)} |`)
  console.log(`| files.read format stream (download) | ${transfer.down.toFixed(0)} |`)
}
if (errors.length) {
  console.log()
  for (const e of errors) console.log(`- error: ${e}`)
  process.exitCode = 1
}
