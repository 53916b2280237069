// Issue 6: the official e2b Template builder builds a template against
// sandpit, and Sandbox.create({ template }) starts from it.
import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { BuildError, Sandbox, Template, waitForPort } from 'e2b'
import { track, useServer } from './harness.mjs'

const server = useServer()

describe('templates through the official SDK', () => {
  const ctx = mkdtempSync(join(tmpdir(), 'sandpit-tpl-'))
  mkdirSync(join(ctx, 'site'))
  writeFileSync(join(ctx, 'site', 'index.html'), 'hello from a template\n')
  const name = `compat-${Date.now()}`

  test('Template.build with RUN, ENV, WORKDIR, COPY and a start command, then create from it', async () => {
    const tpl = Template({ fileContextPath: ctx })
      .fromTemplate('base')
      .setEnvs({ GREETING: 'hi-from-env' })
      .runCmd('mkdir -p /srv/www && echo built > /srv/www/built.txt', { user: 'root' })
      .copy('site', '/srv/www/', { user: 'user' })
      .setWorkdir('/srv/www')
      .setStartCmd('python3 -m http.server 8000 --bind 127.0.0.1', waitForPort(8000))
    const logs = []
    const t0 = Date.now()
    const built = await Template.build(tpl, name, { onBuildLogs: (e) => logs.push(e.message), cpuCount: 1, memoryMB: 512 })
    const buildMs = Date.now() - t0
    assert.equal(built.name, name)
    assert.ok(built.templateId, 'no templateId')
    assert.ok(logs.some((l) => l.includes('COPY site')), `logs: ${logs.join('\n')}`)
    console.log(`first build: ${buildMs} ms`)

    const t1 = Date.now()
    const sbx = track(server, await Sandbox.create(name))
    console.log(`create from the template (start command ready): ${Date.now() - t1} ms`)
    const r = await sbx.commands.run('echo $GREETING; pwd; cat built.txt index.html; curl -s http://127.0.0.1:8000/index.html || python3 -c "import urllib.request;print(urllib.request.urlopen(\'http://127.0.0.1:8000/index.html\').read().decode(),end=\'\')"')
    assert.equal(r.stdout, 'hi-from-env\n/srv/www\nbuilt\nhello from a template\nhello from a template\n')
    await sbx.kill()

    assert.equal(await Template.exists(name), true)
    assert.equal(await Template.exists(`${name}-nope`), false)

    const logs2 = []
    const t2 = Date.now()
    await Template.build(tpl, name, { onBuildLogs: (e) => logs2.push(e.message) })
    console.log(`cached rebuild through the SDK: ${Date.now() - t2} ms`)
    assert.ok(logs2.some((l) => l.includes('served from cache')), `logs: ${logs2.join('\n')}`)
  })

  test('a failing step throws BuildError with its output', async () => {
    const tpl = Template().fromTemplate('base').runCmd('echo the-step-output; exit 4')
    await assert.rejects(Template.build(tpl, `${name}-bad`), (err) => {
      assert.ok(err instanceof BuildError, `got ${err}`)
      assert.match(err.message, /the-step-output/)
      assert.match(err.message, /exited with code 4/)
      return true
    })
  })
})
