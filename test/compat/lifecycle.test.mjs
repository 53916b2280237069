// Issue 12 (items 3 and 4): the E2B ways to pause (memory kept, or the
// filesystem only) and the lifecycle at create (onTimeout pause|kill,
// keepMemory, autoResume), through the official JS SDK.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, test } from 'node:test'
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter'
import { InvalidArgumentError, Sandbox } from 'e2b'
import { track, useServer, waitFor } from './harness.mjs'

const server = useServer()
const tag = () => randomBytes(6).toString('hex')

async function serveHttp(sbx, port, text) {
  await sbx.commands.run(`mkdir -p ~/site && echo "${text}" > ~/site/index.html`)
  await sbx.commands.run(`python3 -m http.server ${port}`, { background: true, cwd: '/home/user/site', timeoutMs: 0 })
  await waitFor(async () => (await sbx.commands.run(`python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:${port}/')" && echo up`).catch(() => ({ stdout: '' }))).stdout === 'up\n', {
    timeoutMs: 20_000,
    intervalMs: 200,
    what: 'the server in the sandbox to listen',
  })
}

describe('lifecycle at create', () => {
  test('the SDK and the API refuse what E2B refuses', async () => {
    await assert.rejects(Sandbox.create({ lifecycle: { onTimeout: 'kill', autoResume: true } }), InvalidArgumentError)
    await assert.rejects(Sandbox.create({ lifecycle: { onTimeout: { action: 'pause', keepMemory: false }, autoResume: true } }), InvalidArgumentError)
    // The API itself, for clients that do not check.
    for (const body of [
      { templateID: 'base', autoResume: { enabled: true } },
      { templateID: 'base', autoPause: true, autoPauseMemory: false, autoResume: { enabled: true } },
    ]) {
      const res = await fetch(`${server.url}/v2/sandboxes`, {
        method: 'POST',
        headers: { 'X-API-KEY': server.apiKey, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      })
      const text = await res.text()
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${text}`)
      assert.match(text, /autoResume/)
    }
  })

  test('getInfo shows the lifecycle', async () => {
    const plain = track(server, await Sandbox.create())
    assert.deepEqual((await plain.getInfo()).lifecycle, { onTimeout: 'kill', autoResume: false })
    const auto = track(server, await Sandbox.create({ lifecycle: { onTimeout: 'pause', autoResume: true } }))
    assert.deepEqual((await auto.getInfo()).lifecycle, { onTimeout: 'pause', autoResume: true })
    const fs = track(server, await Sandbox.create({ lifecycle: { onTimeout: { action: 'pause', keepMemory: false } } }))
    assert.deepEqual((await fs.getInfo()).lifecycle, { onTimeout: 'pause', autoResume: false })
    await Promise.all([plain.kill(), auto.kill(), fs.kill()])
  })
})

describe('pause kinds', () => {
  test('pause({ keepMemory: false }): processes end, files, ID, metadata and env stay; connect boots it again', async () => {
    const run = tag()
    const sbx = track(server, await Sandbox.create({ metadata: { run }, envs: { FROM_CREATE: 'yes' } }))
    await sbx.commands.run('echo kept > ~/file; echo gone > /tmp/t; sleep 300 & echo $! > ~/pid')
    assert.equal(await sbx.pause({ keepMemory: false }), true)
    assert.equal(await sbx.pause(), false, 'pausing a paused sandbox')
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.equal(info.state, 'paused')
    assert.equal(info.metadata.run, run)
    const paused = await Sandbox.list({ query: { state: ['paused'], metadata: { run } } }).nextItems()
    assert.deepEqual(paused.map((s) => s.sandboxId), [sbx.sandboxId])
    const metrics = await (await fetch(server.url + '/metrics')).text()
    assert.match(metrics, /^sandpit_paused_sandboxes\{kind="filesystem"\} [1-9]/m)

    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(again.sandboxId, sbx.sandboxId)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running')
    const r = await again.commands.run('cat ~/file; cat /tmp/t 2>/dev/null || echo no-tmp; grep -qx sleep /proc/[0-9]*/comm && echo alive || echo ended; echo $FROM_CREATE')
    assert.equal(r.stdout, 'kept\nno-tmp\nended\nyes\n')
    await again.kill()
  })

  test('a memory pause is counted in /metrics with the memory it holds', async () => {
    const sbx = track(server, await Sandbox.create())
    await sbx.commands.run('head -c 30000000 /dev/zero > /dev/shm/fill')
    await sbx.pause()
    const metrics = await (await fetch(server.url + '/metrics')).text()
    assert.match(metrics, /^sandpit_paused_sandboxes\{kind="memory"\} [1-9]/m)
    const held = Number(/^sandpit_paused_memory_bytes (\S+)$/m.exec(metrics)?.[1])
    assert.ok(held >= 30_000_000, `paused memory ${held}`)
    await sbx.kill()
  })

  test('pause/resume 50 times in a row, both kinds, with writes in between, loses nothing', async () => {
    let sbx = track(server, await Sandbox.create())
    let want = ''
    for (let i = 0; i < 50; i++) {
      await sbx.files.write(`/home/user/files/f${i}`, `content ${i}\n`)
      await sbx.commands.run(`echo line ${i} >> ~/log`)
      want += `line ${i}\n`
      const keepMemory = i % 2 === 0
      assert.equal(await sbx.pause({ keepMemory }), true, `pause ${i}`)
      sbx = await Sandbox.connect(sbx.sandboxId)
      assert.equal(await sbx.files.read('/home/user/log'), want, `the log after resume ${i} (keepMemory ${keepMemory})`)
    }
    const r = await sbx.commands.run('cat ~/files/f* | wc -l; cat ~/files/f49')
    assert.equal(r.stdout, '50\ncontent 49\n')
    await sbx.kill()
  })

  test('code interpreter: a memory pause keeps the kernel\'s state, a filesystem-only pause boots fresh kernels', async () => {
    let sbx = track(server, await CodeSandbox.create())
    await sbx.runCode('x = 41')
    await sbx.pause()
    sbx = await CodeSandbox.connect(sbx.sandboxId)
    assert.equal((await sbx.runCode('x + 1')).text, '42')
    await sbx.pause({ keepMemory: false })
    sbx = await CodeSandbox.connect(sbx.sandboxId)
    assert.equal((await sbx.runCode('x')).error?.name, 'NameError')
    assert.equal((await sbx.runCode('1 + 1')).text, '2')
    await sbx.kill()
  })
})

describe('timeouts and autoResume', () => {
  test("onTimeout 'pause': paused at the timeout, connect resumes with files and processes", async () => {
    const sbx = track(server, await Sandbox.create({ timeoutMs: 2_000, lifecycle: { onTimeout: 'pause' } }))
    await sbx.commands.run('echo kept > ~/file; sleep 300 & echo $! > ~/pid')
    await waitFor(async () => (await Sandbox.getInfo(sbx.sandboxId)).state === 'paused', { timeoutMs: 20_000, intervalMs: 200, what: 'the pause at the timeout' })
    const again = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 60_000 })
    const r = await again.commands.run('cat ~/file; grep -qx sleep /proc/[0-9]*/comm && echo alive')
    assert.equal(r.stdout, 'kept\nalive\n')
    await again.kill()
  })

  test("onTimeout pause with keepMemory false: the timeout keeps the filesystem only", async () => {
    const sbx = track(server, await Sandbox.create({ timeoutMs: 2_000, lifecycle: { onTimeout: { action: 'pause', keepMemory: false } } }))
    await sbx.commands.run('echo kept > ~/file; sleep 300 & echo $! > ~/pid')
    await waitFor(async () => (await Sandbox.getInfo(sbx.sandboxId)).state === 'paused', { timeoutMs: 20_000, intervalMs: 200, what: 'the pause at the timeout' })
    const again = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 60_000 })
    const r = await again.commands.run('cat ~/file; grep -qx sleep /proc/[0-9]*/comm && echo alive || echo ended')
    assert.equal(r.stdout, 'kept\nended\n')
    await again.kill()
  })

  test('autoResume: requests to a server in the paused sandbox resume it and are answered', async () => {
    const text = 'page ' + tag()
    const sbx = track(server, await Sandbox.create({ lifecycle: { onTimeout: 'pause', autoResume: true } }))
    await serveHttp(sbx, 8000, text)
    await sbx.pause()
    assert.equal((await sbx.getInfo()).state, 'paused')
    // Several first requests at once: one resume, every one answered.
    const headers = { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8000' }
    const answers = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const res = await fetch(`${server.url}/index.html`, { headers })
        return `${res.status} ${await res.text()}`
      }),
    )
    assert.deepEqual(answers, Array(5).fill(`200 ${text}\n`))
    assert.equal((await sbx.getInfo()).state, 'running')
    await sbx.kill()
  })

  test('without autoResume a paused sandbox stays paused; after a filesystem-only pause autoResume does not wake it', async () => {
    const plain = track(server, await Sandbox.create())
    await serveHttp(plain, 8000, 'plain')
    await plain.pause()
    const res = await fetch(`${server.url}/index.html`, { headers: { 'E2b-Sandbox-Id': plain.sandboxId, 'E2b-Sandbox-Port': '8000' } })
    await res.arrayBuffer()
    assert.equal(res.status, 502)
    assert.equal((await plain.getInfo()).state, 'paused')

    const auto = track(server, await Sandbox.create({ lifecycle: { onTimeout: 'pause', autoResume: true } }))
    await auto.pause({ keepMemory: false })
    const res2 = await fetch(`${server.url}/`, { headers: { 'E2b-Sandbox-Id': auto.sandboxId, 'E2b-Sandbox-Port': '49983' } })
    await res2.arrayBuffer()
    assert.equal(res2.status, 502)
    assert.equal((await auto.getInfo()).state, 'paused')
    await Promise.all([plain.kill(), auto.kill()])
  })
})
