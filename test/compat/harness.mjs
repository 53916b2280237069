// Harness: starts one real `sandpit serve` for a test file and points the
// official E2B SDK at it through its own environment variables.
//
// It builds nothing. SANDPIT_BIN names the binary (default: <repo>/bin/sandpit,
// built with `make build`).
//
// Usage in a test file:
//
//   import { useServer } from './harness.mjs'
//   const server = useServer()          // registers before/after hooks
//   test('...', async () => { ... server.url ... })

import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, readlinkSync, rmSync, accessSync, constants } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { after, before } from 'node:test'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
export const repoRoot = resolve(here, '..', '..')
const workDir = join(here, '.work') // gitignored: server logs of the last run

const STARTUP_DEADLINE_MS = Number(process.env.SANDPIT_STARTUP_TIMEOUT_MS ?? 30_000)
const SHUTDOWN_DEADLINE_MS = 20_000

/** A fresh API key in the shape E2B (and the Python SDK's check) expects. */
export function newApiKey() {
  return 'e2b_' + randomBytes(20).toString('hex')
}

/** Asks the kernel for a free TCP port on loopback. */
export async function freePort() {
  return await new Promise((resolvePort, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolvePort(port))
    })
  })
}

export function sandpitBin() {
  return resolve(repoRoot, process.env.SANDPIT_BIN ?? 'bin/sandpit')
}

/** Polls fn until it returns a truthy value or the deadline passes. */
export async function waitFor(fn, { timeoutMs = 10_000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  let lastErr
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      lastErr = err
    }
    if (Date.now() >= deadline) {
      const cause = lastErr ? `; last error: ${lastErr.message ?? lastErr}` : ''
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`)
    }
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/**
 * Starts `sandpit serve` and resolves once GET /health answers 2xx.
 * Throws with the server's log if the binary is missing, exits early, or does
 * not become healthy before the deadline.
 */
export async function startServer({ name = 'compat', extraArgs = [], env = {}, dataDir: reuseDir, apiKey: reuseKey, keepDataDir = false } = {}) {
  const bin = sandpitBin()
  try {
    accessSync(bin, constants.X_OK)
  } catch {
    throw new Error(
      `server not built: ${bin} is missing or not executable.\n` +
        `Build it with: (cd ${repoRoot} && make build), or set SANDPIT_BIN.`,
    )
  }

  const port = await freePort()
  const dataDir = reuseDir ?? mkdtempSync(join(tmpdir(), 'sandpit-compat-'))
  mkdirSync(workDir, { recursive: true })
  const logPath = join(workDir, `${name}-${port}.log`)
  const logFd = openSync(logPath, 'w')
  const apiKey = reuseKey ?? newApiKey()
  const url = `http://127.0.0.1:${port}`

  const childEnv = { ...process.env, ...env, SANDPIT_API_KEY: apiKey }
  delete childEnv.E2B_DEBUG
  // A throwaway data dir takes its sandboxes with it: they are killed at
  // stop rather than left for a next daemon that never comes.
  const killOnStop = keepDataDir ? [] : ['--kill-on-stop']
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, ...killOnStop, ...extraArgs]
  const child = spawn(bin, args, { env: childEnv, stdio: ['ignore', logFd, logFd] })
  closeSync(logFd)

  let exited = null
  const exitedPromise = new Promise((r) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal }
      r(exited)
    })
    child.on('error', (err) => {
      exited = { code: null, signal: null, error: err }
      r(exited)
    })
  })

  const readLog = () => {
    try {
      return readFileSync(logPath, 'utf8')
    } catch {
      return '(no log)'
    }
  }

  const fail = (why) => {
    if (!exited) child.kill('SIGKILL')
    return new Error(
      `sandpit serve did not start (${why}).\ncommand: ${bin} ${args.join(' ')}\n` +
        `----- server log (${logPath}) -----\n${readLog()}\n-----`,
    )
  }

  const deadline = Date.now() + STARTUP_DEADLINE_MS
  for (;;) {
    if (exited) {
      throw fail(exited.error ? `spawn error: ${exited.error.message}` : `exited early with code ${exited.code} signal ${exited.signal}`)
    }
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })
      await res.arrayBuffer()
      if (res.ok) break
    } catch {
      // not listening yet
    }
    if (Date.now() >= deadline) throw fail(`GET /health did not answer 2xx within ${STARTUP_DEADLINE_MS} ms`)
    await new Promise((r) => setTimeout(r, 25))
  }

  async function stop() {
    let failure = null
    if (!exited) {
      child.kill('SIGTERM')
      const timer = new Promise((r) => setTimeout(r, SHUTDOWN_DEADLINE_MS, 'timeout'))
      if ((await Promise.race([exitedPromise, timer])) === 'timeout') {
        child.kill('SIGKILL')
        await exitedPromise
        failure = new Error(`sandpit serve ignored SIGTERM for ${SHUTDOWN_DEADLINE_MS} ms (killed); log: ${logPath}`)
      }
    }
    // Sandboxes nobody can adopt any more (the daemon was killed, or its data
    // dir is about to go) must not outlive the test run on a shared machine.
    if (failure || !keepDataDir) {
      const orphans = sandboxProcesses(dataDir, [])
      for (const { pid } of orphans) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {}
      }
      if (orphans.length > 0) process.stderr.write(`note: killed ${orphans.length} sandbox process(es) left by the daemon in ${dataDir}\n`)
    }
    if (!keepDataDir) {
      try {
        rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 })
      } catch (err) {
        process.stderr.write(`warning: could not remove data dir ${dataDir}: ${err.message}\n`)
      }
    }
    if (failure) throw failure
    return exited
  }

  /** SIGKILL, as a crash: nothing of the data dir is touched. */
  async function crash() {
    if (!exited) child.kill('SIGKILL')
    return await exitedPromise
  }

  return {
    url,
    port,
    apiKey,
    dataDir,
    logPath,
    pid: child.pid,
    readLog,
    crash,
    get exited() {
      return exited
    },
    stop,
  }
}

/** Points the SDK at the server: the three variables a user would set. */
export function useSdkEnv(server) {
  process.env.E2B_API_URL = server.url
  process.env.E2B_SANDBOX_URL = server.url
  process.env.E2B_API_KEY = server.apiKey
  delete process.env.E2B_DEBUG
}

/**
 * Registers before/after hooks that start a server for this test file, set
 * the SDK's environment, and stop the server afterwards. The returned object
 * is filled in by the `before` hook.
 */
export function useServer(opts = {}) {
  const handle = {}
  const name = opts.name ?? basename(process.argv[1] ?? 'compat').replace(/\.test\.mjs$/, '')
  before(async () => {
    const s = await startServer({ ...opts, name })
    Object.defineProperties(handle, Object.getOwnPropertyDescriptors(s))
    handle.stop = s.stop
    useSdkEnv(s)
  })
  after(async () => {
    if (!handle.stop) return
    const crashed = handle.exited
    const sandboxes = handle.cleanup ?? []
    for (const sbx of sandboxes) await sbx.kill().catch(() => {})
    // Every sandbox is killed: none may live on (checked before stopping the
    // daemon, which may by design leave sandboxes to re-adopt on restart).
    const leaks = crashed ? [] : await leftoverSandboxProcesses(handle, sandboxes.map((s) => s.sandboxId))
    const ex = await handle.stop()
    if (leaks.length > 0) {
      throw new Error(`processes of killed sandboxes are still running on the host:\n${leaks.join('\n')}`)
    }
    if (crashed) {
      throw new Error(
        `sandpit serve died during the tests (code ${crashed.code}, signal ${crashed.signal}).\n` +
          `----- server log (${handle.logPath}) -----\n${handle.readLog()}\n-----`,
      )
    }
    if (ex && ex.code !== 0) {
      process.stderr.write(`note: sandpit serve exited with code ${ex.code} signal ${ex.signal} after SIGTERM; log: ${handle.logPath}\n`)
    }
  })
  return handle
}

function mountNs(pid) {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`)
  } catch {
    return null
  }
}

/**
 * Host processes of the given (killed) sandboxes: in a mount namespace of
 * their own (neither the host's nor the daemon's) whose mounts name the
 * daemon's data dir and the sandbox id. Polls a few seconds for them to go,
 * then lists what is left.
 */
export async function leftoverSandboxProcesses(server, sandboxIds, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  // Only the given sandboxes: a warm pool's sandboxes are alive by design.
  const ours = (p) => sandboxIds.some((id) => p.mount.includes(`/${id}/`))
  for (;;) {
    const found = sandboxProcesses(server.dataDir, [mountNs(server.pid)]).filter(ours)
    if (found.length === 0 || Date.now() >= deadline) return found.map(({ pid, cmd, mount }) => `pid ${pid}: ${cmd}\n    (mount: ${mount})`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * Host processes in a mount namespace other than the host's (and the given
 * ones) whose mounts name dataDir: processes of that daemon's sandboxes.
 */
function sandboxProcesses(dataDir, excludeNs) {
  const skip = new Set([mountNs('self'), ...excludeNs].filter(Boolean))
  const found = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const ns = mountNs(name)
    if (!ns || skip.has(ns)) continue
    let mounts
    try {
      mounts = readFileSync(`/proc/${name}/mountinfo`, 'utf8')
    } catch {
      continue
    }
    if (!mounts.includes(dataDir)) continue
    let cmd = ''
    try {
      cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ').trim()
    } catch {}
    const mount = mounts.split('\n').find((l) => l.includes(dataDir))
    found.push({ pid: Number(name), cmd, mount })
  }
  return found
}

/** Remembers a sandbox so the after hook kills it even when a test fails. */
export function track(server, sbx) {
  ;(server.cleanup ??= []).push(sbx)
  return sbx
}

/** GET /health on the daemon (control plane, no sandbox headers). */
export async function daemonHealthy(server, timeoutMs = 5000) {
  const res = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(timeoutMs) })
  await res.arrayBuffer()
  return res.ok
}

export { existsSync }
