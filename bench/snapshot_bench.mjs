#!/usr/bin/env node
// snapshot_bench.mjs — snapshots and forks as an E2B SDK user sees them,
// against one `sandpit serve` without a warm pool (so creates are cold):
//   - createSnapshot latency of a sandbox that wrote 1, 10 and 100 MiB;
//   - fork({count}) latency for 1, 4 and 16 forks of a sandbox that wrote
//     100 MiB, until every fork answered its create;
//   - a cold Sandbox.create beside them.
// Prints p50/p95 in ms.
//
//   (cd test/compat && npm ci) && make build
//   node bench/snapshot_bench.mjs [--reps 10]
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const compatDir = resolve(here, '..', 'test', 'compat')
const { startServer, useSdkEnv } = await import(pathToFileURL(join(compatDir, 'harness.mjs')))
const { Sandbox } = await import(pathToFileURL(createRequire(join(compatDir, 'package.json')).resolve('e2b')))

const { values: opt } = parseArgs({ options: { reps: { type: 'string', default: '10' } } })
const N = Number(opt.reps)

function summary(ms) {
  const s = [...ms].sort((a, b) => a - b)
  const p50 = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
  return `p50 ${p50.toFixed(1)} ms, p95 ${s[Math.max(0, Math.ceil(0.95 * s.length) - 1)].toFixed(1)} ms (n=${s.length})`
}

async function timed(f) {
  const t0 = performance.now()
  const v = await f()
  return [performance.now() - t0, v]
}

const server = await startServer({ name: 'bench-snapshot', extraArgs: ['--warm-pool', 'off'] })
useSdkEnv(server)
try {
  const cold = []
  for (let i = 0; i < N + 2; i++) {
    const [ms, sbx] = await timed(() => Sandbox.create({ timeoutMs: 120_000 }))
    if (i >= 2) cold.push(ms)
    await sbx.kill()
  }
  console.log(`cold create: ${summary(cold)}`)

  for (const mib of [1, 10, 100]) {
    const sbx = await Sandbox.create({ timeoutMs: 600_000 })
    await sbx.commands.run(`head -c ${mib << 20} /dev/urandom > /home/user/data && sync`)
    const ms = []
    for (let i = 0; i < N + 1; i++) {
      const [took, snap] = await timed(() => sbx.createSnapshot())
      if (i >= 1) ms.push(took)
      await Sandbox.deleteSnapshot(snap.snapshotId)
    }
    console.log(`snapshot, ${mib} MiB written: ${summary(ms)}`)
    await sbx.kill()
  }

  const parent = await Sandbox.create({ timeoutMs: 600_000 })
  await parent.commands.run(`head -c ${100 << 20} /dev/urandom > /home/user/data && sync`)
  for (const count of [1, 4, 16]) {
    const ms = []
    const reps = count === 16 ? Math.max(3, Math.ceil(N / 3)) : N
    for (let i = 0; i < reps + 1; i++) {
      const [took, forks] = await timed(() => parent.fork({ count, timeoutMs: 120_000 }))
      const failed = forks.filter((f) => f instanceof Error)
      if (failed.length) throw new Error(`${failed.length} of ${count} forks failed: ${failed[0].message}`)
      if (i >= 1) ms.push(took)
      await Promise.all(forks.map((f) => f.kill()))
    }
    console.log(`fork x${count}, 100 MiB written: ${summary(ms)}`)
  }
  await parent.kill()
} finally {
  await server.stop()
}
