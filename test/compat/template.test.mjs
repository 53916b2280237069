// Issue 6: the official e2b Template builder builds a template against
// sandpit, and Sandbox.create({ template }) starts from it.
import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { BuildError, Sandbox, SandboxError, Template, TemplateError, waitForPort } from 'e2b'
import { track, useServer } from './harness.mjs'

const server = useServer()

describe('templates through the official SDK', () => {
  const ctx = mkdtempSync(join(tmpdir(), 'sandpit-tpl-'))
  after(() => rmSync(ctx, { recursive: true, force: true }))
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

  test('tags: name:v1 and name:v2 are different builds; assignTags, getTags and removeTags move them', async () => {
    const tname = `${name}-tags`
    const writes = (word) => Template().fromTemplate('base').runCmd(`echo ${word} > /opt/which`, { user: 'root' })
    const b1 = await Template.build(writes('one'), `${tname}:v1`)
    const b2 = await Template.build(writes('two'), `${tname}:v2`)
    assert.deepEqual(b1.tags, ['v1'])
    assert.deepEqual(b2.tags, ['v2'])
    assert.equal(b1.templateId, b2.templateId)
    assert.notEqual(b1.buildId, b2.buildId)

    const which = async (ref) => {
      const sbx = track(server, await Sandbox.create(ref))
      try {
        return (await sbx.files.read('/opt/which')).trim()
      } finally {
        await sbx.kill()
      }
    }
    const notFound = (tag) => (err) => {
      assert.ok(err instanceof SandboxError, `got ${err}`)
      assert.equal(err.statusCode, 404)
      assert.match(err.message, new RegExp(`template "${tname}" has no tag "${tag}"`))
      return true
    }
    assert.equal(await which(`${tname}:v1`), 'one')
    assert.equal(await which(`${tname}:v2`), 'two')
    // The bare name means :default, which a build tagged v1 does not get.
    await assert.rejects(Sandbox.create(tname), notFound('default'))
    assert.equal(await Template.exists(tname), true)

    const assigned = await Template.assignTags(`${tname}:v2`, ['default', 'stable'])
    assert.deepEqual(assigned, { buildId: b2.buildId, tags: ['default', 'stable'] })
    assert.equal(await which(tname), 'two')
    assert.equal(await which(`${tname}:stable`), 'two')

    const tags = await Template.getTags(tname)
    assert.deepEqual(tags.map((t) => [t.tag, t.buildId]), [
      ['default', b2.buildId], ['stable', b2.buildId], ['v1', b1.buildId], ['v2', b2.buildId],
    ])
    for (const t of tags) assert.ok(t.createdAt instanceof Date && !Number.isNaN(t.createdAt.getTime()), `createdAt of ${t.tag}`)
    assert.deepEqual((await Template.getTags(b1.templateId)).map((t) => t.tag), ['default', 'stable', 'v1', 'v2'])

    await Template.removeTags(tname, 'v1')
    await assert.rejects(Sandbox.create(`${tname}:v1`), notFound('v1'))
    await assert.rejects(Template.removeTags(tname, ['stable', 'v1']), (err) => {
      assert.ok(err instanceof TemplateError, `got ${err}`)
      assert.equal(err.statusCode, 404)
      assert.match(err.message, /no tag "v1"/)
      return true
    })
    await assert.rejects(Template.assignTags(`${tname}:v1`, 'x'), (err) => err instanceof TemplateError && err.statusCode === 404)
    assert.deepEqual((await Template.getTags(tname)).map((t) => t.tag), ['default', 'stable', 'v2'])
    assert.equal(await which(`${tname}:v2`), 'two')
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
