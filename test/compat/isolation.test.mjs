// Issue 2: isolation as a user of the official SDK can observe it, checked
// from both sides: inside the sandbox (commands) and on the host (/proc).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, networkInterfaces, totalmem, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, test } from 'node:test'
import { CommandExitError, Sandbox } from 'e2b'
import { daemonHealthy, repoRoot, track, useServer, waitFor } from './harness.mjs'
import { hostCgroupLimits, hostPidsWithMarker, hostProcessCount, hostUids } from './hostproc.mjs'

const server = useServer()
const here = dirname(fileURLToPath(import.meta.url))
mkdirSync(join(here, '.work'), { recursive: true })
const tag = () => randomBytes(6).toString('hex')

/** Runs cmd and returns its stdout, whatever the exit code. */
async function out(sbx, cmd, opts) {
  try {
    return (await sbx.commands.run(cmd, opts)).stdout
  } catch (err) {
    if (err instanceof CommandExitError) return err.stdout
    throw err
  }
}

/** Starts a long-running marked process in the sandbox and finds it on the host. */
async function markedHostPid(sbx, { user, sudo = false } = {}) {
  const marker = `sandpit-marker-${tag()}`
  const inner = `sleep 120; : ${marker}`
  const cmd = sudo ? `sudo -n bash -c '${inner}'` : `bash -c '${inner}'`
  const handle = await sbx.commands.run(cmd, { background: true, user, timeoutMs: 0 })
  const pids = await waitFor(
    () => {
      const p = hostPidsWithMarker(marker)
      return p.length > 0 ? p : null
    },
    { timeoutMs: 10_000, what: `host to see a process with ${marker}` },
  )
  return { marker, pids, handle }
}

describe('a sandbox sees nothing of the host', () => {
  let sbx
  const marker = `host-marker-${tag()}`

  let hostDirs
  before(async () => {
    // Markers in a host temp dir and next to the tests (a directory that is
    // not a system directory, so no template has a reason to carry it).
    hostDirs = [mkdtempSync(join(tmpdir(), 'sandpit-iso-')), mkdtempSync(join(here, '.work', 'iso-'))]
    for (const d of hostDirs) writeFileSync(join(d, marker), 'secret')
    sbx = track(server, await Sandbox.create())
  })
  after(() => {
    for (const d of hostDirs ?? []) rmSync(d, { recursive: true, force: true })
  })

  test('host files are not visible', async () => {
    for (const d of hostDirs) {
      const path = join(d, marker)
      assert.equal(await out(sbx, `test -e ${path} && echo visible || echo absent`), 'absent\n', `${path} is visible`)
      assert.equal(await out(sbx, `test -e ${path} && echo visible || echo absent`, { user: 'root' }), 'absent\n', `${path} is visible to root`)
    }
    // The checkout the tests run from is host-only too.
    assert.equal(await out(sbx, `test -e ${repoRoot} && echo visible || echo absent`, { user: 'root' }), 'absent\n', `${repoRoot} is visible`)
    // Host homes are not there; the sandbox has its own /home/user.
    const homes = (await out(sbx, 'ls -A /home', { user: 'root' })).split('\n').filter(Boolean)
    const hostHomes = readdirSync('/home').filter((h) => h !== 'user')
    for (const h of hostHomes) assert.ok(!homes.includes(h), `host home /home/${h} is visible`)
    assert.ok(homes.includes('user'), `no /home/user in ${homes}`)
  })

  test('the daemon data dir is not visible', async () => {
    assert.equal(await out(sbx, `test -e ${server.dataDir} && echo visible || echo absent`, { user: 'root' }), 'absent\n')
  })

  test('own hostname', async () => {
    const h = (await out(sbx, 'hostname')).trim()
    assert.ok(h.length > 0)
    assert.notEqual(h, hostname(), 'the sandbox has the host hostname')
  })

  test('own pid namespace: pid 1 is the sandbox init, ps shows only the sandbox', async () => {
    const hostInit = readFileSync('/proc/1/cmdline', 'utf8')
    const init = await out(sbx, "tr '\\0' ' ' < /proc/1/cmdline", { user: 'root' })
    assert.ok(init.length > 0, 'pid 1 has no command line')
    assert.notEqual(init.trim(), hostInit.split('\0').join(' ').trim(), 'pid 1 is the host init')
    const ps = await out(sbx, 'ps -eo pid=,args=', { user: 'root' })
    const procs = ps.trim().split('\n')
    assert.ok(procs.length < 20, `sandbox sees ${procs.length} processes:\n${ps}`)
    assert.ok(!ps.includes('sandpit serve'), 'the daemon is visible from the sandbox')
    assert.ok(!ps.includes('node'), `host processes are visible:\n${ps}`)
    assert.ok(procs.some((l) => l.trim().startsWith('1 ')), 'no pid 1 in ps')
  })

  test("the agent's memory, descriptors and start-up environment are out of reach, even of root", async () => {
    // Its environment at start held its config, the envd access token
    // included. It runs under a real uid of its own (so a fork bomb of
    // root's leaves it room), with no capability over it inside.
    for (const f of ['environ', 'maps', 'fd']) {
      const r = await out(sbx, `ls /proc/1/${f} >/dev/null 2>&1 && cat /proc/1/${f} >/dev/null 2>&1 && echo readable || echo denied`, { user: 'root' })
      assert.equal(r, 'denied\n', `root in the sandbox reads /proc/1/${f}`)
    }
    assert.match(await out(sbx, 'grep ^Uid: /proc/1/status', { user: 'root' }), /^Uid:\s+65535\s+0\s+0\s+0/)
  })

  test('root inside is not root outside', async () => {
    assert.equal(await out(sbx, 'sudo -n id -u'), '0\n')
    for (const how of [{ sudo: true }, { user: 'root' }]) {
      const { pids, handle } = await markedHostPid(sbx, how)
      try {
        for (const pid of pids) {
          const uids = hostUids(pid)
          assert.ok(uids, `host pid ${pid} vanished`)
          for (const u of uids) assert.notEqual(u, 0, `sandbox root (${JSON.stringify(how)}) is host uid 0 (pid ${pid}, uids ${uids})`)
        }
      } finally {
        await handle.kill()
      }
    }
    // And the default user is not a host-privileged uid either.
    const { pids, handle } = await markedHostPid(sbx, {})
    try {
      for (const pid of pids) for (const u of hostUids(pid)) assert.notEqual(u, 0)
    } finally {
      await handle.kill()
    }
  })

  test('only loopback when internet access is off', async () => {
    const s = track(server, await Sandbox.create({ allowInternetAccess: false }))
    const dev = await out(s, 'cat /proc/net/dev')
    const ifaces = dev
      .split('\n')
      .slice(2)
      .map((l) => l.split(':')[0].trim())
      .filter(Boolean)
    assert.deepEqual(ifaces, ['lo'])
    await s.kill()
  })

  test('no host interface and no host loopback service is reachable', async () => {
    const hostIfaces = readFileSync('/proc/net/dev', 'utf8')
      .split('\n')
      .slice(2)
      .map((l) => l.split(':')[0].trim())
      .filter((n) => n && n !== 'lo')
    // A sandbox has its own eth0 (its end of a veth pair): tell host
    // interfaces by hardware address and IP address, not by name.
    const hostMacs = hostIfaces
      .map((n) => { try { return readFileSync(`/sys/class/net/${n}/address`, 'utf8').trim() } catch { return '' } })
      .filter((m) => m && m !== '00:00:00:00:00:00')
    const sbxMacs = await out(sbx, 'cat /sys/class/net/*/address')
    for (const mac of hostMacs) assert.ok(!sbxMacs.includes(mac), `a host interface (${mac}) is visible in the sandbox`)
    const hostAddrs = Object.values(networkInterfaces()).flat().filter((a) => !a.internal).map((a) => a.address)
    const sbxAddrs = await out(sbx, 'ip -o addr show')
    for (const a of hostAddrs) assert.ok(!sbxAddrs.includes(` ${a}/`), `host address ${a} is configured in the sandbox:\n${sbxAddrs}`)
    // The daemon listens on the host's 127.0.0.1; the sandbox's loopback is its own.
    const probe = `python3 -c "import socket,sys
try:
    socket.create_connection(('127.0.0.1', ${server.port}), timeout=2); print('reachable')
except OSError: print('unreachable')"`
    assert.equal(await out(sbx, probe), 'unreachable\n')
  })
})

describe('two sandboxes see nothing of each other', () => {
  test('files and processes', async () => {
    const a = track(server, await Sandbox.create())
    const b = track(server, await Sandbox.create())
    const marker = `peer-${tag()}`
    await a.commands.run(`echo ${marker} > /tmp/${marker}; echo ${marker} > ~/${marker}`)
    assert.equal(await out(a, `cat /tmp/${marker}`), `${marker}\n`)
    assert.equal(await out(b, `ls /tmp/${marker} ~/${marker} 2>/dev/null | wc -l`), '0\n')
    const { handle } = await markedHostPid(a, {})
    try {
      const psB = await out(b, 'ps -eo args=', { user: 'root' })
      assert.ok(!psB.includes('sandpit-marker-'), `b sees a's process:\n${psB}`)
      const psA = await out(a, 'ps -eo args=', { user: 'root' })
      assert.ok(psA.includes('sandpit-marker-'), 'a does not see its own marked process (ps broken?)')
    } finally {
      await handle.kill()
    }
    await Promise.all([a.kill(), b.kill()])
  })
})

describe('a sandbox that fills its disk fills only its own', () => {
  test('writes past the disk size fail with ENOSPC; files.write says NotEnoughSpaceError; deleting frees it', async () => {
    const a = track(server, await Sandbox.create())
    const b = track(server, await Sandbox.create())
    // The JS SDK's getInfo leaves diskSizeMB out: ask the API.
    const info = await (await fetch(`${server.url}/sandboxes/${a.sandboxId}`, { headers: { 'X-API-KEY': server.apiKey } })).json()
    const size = Number((await out(a, "df -m / | awk 'NR==2 {print $2}'")).trim())
    assert.ok(size > 0 && size <= info.diskSizeMB, `df says ${size} MB, getInfo says diskSizeMB ${info.diskSizeMB}`)
    const fill = await out(a, `dd if=/dev/zero of=/home/user/fill bs=1M count=${info.diskSizeMB + 64} 2>&1; echo rc=$?`)
    assert.match(fill, /No space left on device/)
    assert.doesNotMatch(fill, /rc=0$/m)
    await assert.rejects(a.files.write('/home/user/more.txt', 'x'.repeat(1 << 20)), (err) => {
      assert.equal(err.constructor.name, 'NotEnoughSpaceError', `got ${err.constructor.name}: ${err.message}`)
      return true
    })
    // The host's filesystem and the other sandbox are untouched.
    await b.files.write('/home/user/fine.txt', 'still room\n')
    assert.equal(await b.files.read('/home/user/fine.txt'), 'still room\n')
    await a.commands.run('rm /home/user/fill')
    await a.files.write('/home/user/more.txt', 'room again\n')
    await Promise.all([a.kill(), b.kill()])
  })
})

describe('resource bombs die inside their sandbox', () => {
  /** Measures that a bystander sandbox and the daemon keep answering. */
  async function bystanderWhile(bystander, busy) {
    const latencies = []
    let done = false
    busy.finally(() => (done = true)).catch(() => {})
    while (!done) {
      const t0 = performance.now()
      const r = await bystander.commands.run('echo ok', { requestTimeoutMs: 15_000 })
      assert.equal(r.stdout, 'ok\n')
      assert.ok(await daemonHealthy(server, 15_000), 'daemon /health failed during the bomb')
      latencies.push(performance.now() - t0)
      await new Promise((r) => setTimeout(r, 200))
    }
    return latencies
  }

  test('fork bomb', async (t) => {
    const victim = track(server, await Sandbox.create())
    const bystander = track(server, await Sandbox.create())
    // Refuse to detonate without a pids limit: it would take the host down.
    const { pids, handle: probe } = await markedHostPid(victim, {})
    const limits = hostCgroupLimits(pids[0])
    await probe.kill()
    assert.ok(Number.isFinite(limits.pids), `no cgroup pids limit applies to sandbox processes (cgroups: ${limits.paths.join(' ')}); not running the fork bomb`)

    const before = hostProcessCount()
    let peak = before
    const bomb = victim.commands.run(`timeout -s KILL 8 bash -c ':(){ :|:& };:'; echo bomb-over`, { timeoutMs: 60_000, requestTimeoutMs: 60_000 })
    const sampler = setInterval(() => (peak = Math.max(peak, hostProcessCount())), 100)
    let latencies
    try {
      latencies = await bystanderWhile(bystander, bomb)
    } finally {
      clearInterval(sampler)
    }
    const res = await bomb.then((r) => r, (e) => e)
    // The bomb ran and was killed by its time bound; the shell after it went on.
    assert.ok(!(res instanceof Error) || res instanceof CommandExitError, `bomb command failed oddly: ${res?.message}`)
    assert.ok(peak - before <= limits.pids + 50, `host process count rose by ${peak - before}, above the sandbox pids limit ${limits.pids}`)
    assert.ok(latencies.length > 0)
    t.diagnostic(`pids limit ${limits.pids}; host processes +${peak - before} at peak; bystander echo: ${latencies.length} runs, max ${Math.max(...latencies).toFixed(0)} ms; bomb: ${res instanceof Error ? res.message : JSON.stringify(res.stdout)}`)
    // The victim itself recovers.
    await waitFor(async () => (await out(victim, 'echo ok')) === 'ok\n', { timeoutMs: 30_000, intervalMs: 500, what: 'the victim sandbox to recover' })
  })

  test('memory bomb', async (t) => {
    const victim = track(server, await Sandbox.create())
    const bystander = track(server, await Sandbox.create())
    const { pids, handle: probe } = await markedHostPid(victim, {})
    const limits = hostCgroupLimits(pids[0])
    await probe.kill()
    assert.ok(
      Number.isFinite(limits.memory) && limits.memory <= totalmem() / 2,
      `no cgroup memory limit below half the host RAM applies to sandbox processes (cgroups: ${limits.paths.join(' ')}); not running the memory bomb`,
    )

    const py = "a=[]\nwhile True: a.append(b'x' * (32 << 20))"
    const t0 = Date.now()
    const bomb = victim.commands.run(`timeout -s KILL 60 python3 -c "${py}"`, { timeoutMs: 90_000, requestTimeoutMs: 90_000 })
    const latencies = await bystanderWhile(bystander, bomb)
    await assert.rejects(bomb, (err) => {
      assert.ok(err instanceof CommandExitError, `memory bomb: ${err?.name}: ${err?.message}`)
      // 137: SIGKILL by the OOM killer seen through a shell; -1: the command
      // itself died by SIGKILL, which envd reports as upstream does (Go's
      // ExitCode() with status "signal: killed"); 1: MemoryError.
      // 124/timeout would mean no limit.
      const oomKilled = err.exitCode === -1 && /signal: killed/.test(err.error ?? '')
      assert.ok([137, 1].includes(err.exitCode) || oomKilled, `memory bomb exit code ${err.exitCode} (${err.error}), stderr: ${err.stderr}`)
      return true
    })
    assert.ok(Date.now() - t0 < 55_000, 'the memory bomb was only stopped by its 60 s time bound, not by a memory limit')
    t.diagnostic(`memory limit ${(limits.memory / 2 ** 20).toFixed(0)} MiB; bomb ended after ${((Date.now() - t0) / 1000).toFixed(1)} s; bystander echo: ${latencies.length} runs, max ${Math.max(...latencies).toFixed(0)} ms`)
    assert.ok(latencies.length > 0)
    await waitFor(async () => (await out(victim, 'echo ok')) === 'ok\n', { timeoutMs: 30_000, intervalMs: 500, what: 'the victim sandbox to recover' })
  })
})
