// Issue 14 (part B), end to end: a network rule injects a header, with a
// team secret resolved on the daemon's side, into the sandbox's HTTPS and
// HTTP requests to the named host; the upstream gets it while the sandbox's
// env, /proc and files show no trace of the secret. Hosts no rule names
// are relayed untouched.
//
// The "internet" is a network namespace this test makes on TEST-NET-2
// addresses, with a DNS server the daemon is pointed at (--dns) and a web
// server whose certificate a CA of the test's own signed (the daemon trusts
// it through --intercept-upstream-ca). The server answers with the
// Authorization header it got.
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { test } from 'node:test'
import { ALL_TRAFFIC, CommandExitError, Sandbox, Secret } from 'e2b'
import { startServer, track, useSdkEnv } from './harness.mjs'
import { startTestNet } from './testnet.mjs'

const webAddr = '198.51.100.2' // DNS and the web server of both names

/** The test's internet: DNS and web servers in a netns, their certificate signed by the test's CA. */
function startInternet() {
  const names = { 'api.secret.test': webAddr, 'other.secret.test': webAddr }
  return startTestNet({ net: '198.51.100', names, tag: 'int', echo: 'auth', caName: 'intercept test CA' })
}

async function run(sbx, cmd) {
  try {
    return (await sbx.commands.run(cmd, { timeoutMs: 30_000 })).stdout
  } catch (err) {
    if (err instanceof CommandExitError) return `exit ${err.exitCode}: ${err.stdout}${err.stderr}`
    throw err
  }
}

test('a rule injects a secret header into HTTPS and HTTP requests to its host, outside the sandbox', async () => {
  const net = await startInternet()
  let server
  try {
    server = await startServer({ name: 'intercept', extraArgs: ['--dns', webAddr, '--intercept-upstream-ca', net.caFile] })
    useSdkEnv(server)
    const value = 'sk-injected-' + Date.now()
    await Secret.create('api-key', value)
    const sbx = track(server, await Sandbox.create({
      network: {
        allowOut: ['api.secret.test', 'other.secret.test'],
        denyOut: [ALL_TRAFFIC],
        rules: { 'api.secret.test': [{ transform: { headers: { Authorization: `Bearer ${Secret.fill('api-key')}` } } }] },
      },
    }))
    // HTTPS, verified by curl against the sandbox's own trust store (no -k).
    assert.equal(await run(sbx, 'curl -s -m 10 -H "Authorization: Bearer from-the-sandbox" https://api.secret.test/'), `https api.secret.test auth=Bearer ${value}\n`)
    assert.equal(await run(sbx, 'curl -s -m 10 http://api.secret.test/'), `http api.secret.test auth=Bearer ${value}\n`)
    // Python's requests-free stdlib client trusts the CA too (SSL_CERT_FILE).
    assert.equal(await run(sbx, `python3 -c "import urllib.request as u; print(u.urlopen('https://api.secret.test/').read().decode(), end='')"`), `https api.secret.test auth=Bearer ${value}\n`)
    // A host no rule names is relayed as bytes: its own certificate, no header.
    assert.equal(await run(sbx, 'curl -s -m 10 --cacert /dev/null -k -H "Authorization: mine" https://other.secret.test/'), 'https other.secret.test auth=mine\n')
    const issuer = await run(sbx, 'curl -sv -k -m 10 https://other.secret.test/ 2>&1 | grep -i "issuer:"')
    assert.match(issuer, /intercept test CA/, 'a host without a rule was intercepted')
    // Nothing of the secret is in the sandbox.
    const seen = await run(sbx, "env; cat /proc/*/environ 2>/dev/null | tr '\\\\0' '\\\\n'; grep -rs sk-injected /etc /tmp /home /root || true")
    assert.ok(!seen.includes(value), 'the secret is in the sandbox')
  } finally {
    await server?.stop().catch(() => {})
    net.stop()
  }
})

test('rules apply without allowOut, and rules added or removed by updateNetwork take effect on a running sandbox', async () => {
  const net = await startInternet()
  let server
  try {
    server = await startServer({ name: 'intercept-rules', extraArgs: ['--dns', webAddr, '--intercept-upstream-ca', net.caFile] })
    useSdkEnv(server)
    const value = 'sk-allowall-' + Date.now()
    await Secret.create('api-key', value)
    const rules = { 'api.secret.test': [{ transform: { headers: { Authorization: `Bearer ${Secret.fill('api-key')}` } } }] }

    // Rules and no allowOut (every address allowed): E2B applies the
    // rules all the same.
    const open = track(server, await Sandbox.create({ network: { rules } }))
    assert.equal(await run(open, 'curl -s -m 10 https://api.secret.test/'), `https api.secret.test auth=Bearer ${value}\n`)
    assert.equal(await run(open, 'curl -s -m 10 http://api.secret.test/'), `http api.secret.test auth=Bearer ${value}\n`)
    // Hosts no rule names still go out as they are.
    assert.equal(await run(open, 'curl -s -m 10 -k -H "Authorization: mine" https://other.secret.test/'), 'https other.secret.test auth=mine\n')

    // Created without rules: the upstream's own certificate, which the
    // sandbox does not trust, and no header.
    const later = track(server, await Sandbox.create())
    assert.match(await run(later, 'curl -s -m 10 https://api.secret.test/; echo " curl=$?"'), /curl=60/)
    assert.equal(await run(later, 'curl -s -m 10 http://api.secret.test/'), 'http api.secret.test auth=-\n')
    // Rules added to the running sandbox: its trust store gets the CA,
    // so HTTPS to the ruled host verifies, and the header is injected.
    await later.updateNetwork({ rules })
    assert.equal(await run(later, 'curl -s -m 10 https://api.secret.test/'), `https api.secret.test auth=Bearer ${value}\n`)
    assert.equal(await run(later, 'curl -s -m 10 http://api.secret.test/'), `http api.secret.test auth=Bearer ${value}\n`)
    // Added twice, the CA is in the bundle once.
    await later.updateNetwork({})
    await later.updateNetwork({ rules })
    assert.equal((await run(later, 'grep -c "BEGIN CERTIFICATE" /usr/local/share/ca-certificates/sandpit-intercept.crt')).trim(), '1')
    assert.equal((await run(later, `grep -cxF "$(sed -n 2p /usr/local/share/ca-certificates/sandpit-intercept.crt)" /etc/ssl/certs/ca-certificates.crt`)).trim(), '1')
    // Removed: the sandbox's requests go out untouched again.
    await later.updateNetwork({})
    assert.equal(await run(later, 'curl -s -m 10 -k -H "Authorization: mine" https://api.secret.test/'), 'https api.secret.test auth=mine\n')
    assert.match(await run(later, 'curl -sv -k -m 10 https://api.secret.test/ 2>&1 | grep -i "issuer:"'), /intercept test CA/)
    assert.equal(await run(later, 'curl -s -m 10 http://api.secret.test/'), 'http api.secret.test auth=-\n')
    const seen = await run(later, "env; cat /proc/*/environ 2>/dev/null | tr '\\\\0' '\\\\n'; grep -rs sk-allowall /etc /tmp /home /root || true")
    assert.ok(!seen.includes(value), 'the secret is in the sandbox')
  } finally {
    await server?.stop().catch(() => {})
    net.stop()
  }
})

test('a restarted daemon applies the rules of a sandbox without allowOut that it takes over', async () => {
  const net = await startInternet()
  const args = ['--dns', webAddr, '--intercept-upstream-ca', net.caFile, '--warm-pool', 'off']
  let first, second
  try {
    first = await startServer({ name: 'intercept-restart-1', keepDataDir: true, extraArgs: args })
    useSdkEnv(first)
    const value = 'sk-restart-' + Date.now()
    await Secret.create('api-key', value)
    const sbx = await Sandbox.create({
      network: { rules: { 'api.secret.test': [{ transform: { headers: { Authorization: `Bearer ${Secret.fill('api-key')}` } } }] } },
      timeoutMs: 300_000,
    })
    assert.equal(await run(sbx, 'curl -s -m 10 https://api.secret.test/'), `https api.secret.test auth=Bearer ${value}\n`)
    await first.stop()
    second = await startServer({ name: 'intercept-restart-2', keepDataDir: true, dataDir: first.dataDir, apiKey: first.apiKey, extraArgs: args })
    useSdkEnv(second)
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(await run(again, 'curl -s -m 10 https://api.secret.test/'), `https api.secret.test auth=Bearer ${value}\n`, 'injected after the restart')
    assert.equal(await run(again, 'curl -s -m 10 http://api.secret.test/'), `http api.secret.test auth=Bearer ${value}\n`, 'injected after the restart')
    await again.kill()
  } finally {
    await second?.stop().catch(() => {})
    if (first && !first.exited) await first.stop().catch(() => {})
    if (first) rmSync(first.dataDir, { recursive: true, force: true })
    net.stop()
  }
})
