// Issue 11: teams own what they make. Two teams' keys against one daemon:
// team b's key on team a's sandbox answers as for an unknown ID, lists are
// the team's own, team limits answer 429 (the SDK's RateLimitError), and the
// audit log says who did what without a key's secret.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { test } from 'node:test'
import { RateLimitError, Sandbox, SandboxNotFoundError, NotFoundError } from 'e2b'
import { sandpitBin, useServer, useSdkEnv } from './harness.mjs'

const server = useServer({ name: 'teams' })

/** Runs the sandpit CLI on the daemon's data dir while it runs. */
function cli(...args) {
  return execFileSync(sandpitBin(), [...args, '--data-dir', server.dataDir], { encoding: 'utf8' })
}

/** Makes team name with flags and returns a fresh key of it (the CLI prints it last). */
function teamKey(name, ...limits) {
  cli('teams', 'create', name, ...limits)
  const out = cli('keys', 'create', `${name}-key`, '--team', name).trim().split('\n')
  return out[out.length - 1]
}

const unknownId = 'i' + 'unknown0unknown0unkn'

async function sameAsUnknown(what, call) {
  let got, want
  try {
    await call(this.id)
  } catch (err) {
    got = err
  }
  try {
    await call(unknownId)
  } catch (err) {
    want = err
  }
  assert.ok(want, `${what}: an unknown ID did not fail`)
  assert.ok(got, `${what}: team b reached team a's sandbox`)
  assert.equal(got.constructor.name, want.constructor.name, `${what}: ${got.message} vs ${want.message}`)
  assert.equal(got.message.replaceAll(this.id, 'ID'), want.message.replaceAll(unknownId, 'ID'), what)
}

test("team b's key on team a's sandbox answers as for an unknown ID, on every route", async () => {
  useSdkEnv(server)
  const keyB = teamKey('b')
  const a = await Sandbox.create({ metadata: { owner: 'a' }, envs: { SECRET: 'a-secret' } })
  try {
    const asB = { apiKey: keyB }
    const ctx = { id: a.sandboxId }
    const check = sameAsUnknown.bind(ctx)
    await check('getInfo', (id) => Sandbox.getInfo(id, asB))
    await check('connect', (id) => Sandbox.connect(id, asB))
    await check('setTimeout', (id) => Sandbox.setTimeout(id, 30_000, asB))
    await check('getMetrics', (id) => Sandbox.getMetrics(id, asB))
    await check('betaPause', (id) => Sandbox.betaPause(id, asB))
    await check('getInfo as SandboxNotFoundError', async (id) => {
      try {
        await Sandbox.getInfo(id, asB)
      } catch (err) {
        assert.ok(err instanceof SandboxNotFoundError || err instanceof NotFoundError, `${err.constructor.name}: ${err.message}`)
        throw err
      }
    })
    assert.equal(await Sandbox.kill(a.sandboxId, asB), false, "kill of another team's sandbox resolves false")

    // The sandbox proxy: team b's key on team a's sandbox is answered as
    // an unknown sandbox, whatever the route.
    for (const path of ['/health', '/files?path=/etc/hostname', '/process.Process/List']) {
      const probe = async (id) => {
        const r = await fetch(server.url + path, {
          method: path.startsWith('/process') ? 'POST' : 'GET',
          headers: { 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': '49983', 'X-API-KEY': keyB, 'Content-Type': 'application/json' },
          body: path.startsWith('/process') ? '{}' : undefined,
        })
        return { status: r.status, body: (await r.text()).replaceAll(id, 'ID') }
      }
      assert.deepEqual(await probe(a.sandboxId), await probe(unknownId), `proxy ${path}`)
    }

    // Lists are the team's own.
    assert.deepEqual(await Sandbox.list(asB).nextItems(), [])
    const mine = await Sandbox.list({ query: { metadata: { owner: 'a' } } }).nextItems()
    assert.deepEqual(mine.map((s) => s.sandboxId), [a.sandboxId])

    // Nothing of team a's leaked to b, and a's sandbox is unharmed.
    assert.equal((await a.commands.run('echo $SECRET')).stdout, 'a-secret\n')
    assert.equal((await Sandbox.getInfo(a.sandboxId)).state, 'running')
  } finally {
    await a.kill()
  }
})

test('a team at its concurrent limit gets RateLimitError and creates again after a kill', async () => {
  useSdkEnv(server)
  const keyC = teamKey('c', '--max-sandboxes', '1')
  const asC = { apiKey: keyC }
  const first = await Sandbox.create(asC)
  await assert.rejects(Sandbox.create(asC), (err) => {
    assert.ok(err instanceof RateLimitError, `${err.constructor.name}: ${err.message}`)
    assert.match(err.message, /max-sandboxes 1/)
    return true
  })
  // Team a is not limited by team c's limit.
  const other = await Sandbox.create()
  await other.kill()
  assert.equal(await first.kill(), true)
  const again = await Sandbox.create(asC)
  await again.kill()

  // /metrics counts per team: creates, limit hits, sandboxes by state.
  const metrics = await (await fetch(server.url + '/metrics')).text()
  assert.match(metrics, /^sandpit_team_creates_total\{team="c"\} 2$/m)
  assert.match(metrics, /^sandpit_team_limit_hits_total\{limit="max_sandboxes",team="c"\} 1$/m)
  assert.match(metrics, /^sandpit_team_sandboxes\{state="running",team="c"\} 0$/m)
})

test('a creates-per-second limit answers 429 with Retry-After, and creates nothing', async () => {
  useSdkEnv(server)
  const keyD = teamKey('d', '--creates-per-second', '0.2', '--create-burst', '1')
  const first = await Sandbox.create({ apiKey: keyD })
  const r = await fetch(server.url + '/v2/sandboxes', {
    method: 'POST',
    headers: { 'X-API-KEY': keyD, 'Content-Type': 'application/json' },
    body: JSON.stringify({ templateID: 'base' }),
  })
  assert.equal(r.status, 429)
  const retryAfter = Number(r.headers.get('retry-after'))
  assert.ok(retryAfter >= 1 && retryAfter <= 5, `Retry-After ${r.headers.get('retry-after')}`)
  const body = await r.json()
  assert.equal(body.code, 429)
  assert.match(body.message, /creates-per-second 0.2/)
  // The SDK with retries off raises RateLimitError.
  await assert.rejects(Sandbox.create({ apiKey: keyD, retries: 0 }), RateLimitError)
  const listed = await Sandbox.list({ apiKey: keyD }).nextItems()
  assert.deepEqual(listed.map((s) => s.sandboxId), [first.sandboxId], 'a refused create made a sandbox')
  await first.kill()

  // A limit changed by the CLI while the daemon runs applies within a second.
  cli('teams', 'set', 'd', '--creates-per-second', '0')
  const quick = await Sandbox.create({ apiKey: keyD, retries: 0 })
  await quick.kill()
})

test('the audit log shows each action with its team and never a key', async () => {
  useSdkEnv(server)
  const keyE = teamKey('e')
  const sbx = await Sandbox.create({ apiKey: keyE })
  const teamE = cli('teams', 'list', '--json').trim().split('\n').map((l) => JSON.parse(l)).find((t) => t.name === 'e')
  assert.equal((await sbx.commands.run('echo $E2B_TEAM_ID')).stdout, `${teamE.id}\n`, 'E2B_TEAM_ID is the team of the sandbox')
  await sbx.setTimeout(120_000)
  await sbx.files.write('/home/user/audited.txt', 'x')
  await sbx.commands.run('echo audited-command-line')
  await sbx.kill()
  // The audit log is written off the request path: give it a moment.
  let lines = []
  for (let i = 0; i < 50; i++) {
    lines = cli('audit', '--team', 'e', '--json').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l))
    if (lines.some((e) => e.action === 'sandbox.kill')) break
    await new Promise((r) => setTimeout(r, 100))
  }
  const actions = lines.filter((e) => e.target?.startsWith(sbx.sandboxId) || e.target === sbx.sandboxId).map((e) => e.action)
  for (const want of ['sandbox.create', 'sandbox.timeout', 'files.write', 'process.start', 'sandbox.kill']) {
    assert.ok(actions.includes(want), `no ${want} in ${JSON.stringify(actions)}`)
  }
  const starts = lines.filter((e) => e.action === 'process.start').map((e) => e.detail)
  assert.ok(starts.some((d) => /echo audited-command-line/.test(d)), `no command line in ${JSON.stringify(starts)}`)
  for (const e of lines) {
    assert.equal(e.team, 'e')
    const text = JSON.stringify(e)
    assert.ok(!text.includes(keyE) && !text.includes(server.apiKey), `an audit entry holds a key: ${text}`)
  }
  const create = lines.find((e) => e.action === 'sandbox.create')
  assert.equal(create.key_name, 'e-key')
  assert.equal(create.result, '201')
})
