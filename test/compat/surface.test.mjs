// Issue 17 item 9: the parts of the official SDKs' public surface that no
// other file exercises, one small test each, so that every "yes" in
// README.md's compat table names a test that proves it.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { E2B, Sandbox as CISandbox } from '@e2b/code-interpreter'
import { Sandbox, Template, getSignature, waitForFile, waitForTimeout } from 'e2b'
import { track, useServer, waitFor } from './harness.mjs'

const server = useServer()
const tag = () => randomBytes(6).toString('hex')

describe('e2b: sandbox, commands, files, pty, git', () => {
  /** @type {Sandbox} */
  let sbx
  before(async () => {
    sbx = track(server, await Sandbox.create({ metadata: { probe: 'surface' } }))
  })

  test('Sandbox.getFullInfo', async () => {
    const info = await Sandbox.getFullInfo(sbx.sandboxId)
    assert.equal(info.sandboxId, sbx.sandboxId)
    assert.deepEqual(info.metadata, { probe: 'surface' })
    assert.equal(info.state, 'running')
  })

  test('Sandbox.list startedAfter; getMetrics start and end; betaPause', async () => {
    const since = new Date(Date.now() - 60_000)
    const listed = await Sandbox.list({ query: { startedAfter: since, metadata: { probe: 'surface' } } }).nextItems()
    assert.deepEqual(listed.map((s) => s.sandboxId), [sbx.sandboxId])
    const later = await Sandbox.list({ query: { startedAfter: new Date(Date.now() + 60_000), metadata: { probe: 'surface' } } }).nextItems()
    assert.deepEqual(later, [])
    await waitFor(async () => (await sbx.getMetrics()).length > 0, { timeoutMs: 15_000, intervalMs: 500, what: 'a metrics sample' })
    const m = await Sandbox.getMetrics(sbx.sandboxId, { start: since, end: new Date(Date.now() + 1000) })
    assert.ok(m.length > 0 && m.every((x) => x.timestamp >= since), JSON.stringify(m))
    const other = track(server, await Sandbox.create())
    assert.equal(await other.betaPause(), true)
    assert.equal((await other.getInfo()).state, 'paused')
    await other.connect()
    assert.equal((await other.commands.run('echo back')).stdout, 'back\n')
    await other.kill()
  })

  test('commands.connect to a background command', async () => {
    const h = await sbx.commands.run('sleep 0.5; echo late', { background: true })
    const out = []
    const c = await sbx.commands.connect(h.pid, { onStdout: (d) => out.push(d) })
    const r = await c.wait()
    assert.equal(r.exitCode, 0)
    assert.equal(out.join(''), 'late\n')
  })

  test('pty.connect to a running terminal', async () => {
    const first = []
    const t = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => first.push(d) })
    await t.disconnect()
    const seen = []
    const again = await sbx.pty.connect(t.pid, { onData: (d) => seen.push(Buffer.from(d).toString()) })
    await sbx.pty.sendInput(t.pid, new TextEncoder().encode('echo reconnected-$((6*7))\n'))
    await waitFor(() => seen.join('').includes('reconnected-42'), { what: 'output after pty.connect' })
    await sbx.pty.kill(t.pid)
    await again.wait().catch(() => {})
  })

  test('files.writeFiles and useOctetStream', async () => {
    const dir = `/home/user/wf-${tag()}`
    const infos = await sbx.files.writeFiles([
      { path: `${dir}/a.txt`, data: 'A' },
      { path: `${dir}/b.txt`, data: 'B' },
    ])
    assert.deepEqual(infos.map((i) => i.path), [`${dir}/a.txt`, `${dir}/b.txt`])
    await sbx.files.write(`${dir}/c.bin`, new Uint8Array([0, 1, 2, 255]).buffer, { useOctetStream: true })
    assert.deepEqual([...(await sbx.files.read(`${dir}/c.bin`, { format: 'bytes' }))], [0, 1, 2, 255])
    assert.equal(await sbx.files.read(`${dir}/b.txt`), 'B')
  })

  test('files.write metadata comes back in WriteInfo and getInfo', async () => {
    const path = `/home/user/meta-${tag()}.txt`
    const w = await sbx.files.write(path, 'x', { metadata: { owner: 'probe', n: '1' } })
    assert.deepEqual(w.metadata, { owner: 'probe', n: '1' })
    assert.deepEqual((await sbx.files.getInfo(path)).metadata, { owner: 'probe', n: '1' })
  })

  test('watchDir: includeEntry and onExit', async () => {
    const dir = `/home/user/watch-${tag()}`
    await sbx.files.makeDir(dir)
    const events = []
    let exited = false
    const w = await sbx.files.watchDir(dir, (e) => events.push(e), { includeEntry: true, onExit: () => { exited = true } })
    await sbx.files.write(`${dir}/f.txt`, 'x')
    await waitFor(() => events.some((e) => e.name === 'f.txt' && e.entry), { what: 'an event with its entry' })
    const withEntry = events.find((e) => e.entry)
    assert.equal(withEntry.entry.name, 'f.txt')
    await w.stop()
    await waitFor(() => exited, { what: 'onExit after stop' })
  })

  test('uploadUrl with useSignatureExpiration; getSignature', async () => {
    const url = await sbx.uploadUrl('/home/user/signed.txt', { useSignatureExpiration: 60 })
    assert.match(url, /signature_expiration=\d+/)
    const form = new FormData()
    form.append('file', new Blob(['signed upload']), 'signed.txt')
    const res = await fetch(url, { method: 'POST', body: form })
    assert.equal(res.status, 200, await res.text())
    assert.equal(await sbx.files.read('/home/user/signed.txt'), 'signed upload')
    const sig = await getSignature({ path: '/x', operation: 'read', user: 'user', envdAccessToken: 'tok' })
    assert.match(sig.signature, /^v1_/)
  })

  test('git: every Git method, with a bare repository in the sandbox as the remote', async () => {
    const repo = `/home/user/repo-${tag()}`
    await sbx.git.init(repo, { initialBranch: 'main' })
    await sbx.git.configureUser('Probe', 'probe@example.com', { scope: 'local', path: repo })
    await sbx.files.write(`${repo}/a.txt`, 'a')
    await sbx.git.add(repo)
    await sbx.git.commit(repo, 'first')
    await sbx.git.createBranch(repo, 'feature')
    const br = await sbx.git.branches(repo)
    assert.equal(br.currentBranch, 'feature')
    assert.deepEqual([...br.branches].sort(), ['feature', 'main'])
    await sbx.files.write(`${repo}/b.txt`, 'b')
    const st = await sbx.git.status(repo)
    assert.equal(st.currentBranch, 'feature')
    assert.ok(st.fileStatus.some((f) => f.name === 'b.txt' && f.status === 'untracked'), JSON.stringify(st))

    // A bare repository in the sandbox is the remote: push, clone, pull.
    const remote = `${repo}.git`
    await sbx.git.init(remote, { bare: true })
    await sbx.git.remoteAdd(repo, 'origin', remote)
    assert.equal(await sbx.git.remoteGet(repo, 'origin'), remote)
    await sbx.git.checkoutBranch(repo, 'main')
    await sbx.git.deleteBranch(repo, 'feature', { force: true })
    await sbx.git.push(repo, { remote: 'origin', branch: 'main', setUpstream: true })
    const clone = `${repo}-clone`
    await sbx.git.clone(remote, { path: clone, branch: 'main', depth: 1 })
    assert.equal(await sbx.files.read(`${clone}/a.txt`), 'a')
    await sbx.files.write(`${repo}/a.txt`, 'a2')
    await sbx.git.add(repo, { files: ['a.txt'] })
    await sbx.git.commit(repo, 'second', { authorName: 'Other', authorEmail: 'o@example.com' })
    await sbx.git.push(repo)
    await sbx.git.setConfig('pull.rebase', 'false', { scope: 'local', path: clone })
    assert.equal(await sbx.git.getConfig('pull.rebase', { scope: 'local', path: clone }), 'false')
    await sbx.git.configureUser('Probe', 'probe@example.com', { scope: 'local', path: clone })
    await sbx.git.pull(clone)
    assert.equal(await sbx.files.read(`${clone}/a.txt`), 'a2')
    // reset and restore.
    await sbx.files.write(`${repo}/a.txt`, 'dirty')
    await sbx.git.restore(repo, { paths: ['a.txt'], worktree: true })
    assert.equal(await sbx.files.read(`${repo}/a.txt`), 'a2')
    await sbx.git.reset(repo, { mode: 'hard', target: 'HEAD~1' })
    assert.equal(await sbx.files.read(`${repo}/a.txt`), 'a')
  })
})

describe('e2b: templates', () => {
  test('fromDockerfile; makeDir, makeSymlink, rename, remove, copyItems, setUser, skipCache, setReadyCmd(waitForFile)', async () => {
    const ctx = mkdtempSync(join(tmpdir(), 'sandpit-surface-'))
    after(() => rmSync(ctx, { recursive: true, force: true }))
    writeFileSync(join(ctx, 'one.txt'), 'one\n')
    const name = `surface-df-${tag()}`
    const df = Template().fromDockerfile('FROM base\nRUN echo df > /opt/df\nENV FROM_DF=yes\nWORKDIR /opt\n')
    await Template.build(df, name)
    const a = track(server, await Sandbox.create(name))
    assert.equal((await a.commands.run('cat /opt/df; echo $FROM_DF; pwd')).stdout, 'df\nyes\n/opt\n')
    await a.kill()

    const steps = Template({ fileContextPath: ctx })
      .fromTemplate('base')
      .skipCache()
      .makeDir('/opt/d', { user: 'root' })
      .runCmd('touch /opt/d/f /opt/d/g', { user: 'root' })
      .makeSymlink('/opt/d', '/opt/l', { user: 'root' })
      .rename('/opt/d/g', '/opt/d/h', { user: 'root' })
      .remove('/opt/d/f', { user: 'root' })
      .copyItems([{ src: 'one.txt', dest: '/opt/d/one.txt', user: 'root' }])
      .setUser('root')
      .setReadyCmd(waitForFile('/opt/d/h'))
    const fs = `surface-fs-${tag()}`
    await Template.build(steps, fs, { skipCache: true })
    const b = track(server, await Sandbox.create(fs))
    assert.equal((await b.commands.run('ls /opt/l; readlink /opt/l')).stdout, 'h\none.txt\n/opt/d\n')
    await b.kill()
  })

  test('buildInBackground, getBuildStatus, aliasExists; toJSON and toDockerfile', async () => {
    const name = `surface-${tag()}`
    const tpl = Template().fromTemplate('base').runCmd('echo bg > /opt/bg', { user: 'root' }).setReadyCmd(waitForTimeout(100))
    assert.match(Template.toDockerfile(Template().fromImage('debian:12').runCmd('true')), /^FROM debian:12\nRUN true/)
    assert.ok(JSON.parse(await Template.toJSON(tpl)).steps.length > 0)
    const info = await Template.buildInBackground(tpl, name)
    let status
    await waitFor(
      async () => {
        status = await Template.getBuildStatus(info)
        return status.status === 'ready' || status.status === 'error'
      },
      { timeoutMs: 120_000, intervalMs: 200, what: 'the build to finish' },
    )
    assert.equal(status.status, 'ready', JSON.stringify(status))
    assert.equal(await Template.aliasExists(name), true)
    const sbx = track(server, await Sandbox.create(name))
    assert.equal((await sbx.commands.run('cat /opt/bg')).stdout, 'bg\n')
    await sbx.kill()
  })
})

describe('@e2b/code-interpreter', () => {
  /** @type {CISandbox} */
  let sbx
  before(async () => {
    // The E2B client class, with the options given explicitly.
    const client = new E2B({ apiKey: server.apiKey, apiUrl: server.url, sandboxUrl: server.url })
    sbx = track(server, await client.Sandbox.create())
  })

  test('onResult and onError callbacks', async () => {
    const results = []
    await sbx.runCode('display(1)\n2', { onResult: (r) => results.push(r) })
    assert.deepEqual(results.map((r) => [r.text, r.isMainResult]), [['1', false], ['2', true]])
    const errors = []
    await sbx.runCode('1/0', { onError: (e) => errors.push(e) })
    assert.equal(errors[0].name, 'ZeroDivisionError')
  })

  test('rich results: markdown, svg, latex, json, javascript, jpeg, extra', async () => {
    const r = await sbx.runCode(`
from IPython.display import display, Markdown, SVG, Latex, JSON, Javascript
display(Markdown('# hi'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>'))
display(Latex('$x^2$'))
display(JSON({'a': 1}))
display(Javascript('console.log(1)'))
display({'text/csv': 'a,b'}, raw=True)
import io
from IPython.display import Image as IPImage
from PIL import Image
buf = io.BytesIO()
Image.new('RGB', (8, 8)).save(buf, 'JPEG')
display(IPImage(buf.getvalue(), format='jpeg'))
`)
    assert.equal(r.error, undefined)
    const [md, svg, latex, json, js, csv, jpeg] = r.results
    assert.equal(md.markdown, '# hi')
    assert.match(svg.svg, /<svg/)
    assert.equal(latex.latex, '$x^2$')
    assert.deepEqual(json.json, { a: 1 })
    assert.equal(js.javascript, 'console.log(1)')
    // Other MIME types travel in the line's "extra" object, as E2B's server
    // sends them; the JS SDK keeps that in Result.raw (its Result.extra
    // collects only unknown top-level keys, so it stays empty, on E2B too).
    assert.deepEqual(csv.raw.extra, { 'text/csv': 'a,b' })
    assert.deepEqual(md.formats(), ['markdown'])
    assert.ok(Buffer.from(jpeg.jpeg, 'base64').subarray(0, 2).equals(Buffer.from([0xff, 0xd8])), 'not a JPEG')
    assert.equal(JSON.parse(JSON.stringify(r)).results.length, 7)
  })

  test("TypeScript: runCode(..., {language: 'typescript'})", async () => {
    const r = await sbx.runCode('const n: number = 40 + 2\nn', { language: 'typescript' })
    assert.equal(r.error, undefined, JSON.stringify(r.error))
    assert.equal(r.text, '42')
  })

  test("R: runCode(..., {language: 'r'})", async () => {
    const r = await sbx.runCode('x <- 6 * 7\nprint(x)', { language: 'r' })
    assert.equal(r.error, undefined, JSON.stringify(r.error))
    assert.match(r.logs.stdout.join('') + r.results.map((x) => x.text).join(''), /42/)
  })
})
