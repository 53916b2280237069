// The official E2B CLI (@e2b/cli, pinned in package.json) pointed at
// sandpit with the three variables a user sets, driving its
// non-interactive verbs: template list, sandbox list/info/logs/metrics/
// pause/resume/kill, sandbox snapshot create/list/delete. None of them
// needs E2B_ACCESS_TOKEN (a dashboard login): each sends E2B_API_KEY.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Sandbox, Template } from 'e2b'
import { track, useServer, waitFor } from './harness.mjs'

const server = useServer()
const cliBin = join(dirname(fileURLToPath(import.meta.url)), 'node_modules', '.bin', 'e2b')
// A home of its own: no ~/.e2b/config.json of whoever runs the tests.
const home = mkdtempSync(join(tmpdir(), 'sandpit-cli-home-'))
after(() => rmSync(home, { recursive: true, force: true }))

/** Runs the CLI; resolves with its exit code, stdout and stderr. */
function e2b(...args) {
  const env = {
    ...process.env,
    HOME: home,
    E2B_API_URL: server.url,
    E2B_SANDBOX_URL: server.url,
    E2B_API_KEY: server.apiKey,
    NO_UPDATE_NOTIFIER: '1', // no call to the npm registry
    NO_COLOR: '1',
    FORCE_COLOR: '0',
  }
  delete env.E2B_ACCESS_TOKEN
  return new Promise((resolve) => {
    execFile(cliBin, args, { env, timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr })
    })
  })
}

/** Runs the CLI and fails the test unless it exits 0. */
async function e2bOk(...args) {
  const r = await e2b(...args)
  assert.equal(r.code, 0, `e2b ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`)
  return r
}

/** The JSON lines of `e2b sandbox logs --format json`. */
async function logLines(id, ...extra) {
  const { stdout } = await e2bOk('sandbox', 'logs', id, '--format', 'json', ...extra)
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
}

describe('the official e2b CLI', () => {
  test('template list names base and shows its created date, disk size and envd version', async () => {
    const { stdout } = await e2bOk('template', 'list', '--format', 'json')
    const list = JSON.parse(stdout)
    const base = list.find((t) => t.templateID === 'base')
    assert.ok(base, `no base in ${stdout}`)
    assert.ok(base.aliases.includes('base'), `base has no name: ${JSON.stringify(base)}`)
    for (const t of list) {
      const created = new Date(t.createdAt)
      assert.ok(created.getFullYear() >= 2024 && created <= new Date(), `${t.templateID} created at ${t.createdAt}`)
      assert.ok(Number.isInteger(t.diskSizeMB) && t.diskSizeMB > 0, `${t.templateID} disk size ${t.diskSizeMB}`)
      assert.match(String(t.envdVersion), /^\d+\.\d+\.\d+/, `${t.templateID} envd version ${t.envdVersion}`)
      for (const k of ['buildID', 'cpuCount', 'memoryMB', 'public', 'names', 'updatedAt', 'buildStatus', 'buildCount', 'spawnCount']) {
        assert.ok(t[k] !== undefined && t[k] !== null, `${t.templateID} lacks ${k}: ${JSON.stringify(t)}`)
      }
    }

    const pretty = await e2bOk('template', 'list')
    const row = pretty.stdout.split('\n').find((l) => /\sbase\s/.test(l))
    assert.ok(row, `no base row in\n${pretty.stdout}`)
    const cells = row.trim().split(/\s{2,}/)
    assert.equal(cells[2], 'base', `base's name column in ${row}`)
    assert.doesNotMatch(pretty.stdout, /undefined|1\/1\/1\b/, pretty.stdout)
  })

  test('sandbox list, info, metrics, logs, pause, resume and kill', async () => {
    const sbx = track(server, await Sandbox.create({ timeoutMs: 120_000 }))
    const id = sbx.sandboxId
    await sbx.commands.run('echo hi')

    const listed = JSON.parse((await e2bOk('sandbox', 'list', '--format', 'json')).stdout)
    assert.ok(listed.some((s) => (s.sandboxId ?? s.sandboxID) === id), `list lacks ${id}: ${JSON.stringify(listed)}`)

    const info = JSON.parse((await e2bOk('sandbox', 'info', id, '--format', 'json')).stdout)
    assert.equal(info.sandboxId ?? info.sandboxID, id, JSON.stringify(info))
    assert.equal(info.templateId ?? info.templateID, 'base', JSON.stringify(info))

    const metrics = await e2bOk('sandbox', 'metrics', id, '--format', 'json')
    const sample = metrics.stdout.split('\n').find((l) => l.startsWith('{'))
    assert.ok(sample && JSON.parse(sample).memTotal > 0, `metrics: ${metrics.stdout}`)

    // The agent's own lines: it started, and ran the command.
    const lines = await waitFor(
      async () => {
        const ls = await logLines(id)
        return ls.some((l) => l.msg === 'process ended') && ls
      },
      { timeoutMs: 15_000, intervalMs: 500, what: 'the command in the sandbox log' },
    )
    assert.ok(lines.some((l) => l.msg === 'envd started'), JSON.stringify(lines))
    const started = lines.find((l) => l.msg === 'process started')
    assert.ok(started && started.level === 'info' && started.pid && started.logger === 'process', JSON.stringify(lines))
    assert.ok(lines.every((l) => !Number.isNaN(Date.parse(l.timestamp))), JSON.stringify(lines))
    const pretty = await e2bOk('sandbox', 'logs', id)
    assert.match(pretty.stdout, /INFO\s.*process started/, pretty.stdout)
    assert.doesNotMatch(pretty.stdout + pretty.stderr, /unknown error/)

    await e2bOk('sandbox', 'pause', id)
    const paused = JSON.parse((await e2bOk('sandbox', 'list', '--state', 'paused', '--format', 'json')).stdout)
    assert.ok(paused.some((s) => (s.sandboxId ?? s.sandboxID) === id), `paused list lacks ${id}: ${JSON.stringify(paused)}`)
    await e2bOk('sandbox', 'resume', id)
    assert.equal((await sbx.commands.run('echo back')).stdout, 'back\n')

    await e2bOk('sandbox', 'kill', id)
    const after = JSON.parse((await e2bOk('sandbox', 'list', '--format', 'json')).stdout)
    assert.ok(!after.some((s) => (s.sandboxId ?? s.sandboxID) === id), `${id} still listed after kill`)
    // An ended sandbox's logs are still there (why did it end?).
    const ended = await logLines(id)
    assert.ok(ended.some((l) => l.msg === 'envd started'), `logs of a killed sandbox: ${JSON.stringify(ended)}`)
    const unknown = await e2b('sandbox', 'logs', 'nosuchsandbox0000000')
    assert.notEqual(unknown.code, 0, `logs of an unknown sandbox: ${unknown.stdout}`)
    assert.match(unknown.stderr, /404|not found/i)
  })

  test('sandbox snapshot create, list and delete', async () => {
    const sbx = track(server, await Sandbox.create({ timeoutMs: 120_000 }))
    const id = sbx.sandboxId
    await sbx.files.write('/home/user/kept.txt', 'from the snapshot')
    const name = `cli-snap-${Date.now().toString(36)}`
    const made = await e2bOk('sandbox', 'snapshot', 'create', id, '--name', name)
    assert.doesNotMatch(made.stdout + made.stderr, /error/i, made.stdout + made.stderr)

    const all = JSON.parse((await e2bOk('sandbox', 'snapshot', 'list', '--format', 'json')).stdout)
    // E2B names a snapshot TEAM-SLUG/NAME:TAG.
    const snap = all.find((s) => (s.names ?? []).some((n) => n.replace(/^[^/]*\//, '').replace(/:[^:]*$/, '') === name))
    assert.ok(snap, `snapshot list lacks ${name}: ${JSON.stringify(all)}`)
    const snapID = snap.snapshotID ?? snap.snapshotId
    assert.ok(snapID, JSON.stringify(snap))
    const fromIt = JSON.parse((await e2bOk('sandbox', 'snapshot', 'list', id, '--format', 'json')).stdout)
    assert.deepEqual(fromIt.map((s) => s.snapshotID ?? s.snapshotId), [snapID], JSON.stringify(fromIt))
    const byName = JSON.parse((await e2bOk('sandbox', 'snapshot', 'list', '--name', name, '--format', 'json')).stdout)
    assert.deepEqual(byName.map((s) => s.snapshotID ?? s.snapshotId), [snapID], JSON.stringify(byName))
    const pretty = await e2bOk('sandbox', 'snapshot', 'list')
    assert.ok(pretty.stdout.includes(snapID), pretty.stdout)

    // What the CLI made is a snapshot the SDK starts sandboxes from.
    const child = track(server, await Sandbox.create(snapID, { timeoutMs: 60_000 }))
    assert.equal(await child.files.read('/home/user/kept.txt'), 'from the snapshot')
    await child.kill()

    await e2bOk('sandbox', 'snapshot', 'delete', snapID)
    const gone = JSON.parse((await e2bOk('sandbox', 'snapshot', 'list', '--format', 'json')).stdout)
    assert.ok(!gone.some((s) => (s.snapshotID ?? s.snapshotId) === snapID), `${snapID} still listed: ${JSON.stringify(gone)}`)
    await sbx.kill()
  })

  test("sandbox logs shows a template's start command output", async () => {
    const name = `cli-start-${Date.now()}`
    const tpl = Template()
      .fromTemplate('base')
      .setStartCmd('echo cli-start-marker-out; echo cli-start-marker-err >&2; exec sleep 3600', 'true')
    await Template.build(tpl, name, { cpuCount: 1, memoryMB: 512 })
    const sbx = track(server, await Sandbox.create(name, { timeoutMs: 120_000 }))
    const lines = await waitFor(
      async () => {
        const ls = await logLines(sbx.sandboxId)
        return ls.some((l) => l.msg === 'cli-start-marker-err') && ls.some((l) => l.msg === 'cli-start-marker-out') && ls
      },
      { timeoutMs: 15_000, intervalMs: 500, what: "the start command's output in the sandbox log" },
    )
    const out = lines.find((l) => l.msg === 'cli-start-marker-out')
    const err = lines.find((l) => l.msg === 'cli-start-marker-err')
    assert.equal(out.stream, 'stdout', JSON.stringify(out))
    assert.equal(err.stream, 'stderr', JSON.stringify(err))
    assert.equal(out.event_type, 'process_output')
    // The CLI's filter by logger (it strips "Svc" from upstream's names).
    const filtered = await logLines(sbx.sandboxId, '--loggers', 'process')
    assert.ok(filtered.some((l) => l.msg === 'cli-start-marker-out') && filtered.every((l) => l.logger.startsWith('process')), JSON.stringify(filtered))
    const pretty = await e2bOk('sandbox', 'logs', sbx.sandboxId)
    assert.match(pretty.stdout, /cli-start-marker-out/, pretty.stdout)
    await e2bOk('sandbox', 'kill', sbx.sandboxId)

    // The built template in the list: named, dated, built once, spawned once.
    const built = JSON.parse((await e2bOk('template', 'list', '--format', 'json')).stdout).find((t) => t.aliases.includes(name))
    assert.ok(built, `${name} not in the template list`)
    assert.equal(built.public, false)
    assert.equal(built.buildCount, 1)
    assert.equal(built.spawnCount, 1)
    assert.equal(built.buildStatus, 'ready')
    assert.ok(Date.parse(built.lastSpawnedAt) >= Date.parse(built.createdAt), JSON.stringify(built))
    assert.ok(built.diskSizeMB > 0 && built.envdVersion && built.cpuCount === 1 && built.memoryMB === 512, JSON.stringify(built))
  })
})
