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
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { ALL_TRAFFIC, CommandExitError, Sandbox, Secret } from 'e2b'
import { startServer, track, useSdkEnv, waitFor } from './harness.mjs'

const hostAddr = '198.51.100.1'
const webAddr = '198.51.100.2'
const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()

const serverScript = `
const dgram = require('node:dgram'), http = require('node:http'), https = require('node:https'), fs = require('node:fs')
const names = { 'api.secret.test': process.env.ADDR, 'other.secret.test': process.env.ADDR }
const dns = dgram.createSocket('udp4')
dns.on('message', (q, rinfo) => {
  let i = 12, labels = []
  while (q[i] !== 0) { labels.push(q.subarray(i + 1, i + 1 + q[i]).toString()); i += q[i] + 1 }
  const qtype = q.readUInt16BE(i + 1), qend = i + 5
  const addr = names[labels.join('.').toLowerCase()], answer = addr && qtype === 1
  const h = Buffer.alloc(12)
  q.copy(h, 0, 0, 2)
  h.writeUInt16BE(0x8580 | (addr ? 0 : 3), 2)
  h.writeUInt16BE(1, 4); h.writeUInt16BE(answer ? 1 : 0, 6)
  const parts = [h, q.subarray(12, qend)]
  if (answer) {
    const a = Buffer.alloc(16)
    a.writeUInt16BE(0xc00c, 0); a.writeUInt16BE(1, 2); a.writeUInt16BE(1, 4); a.writeUInt32BE(5, 6); a.writeUInt16BE(4, 10)
    addr.split('.').forEach((o, k) => { a[12 + k] = Number(o) })
    parts.push(a)
  }
  dns.send(Buffer.concat(parts), rinfo.port, rinfo.address)
})
dns.bind(53, process.env.ADDR)
const handler = (scheme) => (req, res) => {
  req.resume()
  req.on('end', () => res.end(scheme + ' ' + req.headers.host + ' auth=' + (req.headers.authorization ?? '-') + '\\n'))
}
http.createServer(handler('http')).listen(80, process.env.ADDR)
https.createServer({ key: fs.readFileSync(process.env.KEY), cert: fs.readFileSync(process.env.CERT) }, handler('https')).listen(443, process.env.ADDR)
`

/** The test's internet: a CA, a certificate for both names, DNS and web servers in a netns. */
async function startInternet() {
  const ns = `spint${process.pid % 100000}`
  const hostSide = `spi${process.pid % 100000}`
  const dir = mkdtempSync(join(tmpdir(), 'sandpit-intercept-'))
  let web
  const stop = () => {
    web?.kill()
    try { ip('link', 'del', hostSide) } catch {}
    try { ip('netns', 'del', ns) } catch {}
    rmSync(dir, { recursive: true, force: true })
  }
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' })
  try {
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=intercept test CA', '-keyout', 'ca.key', '-out', 'ca.pem')
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=api.secret.test', '-keyout', 'key.pem', '-out', 'req.csr')
    writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:api.secret.test,DNS:other.secret.test\n')
    ssl('x509', '-req', '-in', 'req.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf', '-out', 'cert.pem')
    writeFileSync(join(dir, 'servers.js'), serverScript)
    ip('netns', 'add', ns)
    ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
    ip('addr', 'add', `${hostAddr}/29`, 'dev', hostSide)
    ip('link', 'set', hostSide, 'up')
    ip('-n', ns, 'addr', 'add', `${webAddr}/29`, 'dev', 'eth0')
    ip('-n', ns, 'link', 'set', 'eth0', 'up')
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    web = spawn('ip', ['netns', 'exec', ns, process.execPath, join(dir, 'servers.js')], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, ADDR: webAddr, KEY: join(dir, 'key.pem'), CERT: join(dir, 'cert.pem') },
    })
    await waitFor(() => { try { return execFileSync('curl', ['-sf', `http://${webAddr}/`]).toString() } catch { return null } }, { what: 'the test internet' })
  } catch (err) {
    stop()
    throw err
  }
  return { stop, caFile: join(dir, 'ca.pem') }
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
