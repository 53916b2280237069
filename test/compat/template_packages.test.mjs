// Issue 6: the official Template builder's aptInstall, pipInstall and
// npmInstall build for real against sandpit. apt and npm download from
// Debian's mirror and the npm registry through the build sandbox's network
// link; PyPI is not reachable here, so pip installs a wheel this test makes
// and copies in.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { Sandbox, Template } from 'e2b'
import { track, useServer } from './harness.mjs'

const server = useServer()
const wheel = 'sandpit_hello-1.0-py3-none-any.whl'

/** Writes a minimal pure-Python wheel into dir. */
function makeWheel(dir) {
  execFileSync('python3', ['-c', `
import sys, zipfile
files = {
  "sandpit_hello/__init__.py": "def hello():\\n    return 'hello from a local wheel'\\n",
  "sandpit_hello-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: sandpit-hello\\nVersion: 1.0\\n",
  "sandpit_hello-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: sandpit-compat\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
files["sandpit_hello-1.0.dist-info/RECORD"] = "".join(n + ",,\\n" for n in list(files) + ["sandpit_hello-1.0.dist-info/RECORD"])
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for n, b in files.items():
        z.writestr(n, b)
`, join(dir, wheel)])
}

async function reachable(url) {
  try {
    await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(5000) })
    return true
  } catch {
    return false
  }
}

describe('package steps through the official Template builder', async () => {
  const offline = !(await reachable('http://deb.debian.org/debian/dists/bookworm/Release')) || !(await reachable('https://registry.npmjs.org/is-number'))
  test('aptInstall, pipInstall of a local wheel, npmInstall', { skip: offline && "Debian's mirror or the npm registry is not reachable from this host" }, async () => {
    const ctx = mkdtempSync(join(tmpdir(), 'sandpit-pkgs-'))
    after(() => rmSync(ctx, { recursive: true, force: true }))
    makeWheel(ctx)
    const tpl = Template({ fileContextPath: ctx })
      .fromTemplate('base')
      .aptInstall(['figlet'])
      .copy(wheel, '/opt/wheels/', { user: 'root' })
      .pipInstall([`/opt/wheels/${wheel}`])
      .npmInstall(['is-number@7.0.0'])
    const name = `pkgs-${Date.now()}`
    const logs = []
    const t0 = Date.now()
    await Template.build(tpl, name, { onBuildLogs: (e) => logs.push(e.message) })
    console.log(`apt + pip + npm build through the SDK: ${Date.now() - t0} ms`)
    assert.ok(logs.some((l) => l.includes('figlet')), `logs: ${logs.join('\n')}`)

    const sbx = track(server, await Sandbox.create(name))
    const r = await sbx.commands.run(
      `figlet -v | head -1 | cut -d' ' -f1-2; python3 -c 'import sandpit_hello; print(sandpit_hello.hello())'; node -e 'console.log(require("is-number")(5))'`,
    )
    assert.equal(r.stdout, 'FIGlet Copyright\nhello from a local wheel\ntrue\n')
    await sbx.kill()
  })
})
