#!/usr/bin/env node
// interp_bench.mjs — Sandbox.create() + first runCode("1+1") with the official
// @e2b/code-interpreter SDK, against a `sandpit serve` with its default warm
// pool (code-interpreter-v1 kept started, kernels warm), as the compat
// harness starts it. A pause between rounds lets the pool refill, as between
// a user's sessions.
//
//   (cd test/compat && npm ci) && make build && node bench/interp_bench.mjs [--rounds 20]
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const compatDir = resolve(here, '..', 'test', 'compat')
const { startServer, useSdkEnv } = await import(pathToFileURL(join(compatDir, 'harness.mjs')))
const req = createRequire(join(compatDir, 'package.json'))
const { Sandbox } = await import(pathToFileURL(req.resolve('@e2b/code-interpreter')))
const { values: opt } = parseArgs({ options: { rounds: { type: 'string', default: '20' } } })

const server = await startServer({ name: 'interp-bench' })
useSdkEnv(server)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const total = [], first = []
try {
  for (let i = 0; i < Number(opt.rounds); i++) {
    await sleep(1500)
    const t = performance.now()
    const sbx = await Sandbox.create()
    const t1 = performance.now()
    const ex = await sbx.runCode('1+1')
    const t2 = performance.now()
    if (ex.text !== '2') throw new Error(`runCode("1+1") gave ${ex.text}`)
    total.push(t2 - t)
    first.push(t2 - t1)
    await sbx.kill()
  }
} finally {
  await server.stop()
}
const q = (a, p) => a.sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))].toFixed(1)
console.log('| measure | n | p50 ms | p95 ms |\n|---|---:|---:|---:|')
console.log(`| Sandbox.create() + first runCode("1+1") | ${total.length} | ${q(total, 0.5)} | ${q(total, 0.95)} |`)
console.log(`| first runCode("1+1") alone | ${first.length} | ${q(first, 0.5)} | ${q(first, 0.95)} |`)
