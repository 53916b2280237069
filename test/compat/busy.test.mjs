// Issue 18, item 6: backpressure. A daemon out of room for creates (too many
// in flight, at --max-sandboxes, host memory below --min-free-memory)
// refuses them at once with 503 and Retry-After, which the official SDK
// raises as ServiceBusyError; nothing of a refused create is left, and
// creates work again once there is room.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Sandbox, SandboxError, ServiceBusyError } from 'e2b'
import { daemonHealthy, startServer, track, useSdkEnv, useServer } from './harness.mjs'

const server = useServer({ name: 'busy', extraArgs: ['--warm-pool', 'off', '--max-pending-creates', '1'] })

/** Asserts err is the SDK's ServiceBusyError (not a SandboxError) saying what. */
function assertBusy(err, what) {
  assert.ok(err instanceof ServiceBusyError, `${err?.constructor?.name}: ${err?.message}`)
  assert.equal(err.constructor.name, 'ServiceBusyError')
  assert.equal(err.statusCode, 503)
  assert.ok(!(err instanceof SandboxError), 'ServiceBusyError is not a SandboxError')
  assert.match(err.message, what)
}

async function listedIds() {
  const ids = []
  const paginator = Sandbox.list()
  while (paginator.hasNext) for (const s of await paginator.nextItems()) ids.push(s.sandboxId)
  return ids.sort()
}

/** POST /sandboxes as a raw client, to see the headers the SDK hides. */
async function rawCreate(s) {
  const r = await fetch(`${s.url}/sandboxes`, {
    method: 'POST',
    headers: { 'X-API-KEY': s.apiKey, 'Content-Type': 'application/json' },
    body: JSON.stringify({ templateID: 'base', timeout: 60 }),
  })
  return { status: r.status, retryAfter: r.headers.get('retry-after'), shouldRetry: r.headers.get('should-retry'), body: await r.json() }
}

test('a burst past --max-pending-creates: some creates get ServiceBusyError, the rest succeed, nothing is half-made', async () => {
  const results = await Promise.allSettled(Array.from({ length: 8 }, () => Sandbox.create({ timeoutMs: 120_000 })))
  const made = results.filter((r) => r.status === 'fulfilled').map((r) => track(server, r.value))
  const refused = results.filter((r) => r.status === 'rejected').map((r) => r.reason)
  assert.ok(made.length >= 1, `no create of the burst succeeded: ${refused.map((e) => e.message).join('; ')}`)
  assert.ok(refused.length >= 1, 'a burst of 8 with --max-pending-creates 1 had none refused')
  for (const err of refused) assertBusy(err, /creates already in flight, the daemon's maximum \(sandpit serve --max-pending-creates 1\)/)
  // Only the successful ones exist, and they work.
  assert.deepEqual(await listedIds(), made.map((s) => s.sandboxId).sort())
  for (const s of made) assert.equal((await s.commands.run('echo ok')).stdout, 'ok\n')

  // The same on the wire, for a bigger burst: each create is answered,
  // made or refused with 503, Should-Retry and Retry-After.
  const raw = await Promise.all(Array.from({ length: 32 }, () => rawCreate(server)))
  assert.ok(raw.every((r) => r.status === 201 || r.status === 503), `raw burst statuses: ${raw.map((r) => r.status)}`)
  const busy = raw.filter((r) => r.status === 503)
  assert.ok(busy.length >= 1, `raw burst statuses: ${raw.map((r) => r.status)}`)
  for (const r of busy) {
    assert.equal(r.retryAfter, '1')
    assert.equal(r.shouldRetry, 'true')
    assert.equal(r.body.code, 503)
  }
  for (const r of raw.filter((r) => r.status === 201)) await Sandbox.kill(r.body.sandboxID)
  for (const s of made) await s.kill()

  // With room again, creates work, and the refusals were counted.
  const after = track(server, await Sandbox.create())
  assert.equal((await after.commands.run('echo again')).stdout, 'again\n')
  await after.kill()
  const metrics = await (await fetch(`${server.url}/metrics`, { headers: { 'X-API-KEY': server.apiKey } })).text()
  const m = metrics.match(/^sandpit_creates_refused_total\{reason="pending_creates"\} (\d+)/m)
  assert.ok(m && Number(m[1]) >= refused.length + busy.length, `refused counter: ${m?.[0]}`)
  assert.ok(await daemonHealthy(server))
})

test('at --max-sandboxes a create gets ServiceBusyError until one ends', async () => {
  const s = await startServer({ name: 'busy-max', extraArgs: ['--warm-pool', 'off', '--max-sandboxes', '2'] })
  const opts = { apiKey: s.apiKey }
  try {
    useSdkEnv(s)
    const a = track(s, await Sandbox.create(opts))
    track(s, await Sandbox.create(opts))
    await assert.rejects(Sandbox.create(opts), (err) => {
      assertBusy(err, /the daemon holds 2 sandboxes \(creates in flight included\), its maximum \(sandpit serve --max-sandboxes 2\)/)
      return true
    })
    assert.equal((await listedIds()).length, 2)
    await a.kill()
    const c = track(s, await Sandbox.create(opts))
    assert.equal((await c.commands.run('echo ok')).stdout, 'ok\n')
    for (const sbx of s.cleanup) await sbx.kill().catch(() => {})
  } finally {
    useSdkEnv(server)
    await s.stop()
  }
})

test('below --min-free-memory a create fails at once with ServiceBusyError naming the floor', async () => {
  const s = await startServer({ name: 'busy-mem', extraArgs: ['--warm-pool', 'off', '--min-free-memory', '10TiB'] })
  try {
    useSdkEnv(s)
    await assert.rejects(Sandbox.create(), (err) => {
      assertBusy(err, /the host has \d+ MiB of memory available, below the 10485760 MiB floor \(sandpit serve --min-free-memory\)/)
      return true
    })
    assert.deepEqual(await listedIds(), [])
    const r = await rawCreate(s)
    assert.equal(r.status, 503)
    assert.equal(r.retryAfter, '2')
    assert.ok(await daemonHealthy(s))
  } finally {
    useSdkEnv(server)
    await s.stop()
  }
})
