// Issue 2, lifecycle: a daemon restarted on the same data dir finds what the
// earlier run left, reaps or re-adopts it, and the API then tells the truth.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { after, test } from 'node:test'
import { Sandbox, SandboxNotFoundError } from 'e2b'
import { leftoverSandboxProcesses, startServer, useSdkEnv, waitFor } from './harness.mjs'
import { hostPidsWithMarker } from './hostproc.mjs'

const servers = []
after(async () => {
  for (const s of servers) if (!s.exited) await s.stop().catch(() => {})
  if (servers[0]) rmSync(servers[0].dataDir, { recursive: true, force: true })
})

test('a restarted daemon reaps or re-adopts what the earlier run left, and says which', async (t) => {
  // No warm pool: its sandboxes are meant to be running, and this test
  // counts what is left on the host.
  const noPool = ['--warm-pool', 'off']
  const first = await startServer({ name: 'restart-1', keepDataDir: true, extraArgs: noPool })
  servers.push(first)
  useSdkEnv(first)
  const run = randomBytes(6).toString('hex')
  const sbx = await Sandbox.create({ metadata: { run }, timeoutMs: 600_000 })
  const marker = `restart-marker-${run}`
  await sbx.commands.run(`echo kept > /tmp/${run}`)
  const bg = await sbx.commands.run(`bash -c 'sleep 600; : ${marker}'`, { background: true, timeoutMs: 0 })
  await waitFor(() => hostPidsWithMarker(marker).length > 0, { what: 'the marked process on the host' })
  // Leave the process running but stop listening to it (open streams at
  // shutdown are the next test's subject).
  await bg.disconnect()

  const ex = await first.stop()
  assert.equal(first.exited?.code ?? ex?.code, 0, `the daemon did not exit cleanly on SIGTERM: ${JSON.stringify(ex)}`)

  const second = await startServer({ name: 'restart-2', dataDir: first.dataDir, apiKey: first.apiKey, extraArgs: noPool })
  servers.push(second)
  useSdkEnv(second)

  let info = null
  try {
    info = await Sandbox.getInfo(sbx.sandboxId)
  } catch (err) {
    if (!(err instanceof SandboxNotFoundError)) throw err
  }
  const listed = await Sandbox.list({ query: { metadata: { run } } }).nextItems()

  if (info) {
    // Re-adopted: it must really be alive, with its files and processes.
    t.diagnostic('the sandbox was re-adopted')
    assert.equal(info.state, 'running')
    assert.deepEqual(listed.map((s) => s.sandboxId), [sbx.sandboxId])
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal((await again.commands.run(`cat /tmp/${run}`)).stdout, 'kept\n')
    const ps = await again.commands.run('ps -eo args=', { user: 'root' })
    assert.ok(ps.stdout.includes(marker), 'the re-adopted sandbox lost its background process')
    assert.equal(await again.kill(), true)
  } else {
    // Reaped: nothing of it may be left on the host.
    t.diagnostic('the sandbox was reaped')
    assert.deepEqual(listed, [], 'list shows a sandbox getInfo says is gone')
  }
  await waitFor(() => hostPidsWithMarker(marker).length === 0, { timeoutMs: 15_000, what: 'the sandbox processes to be gone' })
  assert.deepEqual(await leftoverSandboxProcesses(second, [sbx.sandboxId]), [])
  await assert.rejects(Sandbox.getInfo(sbx.sandboxId), SandboxNotFoundError)

  // The restarted daemon works as usual.
  const fresh = await Sandbox.create()
  assert.equal((await fresh.commands.run('echo ok')).stdout, 'ok\n')
  await fresh.kill()
})

test('SIGTERM with a command stream open stops the daemon promptly', async () => {
  const server = await startServer({ name: 'restart-stream' })
  servers.push(server)
  useSdkEnv(server)
  const sbx = await Sandbox.create()
  const handle = await sbx.commands.run('sleep 600', { background: true, timeoutMs: 0 })
  const t0 = Date.now()
  const ex = await server.stop() // throws if SIGTERM is ignored for 20 s
  const took = Date.now() - t0
  assert.ok(took < 10_000, `the daemon took ${took} ms to stop with a stream open`)
  assert.equal(ex?.code, 0, `exit after SIGTERM: ${JSON.stringify(ex)}`)
  // The client's stream ends instead of hanging.
  await assert.rejects(handle.wait())
})
