// Issue 12, item 5: sandboxes outlive the daemon. A daemon stopped (SIGTERM)
// or crashed (SIGKILL) leaves its sandboxes running; the next one on the
// same data dir takes them over: same sandbox, files, deadline, processes,
// listening servers, and a command started before the restart can be
// connected to after it, its output still flowing.
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

test('a restarted daemon takes over the sandboxes the earlier run left, after SIGTERM and after SIGKILL', async (t) => {
  // No warm pool: its sandboxes are meant to be running, and this test
  // counts what is left on the host.
  const noPool = ['--warm-pool', 'off']
  const first = await startServer({ name: 'restart-1', keepDataDir: true, extraArgs: noPool })
  servers.push(first)
  useSdkEnv(first)
  const run = randomBytes(6).toString('hex')
  const sbx = await Sandbox.create({ metadata: { run }, timeoutMs: 600_000 })
  const marker = `restart-marker-${run}`
  await sbx.commands.run(`mkdir -p /tmp/site && echo served-${run} > /tmp/site/index.html && echo kept > /tmp/${run}`)
  await sbx.commands.run('python3 -m http.server 8000', { background: true, cwd: '/tmp/site', timeoutMs: 0 })
  // A command that prints a numbered, timed line every 100 ms for as long
  // as it lives; the marker finds it on the host.
  const bg = await sbx.commands.run(`bash -c 'i=0; while :; do i=$((i+1)); echo "tick $i $(date +%s%3N)"; sleep 0.1; done; : ${marker}'`, {
    background: true,
    timeoutMs: 0,
  })
  await waitFor(() => hostPidsWithMarker(marker).length > 0, { what: 'the marked process on the host' })
  const served = async (server) => {
    const res = await fetch(`${server.url}/index.html`, {
      headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8000' },
    })
    return res.ok && (await res.text()) === `served-${run}\n`
  }
  await waitFor(() => served(first), { what: 'the http server in the sandbox' })
  const before = await Sandbox.getInfo(sbx.sandboxId)
  // A paused sandbox stays paused across restarts, its processes frozen.
  const frozen = await Sandbox.create({ metadata: { run }, timeoutMs: 600_000 })
  await frozen.commands.run(`echo frozen > /tmp/${run}`)
  assert.equal(await frozen.pause(), true)

  // Checks that server, started at startedAt (ms), took the sandbox over,
  // whole.
  const takenOver = async (server, how, startedAt) => {
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.equal(info.state, 'running', `after ${how}`)
    assert.equal(info.metadata.run, run)
    assert.equal(info.endAt.getTime(), before.endAt.getTime(), `the deadline changed across ${how}`)
    assert.equal(info.startedAt.getTime(), before.startedAt.getTime())
    const listed = await Sandbox.list({ query: { metadata: { run }, state: ['running'] } }).nextItems()
    assert.deepEqual(listed.map((s) => s.sandboxId), [sbx.sandboxId])
    assert.equal((await Sandbox.getInfo(frozen.sandboxId)).state, 'paused', `the paused sandbox after ${how}`)
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal((await again.commands.run(`cat /tmp/${run}`)).stdout, 'kept\n')
    assert.ok(await served(server), `the sandbox's http server does not answer after ${how}`)
    // The command started before the restarts: connect to it and read
    // what it printed after the new daemon started.
    const out = []
    const handle = await again.commands.connect(bg.pid, { onStdout: (d) => out.push(d), timeoutMs: 0 })
    const fresh = () =>
      out
        .join('')
        .split('\n')
        .filter((l) => /^tick \d+ \d+$/.test(l) && Number(l.split(' ')[2]) > startedAt)
    await waitFor(() => fresh().length >= 3, { what: `output the command started before ${how} printed after it` })
    await handle.disconnect()
    return again
  }

  // SIGTERM: a clean stop leaves the sandbox running.
  await bg.disconnect()
  const ex = await first.stop()
  assert.equal(first.exited?.code ?? ex?.code, 0, `the daemon did not exit cleanly on SIGTERM: ${JSON.stringify(ex)}`)
  assert.ok(hostPidsWithMarker(marker).length > 0, 'the sandbox died with the daemon (SIGTERM)')
  let startedAt = Date.now()
  const second = await startServer({ name: 'restart-2', dataDir: first.dataDir, apiKey: first.apiKey, keepDataDir: true, extraArgs: noPool })
  servers.push(second)
  useSdkEnv(second)
  await takenOver(second, 'a SIGTERM restart', startedAt)
  assert.match(second.readLog(), /taken over from an earlier run/)

  // SIGKILL: a crash leaves it running too, with a stream open.
  const streaming = await Sandbox.connect(sbx.sandboxId)
  const open = await streaming.commands.connect(bg.pid, { timeoutMs: 0 })
  await second.crash()
  await assert.rejects(open.wait())
  assert.ok(hostPidsWithMarker(marker).length > 0, 'the sandbox died with the daemon (SIGKILL)')
  startedAt = Date.now()
  const third = await startServer({ name: 'restart-3', dataDir: first.dataDir, apiKey: first.apiKey, keepDataDir: true, extraArgs: noPool })
  servers.push(third)
  useSdkEnv(third)
  const again = await takenOver(third, 'a SIGKILL restart', startedAt)
  const resumed = await Sandbox.connect(frozen.sandboxId)
  assert.equal((await resumed.commands.run(`cat /tmp/${run}`)).stdout, 'frozen\n')
  assert.equal(await resumed.kill(), true)

  // Killed through the new daemon, nothing of it is left.
  assert.equal(await again.kill(), true)
  await waitFor(() => hostPidsWithMarker(marker).length === 0, { timeoutMs: 15_000, what: 'the sandbox processes to be gone' })
  assert.deepEqual(await leftoverSandboxProcesses(third, [sbx.sandboxId]), [])
  await assert.rejects(Sandbox.getInfo(sbx.sandboxId), SandboxNotFoundError)

  // The restarted daemon works as usual.
  const fresh = await Sandbox.create()
  assert.equal((await fresh.commands.run('echo ok')).stdout, 'ok\n')
  await fresh.kill()
  t.diagnostic('taken over after SIGTERM and after SIGKILL')
})

test('serve --kill-on-stop kills the sandboxes at a stop, and the next start finds none', async () => {
  const first = await startServer({ name: 'restart-kill', keepDataDir: true, extraArgs: ['--warm-pool', 'off', '--kill-on-stop'] })
  servers.push(first)
  useSdkEnv(first)
  const run = randomBytes(6).toString('hex')
  const marker = `restart-kill-${run}`
  const sbx = await Sandbox.create({ metadata: { run } })
  await sbx.commands.run(`bash -c 'sleep 600; : ${marker}'`, { background: true, timeoutMs: 0 })
  await waitFor(() => hostPidsWithMarker(marker).length > 0, { what: 'the marked process on the host' })
  const ex = await first.stop()
  assert.equal(ex?.code, 0)
  await waitFor(() => hostPidsWithMarker(marker).length === 0, { timeoutMs: 15_000, what: 'the sandbox processes to be gone' })
  const second = await startServer({ name: 'restart-kill-2', dataDir: first.dataDir, apiKey: first.apiKey, extraArgs: ['--warm-pool', 'off'] })
  servers.push(second)
  useSdkEnv(second)
  await assert.rejects(Sandbox.getInfo(sbx.sandboxId), SandboxNotFoundError)
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

test('SIGTERM with a command stream open stops promptly when the sandboxes outlive the daemon', async () => {
  const server = await startServer({ name: 'restart-stream-keep', keepDataDir: true, extraArgs: ['--warm-pool', 'off'] })
  servers.push(server)
  useSdkEnv(server)
  const sbx = await Sandbox.create()
  const handle = await sbx.commands.run('sleep 600', { background: true, timeoutMs: 0 })
  const t0 = Date.now()
  const ex = await server.stop()
  const took = Date.now() - t0
  assert.ok(took < 10_000, `the daemon took ${took} ms to stop with a stream open`)
  assert.equal(ex?.code, 0, `exit after SIGTERM: ${JSON.stringify(ex)}`)
  await assert.rejects(handle.wait())
  // Not left for ever: a daemon that kills at its stop takes it over and
  // kills it (this test's data dir goes).
  const next = await startServer({ name: 'restart-stream-keep-2', dataDir: server.dataDir, apiKey: server.apiKey, extraArgs: ['--warm-pool', 'off'] })
  servers.push(next)
  useSdkEnv(next)
  assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running')
})

test('a restart keeps each sandbox its team, a filesystem-only pause, lifecycle, snapshots and forks', async () => {
  const { execFileSync } = await import('node:child_process')
  const { sandpitBin } = await import('./harness.mjs')
  const noPool = ['--warm-pool', 'off']
  const first = await startServer({ name: 'restart-teams-1', keepDataDir: true, extraArgs: noPool })
  servers.push(first)
  const cli = (...args) => execFileSync(sandpitBin(), [...args, '--data-dir', first.dataDir], { encoding: 'utf8' })
  cli('teams', 'create', 'rt', '--max-sandboxes', '2')
  const keyRT = cli('keys', 'create', 'rt-key', '--team', 'rt').trim().split('\n').at(-1)
  const conn = (server, apiKey = keyRT) => ({ apiUrl: server.url, sandboxUrl: server.url, apiKey })

  const mine = await Sandbox.create({ ...conn(first), timeoutMs: 600_000, lifecycle: { onTimeout: 'pause', autoResume: true } })
  await mine.files.write('/home/user/kept.txt', 'kept across the restart')
  const stopped = await Sandbox.create({ ...conn(first), timeoutMs: 600_000 })
  await stopped.files.write('/home/user/fs.txt', 'kept by a filesystem-only pause')
  await stopped.betaPause({ keepMemory: false })
  assert.equal((await Sandbox.getInfo(stopped.sandboxId, conn(first))).state, 'paused')

  await first.crash()
  const second = await startServer({ name: 'restart-teams-2', dataDir: first.dataDir, apiKey: first.apiKey, keepDataDir: true, extraArgs: noPool })
  servers.push(second)

  // The team is the record's: team rt sees both, the default team neither,
  // and rt is still at its limit of two.
  const listed = await Sandbox.list(conn(second)).nextItems()
  assert.deepEqual(listed.map((s) => s.sandboxId).sort(), [mine.sandboxId, stopped.sandboxId].sort())
  assert.deepEqual(await Sandbox.list(conn(second, second.apiKey)).nextItems(), [])
  await assert.rejects(Sandbox.getInfo(mine.sandboxId, conn(second, second.apiKey)), SandboxNotFoundError)
  await assert.rejects(Sandbox.create({ ...conn(second), retries: 0 }), /max-sandboxes 2/)
  const info = await Sandbox.getInfo(mine.sandboxId, conn(second))
  assert.deepEqual(info.lifecycle, { onTimeout: 'pause', autoResume: true })

  // The filesystem-only paused one stayed paused and resumes with its files.
  assert.equal((await Sandbox.getInfo(stopped.sandboxId, conn(second))).state, 'paused')
  const resumed = await Sandbox.connect(stopped.sandboxId, conn(second))
  assert.equal(await resumed.files.read('/home/user/fs.txt'), 'kept by a filesystem-only pause')

  // A sandbox of the earlier run can be snapshotted and forked.
  const again = await Sandbox.connect(mine.sandboxId, conn(second))
  const snap = await again.createSnapshot()
  await resumed.kill()
  const fromSnap = await Sandbox.create(snap.snapshotId, conn(second))
  assert.equal(await fromSnap.files.read('/home/user/kept.txt'), 'kept across the restart')
  await fromSnap.kill()
  const [fork] = await again.fork({ count: 1 })
  assert.ok(!(fork instanceof Error), `fork: ${fork?.message}`)
  assert.equal(await fork.files.read('/home/user/kept.txt'), 'kept across the restart')
  await fork.kill()
  await again.kill()
})
