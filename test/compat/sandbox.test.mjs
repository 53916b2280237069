// Issue 2: sandbox lifecycle and commands, driven through the official e2b SDK.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, test } from 'node:test'
import {
  AuthenticationError,
  CommandExitError,
  NotFoundError,
  Sandbox,
  SandboxError,
  SandboxNotFoundError,
} from 'e2b'
import { newApiKey, track, useServer, waitFor } from './harness.mjs'

const server = useServer()
const tag = () => randomBytes(6).toString('hex')

describe('sandbox lifecycle and commands', () => {
  /** @type {Sandbox} */
  let sbx
  const runId = tag()
  // The SDK URL-encodes metadata filters three times over; odd characters check the server undoes all of it.
  const NOTE = 'a b&c=d/é?'

  test('create with the default template', async () => {
    sbx = track(server, await Sandbox.create({ metadata: { suite: 'compat', run: runId, note: NOTE }, envs: { GLOBAL_VAR: 'from-create', SHARED: 'global' } }))
    assert.equal(typeof sbx.sandboxId, 'string')
    assert.ok(sbx.sandboxId.length > 0, 'sandboxId is empty')
  })

  test('commands.run: stdout and exit code', async () => {
    const r = await sbx.commands.run('echo hi')
    assert.equal(r.stdout, 'hi\n')
    assert.equal(r.stderr, '')
    assert.equal(r.exitCode, 0)
  })

  test('commands.run: stderr', async () => {
    const r = await sbx.commands.run('echo oops >&2; echo out')
    assert.equal(r.stderr, 'oops\n')
    assert.equal(r.stdout, 'out\n')
    assert.equal(r.exitCode, 0)
  })

  test('commands.run: non-zero exit throws CommandExitError', async () => {
    await assert.rejects(sbx.commands.run('echo before; exit 3'), (err) => {
      assert.ok(err instanceof CommandExitError, `expected CommandExitError, got ${err?.name}: ${err?.message}`)
      assert.equal(err.exitCode, 3)
      assert.equal(err.stdout, 'before\n')
      return true
    })
  })

  test('onStdout chunks arrive while the command still runs', async () => {
    const chunks = []
    const t0 = performance.now()
    const r = await sbx.commands.run('for i in 1 2 3; do echo $i; sleep 0.3; done', {
      onStdout: (data) => chunks.push({ data, at: performance.now() - t0 }),
    })
    const done = performance.now() - t0
    assert.equal(r.stdout, '1\n2\n3\n')
    assert.equal(chunks.map((c) => c.data).join(''), '1\n2\n3\n')
    assert.ok(chunks.length >= 2, `output came in ${chunks.length} chunk(s): not streamed`)
    // The first line is printed ~0.9 s before the command ends; allow for noise.
    assert.ok(
      chunks[0].at < done - 400,
      `first chunk at ${chunks[0].at.toFixed(0)} ms, command finished at ${done.toFixed(0)} ms: output was buffered`,
    )
  })

  test('onStderr streams stderr', async () => {
    const seen = []
    await sbx.commands.run('echo e1 >&2; sleep 0.2; echo e2 >&2', { onStderr: (d) => seen.push(d) })
    assert.equal(seen.join(''), 'e1\ne2\n')
  })

  test('background command: list, kill, wait', async () => {
    const marker = `bg-${tag()}`
    const h = await sbx.commands.run(`sleep 60; echo ${marker}`, { background: true })
    assert.equal(typeof h.pid, 'number')
    const listed = await sbx.commands.list()
    assert.ok(listed.some((p) => p.pid === h.pid), `pid ${h.pid} not in commands.list(): ${JSON.stringify(listed)}`)

    const t0 = Date.now()
    assert.equal(await h.kill(), true)
    await assert.rejects(h.wait(), (err) => {
      assert.ok(err instanceof SandboxError, `wait() after kill rejected with ${err?.name}: ${err?.message}`)
      return true
    })
    assert.ok(Date.now() - t0 < 10_000, 'wait() did not end promptly after kill')
    assert.ok(!h.stdout.includes(marker), 'killed command ran to completion')
    // The process is gone: a second kill finds nothing.
    assert.equal(await sbx.commands.kill(h.pid), false)
    const after = await sbx.commands.list()
    assert.ok(!after.some((p) => p.pid === h.pid), 'killed pid still listed')
  })

  test('background command: wait for a normal exit', async () => {
    const h = await sbx.commands.run('sleep 0.3; echo done', { background: true })
    const r = await h.wait()
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'done\n')
  })

  test('sendStdin to cat, then closeStdin', async () => {
    let out = ''
    const h = await sbx.commands.run('cat', { background: true, stdin: true, onStdout: (d) => (out += d) })
    await sbx.commands.sendStdin(h.pid, 'hello\n')
    await waitFor(() => out.includes('hello\n'), { what: 'cat to echo stdin' })
    await h.sendStdin('world\n')
    await waitFor(() => out.includes('world\n'), { what: 'cat to echo second line' })
    await sbx.commands.closeStdin(h.pid)
    const r = await h.wait()
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'hello\nworld\n')
  })

  test('env vars at create and per command', async () => {
    assert.equal((await sbx.commands.run('echo "$GLOBAL_VAR"')).stdout, 'from-create\n')
    const r = await sbx.commands.run('echo "$PER_CMD $SHARED"', { envs: { PER_CMD: 'per-command', SHARED: 'override' } })
    assert.equal(r.stdout, 'per-command override\n')
    // Per-command values do not stick.
    assert.equal((await sbx.commands.run('echo "[$PER_CMD] $SHARED"')).stdout, '[] global\n')
    // The agent's own Go runtime settings (one P) stay the agent's: a Go
    // program the user runs gets every CPU of the sandbox.
    assert.equal((await sbx.commands.run('echo "[${GOMAXPROCS-unset}]"')).stdout, '[unset]\n')
  })

  test('cwd: default home and per command', async () => {
    assert.equal((await sbx.commands.run('pwd')).stdout, '/home/user\n')
    assert.equal((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n')
    await assert.rejects(sbx.commands.run('pwd', { cwd: '/no/such/dir' }), 'a missing cwd must be an error')
  })

  test('default user is "user"; user: root runs as root', async () => {
    assert.equal((await sbx.commands.run('whoami')).stdout, 'user\n')
    assert.equal((await sbx.commands.run('echo $HOME')).stdout, '/home/user\n')
    assert.equal((await sbx.commands.run('id -u')).stdout, '1000\n')
    assert.equal((await sbx.commands.run('whoami', { user: 'root' })).stdout, 'root\n')
    assert.equal((await sbx.commands.run('id -u', { user: 'root' })).stdout, '0\n')
    assert.equal((await sbx.commands.run('sudo -n whoami')).stdout, 'root\n')
  })

  test('Sandbox.list finds it by metadata', async () => {
    const collect = async (query) => {
      const pager = Sandbox.list({ query })
      const items = []
      while (pager.hasNext) items.push(...(await pager.nextItems()))
      return items
    }
    const found = await collect({ metadata: { run: runId } })
    assert.deepEqual(found.map((s) => s.sandboxId), [sbx.sandboxId])
    assert.equal(found[0].metadata.suite, 'compat')
    assert.equal(found[0].state, 'running')
    const byNote = await collect({ metadata: { note: NOTE, run: runId } })
    assert.deepEqual(byNote.map((s) => s.sandboxId), [sbx.sandboxId], 'filter on a metadata value with &, =, / and non-ASCII')
    assert.deepEqual(await collect({ metadata: { note: 'a b', run: runId } }), [], 'a prefix of a metadata value must not match')
    const none = await collect({ metadata: { run: 'no-such-' + runId } })
    assert.deepEqual(none, [])
    const all = await collect(undefined)
    assert.ok(all.some((s) => s.sandboxId === sbx.sandboxId), 'unfiltered list misses the sandbox')
  })

  test('getInfo fields', async () => {
    const info = await sbx.getInfo()
    assert.equal(info.sandboxId, sbx.sandboxId)
    assert.equal(typeof info.templateId, 'string')
    assert.ok(info.templateId.length > 0)
    assert.deepEqual(info.metadata, { suite: 'compat', run: runId, note: NOTE })
    assert.equal(info.state, 'running')
    assert.match(info.envdVersion, /^\d+\.\d+\.\d+/)
    assert.ok(info.cpuCount > 0, `cpuCount ${info.cpuCount}`)
    assert.ok(info.memoryMB > 0, `memoryMB ${info.memoryMB}`)
    assert.ok(!Number.isNaN(info.startedAt.getTime()), 'startedAt is not a date')
    assert.ok(info.startedAt.getTime() <= Date.now() + 2000, 'startedAt is in the future')
    // No timeout given: the /v2 default is 300 s.
    const lifetime = (info.endAt - info.startedAt) / 1000
    assert.ok(Math.abs(lifetime - 300) <= 5, `default lifetime ${lifetime}s, want 300s`)
  })

  test('setTimeout moves endAt', async () => {
    await sbx.setTimeout(120_000)
    const info = await Sandbox.getInfo(sbx.sandboxId)
    const left = (info.endAt.getTime() - Date.now()) / 1000
    assert.ok(left > 100 && left <= 125, `endAt is ${left.toFixed(1)}s away, want ~120s`)
    await sbx.setTimeout(600_000)
    const info2 = await sbx.getInfo()
    const left2 = (info2.endAt.getTime() - Date.now()) / 1000
    assert.ok(left2 > 580 && left2 <= 605, `endAt is ${left2.toFixed(1)}s away, want ~600s`)
  })

  test('Sandbox.connect and run through the connected object', async () => {
    const marker = tag()
    await sbx.commands.run(`echo ${marker} > /tmp/connect-marker`)
    const endBefore = (await sbx.getInfo()).endAt.getTime()
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(again.sandboxId, sbx.sandboxId)
    // connect to a running sandbox extends its timeout, it never shortens it (600 s > the 300 s default).
    const endAfter = (await again.getInfo()).endAt.getTime()
    assert.ok(endAfter >= endBefore - 2000, `connect shortened the deadline by ${((endBefore - endAfter) / 1000).toFixed(0)} s`)
    const r = await again.commands.run('cat /tmp/connect-marker')
    assert.equal(r.stdout, `${marker}\n`)
    assert.equal(await again.isRunning(), true)
  })

  test('kill: the sandbox is gone and refuses work', async () => {
    const id = sbx.sandboxId
    assert.equal(await sbx.kill(), true)
    await assert.rejects(Sandbox.getInfo(id), (err) => {
      assert.ok(err instanceof SandboxNotFoundError, `getInfo after kill: ${err?.name}: ${err?.message}`)
      assert.ok(err instanceof NotFoundError)
      return true
    })
    await assert.rejects(sbx.commands.run('echo still-here'), (err) => {
      assert.ok(err instanceof SandboxNotFoundError, `run after kill: ${err?.name}: ${err?.message}`)
      return true
    })
    assert.equal(await sbx.isRunning(), false)
    assert.equal(await sbx.kill(), false, 'second kill should report not found')
    const pager = Sandbox.list({ query: { metadata: { run: runId } } })
    assert.deepEqual(await pager.nextItems(), [])
    await assert.rejects(Sandbox.connect(id), SandboxNotFoundError)
  })
})

describe('Sandbox.list', () => {
  test('pagination, order, state and template filters', async () => {
    const run = tag()
    const made = []
    for (let i = 0; i < 3; i++) {
      made.push(track(server, await Sandbox.create({ metadata: { run, i: String(i) } })))
      await new Promise((r) => setTimeout(r, 20)) // distinct start times
    }
    const pages = []
    const pager = Sandbox.list({ query: { metadata: { run } }, limit: 2, order: 'asc' })
    while (pager.hasNext) pages.push(await pager.nextItems())
    assert.deepEqual(pages.map((p) => p.length), [2, 1], 'limit 2 over 3 sandboxes gives pages of 2 and 1')
    assert.deepEqual(pages.flat().map((s) => s.metadata.i), ['0', '1', '2'], 'order asc is by start time')

    const desc = await Sandbox.list({ query: { metadata: { run } }, order: 'desc' }).nextItems()
    assert.deepEqual(desc.map((s) => s.metadata.i), ['2', '1', '0'])

    const running = await Sandbox.list({ query: { metadata: { run }, state: ['running'] } }).nextItems()
    assert.equal(running.length, 3)
    const paused = await Sandbox.list({ query: { metadata: { run }, state: ['paused'] } }).nextItems()
    assert.deepEqual(paused, [])

    const byTemplate = await Sandbox.list({ query: { metadata: { run }, template: 'base' } }).nextItems()
    assert.equal(byTemplate.length, 3, 'template filter by alias "base"')

    for (const s of made) await s.kill()
    assert.deepEqual(await Sandbox.list({ query: { metadata: { run } } }).nextItems(), [])
  })
})

describe('control plane errors', () => {
  test('Sandbox.kill(unknown id) returns false', async () => {
    assert.equal(await Sandbox.kill('inosuchsandbox' + tag()), false)
  })

  test('Sandbox.getInfo(unknown id) throws SandboxNotFoundError', async () => {
    await assert.rejects(Sandbox.getInfo('inosuchsandbox' + tag()), SandboxNotFoundError)
  })

  test('a bad API key gives AuthenticationError', async () => {
    const apiKey = newApiKey()
    await assert.rejects(Sandbox.create({ apiKey }), (err) => {
      assert.ok(err instanceof AuthenticationError, `create with bad key: ${err?.name}: ${err?.message}`)
      return true
    })
    await assert.rejects(Sandbox.list({ apiKey }).nextItems(), AuthenticationError)
    await assert.rejects(Sandbox.kill('whatever', { apiKey }), AuthenticationError)
  })

  test('an unknown template is an error, not a sandbox', async () => {
    await assert.rejects(Sandbox.create('no-such-template-' + tag()), SandboxError)
  })
})

describe('timeouts', () => {
  test('a sandbox with a short timeout disappears on its own', async () => {
    const t0 = Date.now()
    const s = track(server, await Sandbox.create({ timeoutMs: 3000 }))
    assert.equal((await s.commands.run('echo alive')).stdout, 'alive\n')
    const info = await s.getInfo()
    const lifetime = (info.endAt - info.startedAt) / 1000
    assert.ok(Math.abs(lifetime - 3) <= 1, `lifetime ${lifetime}s, want 3s`)
    await waitFor(
      async () => {
        try {
          await Sandbox.getInfo(s.sandboxId)
          return false
        } catch (err) {
          if (err instanceof SandboxNotFoundError) return true
          throw err
        }
      },
      { timeoutMs: 20_000, intervalMs: 200, what: 'the sandbox to expire' },
    )
    const gone = (Date.now() - t0) / 1000
    assert.ok(gone >= 2, `sandbox gone after ${gone}s, before its 3s timeout`)
    await assert.rejects(s.commands.run('echo zombie'), SandboxError)
    assert.equal(await s.isRunning(), false)
  })

  test('command timeoutMs kills the command', async () => {
    const s = track(server, await Sandbox.create())
    const t0 = Date.now()
    await assert.rejects(s.commands.run('sleep 30', { timeoutMs: 1000 }), SandboxError)
    assert.ok(Date.now() - t0 < 10_000, 'command outlived its timeoutMs')
    // The SDK gives up on its own clock; the kill reaches the sandbox a moment later
    // (abort, proxy, agent), so a bounded wait, not one look.
    let last
    await waitFor(
      async () => {
        last = (await s.commands.run('pgrep -x sleep || echo none')).stdout
        return last === 'none\n'
      },
      { timeoutMs: 5000, intervalMs: 50, what: 'the timed-out sleep to die' },
    ).catch((err) => {
      throw new Error(`${err.message}; pgrep still finds ${JSON.stringify(last)}`)
    })
    await s.kill()
  })
})

describe('pause, resume and metrics', () => {
  test('pause() freezes, a second pause() is false, Sandbox.connect resumes', async () => {
    const sbx = track(server, await Sandbox.create())
    await sbx.commands.run('echo kept > /tmp/state; sleep 300 & echo $! > /tmp/pid', { background: false })
    assert.equal(await sbx.pause(), true)
    assert.equal(await sbx.pause(), false, 'pausing a paused sandbox')
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')
    const paused = await Sandbox.list({ query: { state: ['paused'] } }).nextItems()
    assert.ok(paused.some((s) => s.sandboxId === sbx.sandboxId), 'list by state=paused')
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running')
    // What ran before the pause is still there, memory and processes.
    const r = await again.commands.run('cat /tmp/state; kill -0 $(cat /tmp/pid) && echo alive')
    assert.equal(r.stdout, 'kept\nalive\n')
    await again.kill()
  })

  test('getMetrics reports CPU, memory and disk', async () => {
    const sbx = track(server, await Sandbox.create())
    await sbx.commands.run('head -c 20000000 /dev/urandom | sha256sum >/dev/null; head -c 8388608 /dev/urandom > ~/blob')
    const ms = await sbx.getMetrics()
    assert.equal(ms.length, 1)
    const m = ms[0]
    assert.ok(m.cpuCount >= 1 && m.cpuUsedPct > 0, `cpu ${m.cpuCount} ${m.cpuUsedPct}`)
    assert.ok(m.memUsed > 0 && m.memTotal >= m.memUsed, `mem ${m.memUsed}/${m.memTotal}`)
    assert.ok(m.diskUsed >= 8 << 20 && m.diskTotal > m.diskUsed, `disk ${m.diskUsed}/${m.diskTotal}`)
    assert.ok(m.timestamp instanceof Date || typeof m.timestamp === 'string')
    assert.equal((await sbx.getMetrics()).length, 2, 'a second read adds a sample')
    await sbx.kill()
  })
})
