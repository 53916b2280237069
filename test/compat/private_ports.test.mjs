// Issue 14 (part B): private ports, maskRequestHost and secrets through the
// official SDKs. A sandbox created with network.allowPublicTraffic false
// gets a trafficAccessToken: its ports answer only requests carrying it in
// e2b-traffic-access-token (403 in E2B's shape otherwise), while envd (the
// SDK's commands and files) keeps its own token. maskRequestHost is the
// Host a server in the sandbox sees. Secrets are write-only and team-owned.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'node:http'
import { describe, test } from 'node:test'
import { Sandbox, Secret, SecretNotFoundError } from 'e2b'
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter'
import { sandpitBin, startServer, track, useSdkEnv, useServer, waitFor } from './harness.mjs'

const server = useServer({ name: 'private_ports' })

// Answers every GET with the Host it saw.
const HOST_SERVER = String.raw`
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = ('host=%s\n' % self.headers.get('Host')).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(('', 8000), H).serve_forever()
`

/** Plain HTTP GET to the sandpit listener with arbitrary headers (Host included). */
function get(path, headers) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path, headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')))
    req.end()
  })
}

async function startHostServer(sbx) {
  await sbx.commands.run(`cat > /tmp/host_server.py <<'EOF'\n${HOST_SERVER}\nEOF`)
  await sbx.commands.run('python3 /tmp/host_server.py', { background: true, timeoutMs: 0 })
  await waitFor(async () => (await sbx.commands.run('python3 -c "import urllib.request as u; u.urlopen(\'http://127.0.0.1:8000/\')" && echo up').catch(() => ({ stdout: '' }))).stdout === 'up\n', {
    timeoutMs: 20_000,
    intervalMs: 200,
    what: 'the server in the sandbox to listen',
  })
}

/** Runs the sandpit CLI on the daemon's data dir while it runs. */
function cli(...args) {
  return execFileSync(sandpitBin(), [...args, '--data-dir', server.dataDir], { encoding: 'utf8' })
}

/** Makes team name and returns a fresh key of it (the CLI prints it last). */
function teamKey(name) {
  cli('teams', 'create', name)
  const out = cli('keys', 'create', `${name}-key`, '--team', name).trim().split('\n')
  return out[out.length - 1]
}

describe('private ports', () => {
  test('allowPublicTraffic false: a port refuses requests without the token and serves those with it', async () => {
    const sbx = track(server, await Sandbox.create({ network: { allowPublicTraffic: false } }))
    assert.match(sbx.trafficAccessToken ?? '', /^[0-9a-f]{64}$/)
    // envd keeps its own auth: the SDK's commands work without the traffic token.
    await startHostServer(sbx)
    const host = sbx.getHost(8000)

    const none = await get('/', { Host: host })
    assert.equal(none.status, 403, none.body)
    assert.deepEqual(JSON.parse(none.body), {
      sandboxId: sbx.sandboxId,
      message: "Sandbox is secured with traffic access token. Token header 'e2b-traffic-access-token' is missing",
      code: 403,
    })
    const wrong = await get('/', { Host: host, 'e2b-traffic-access-token': 'f'.repeat(64) })
    assert.equal(wrong.status, 403)
    assert.match(JSON.parse(wrong.body).message, /Provided token in header 'e2b-traffic-access-token' is invalid/)
    const byHeaders = { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8000' }
    assert.equal((await get('/', byHeaders)).status, 403)

    const ok = await get('/', { Host: host, 'e2b-traffic-access-token': sbx.trafficAccessToken })
    assert.equal(ok.status, 200, ok.body)
    assert.equal(ok.body, `host=${host}\n`)
    const okHeaders = await fetch(`${server.url}/`, { headers: { ...byHeaders, 'E2B-Traffic-Access-Token': sbx.trafficAccessToken } })
    assert.equal(okHeaders.status, 200)
    await okHeaders.arrayBuffer()

    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.equal(info.network?.allowPublicTraffic, false)
    // connect hands out the same token.
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(again.trafficAccessToken, sbx.trafficAccessToken)
  })

  test('public ports need no token, and their sandboxes have none', async () => {
    const sbx = track(server, await Sandbox.create())
    assert.equal(sbx.trafficAccessToken, undefined)
    await startHostServer(sbx)
    const res = await get('/', { Host: sbx.getHost(8000) })
    assert.equal(res.status, 200)
  })

  test('the code interpreter SDK sends the traffic token itself', async () => {
    const sbx = track(server, await CodeSandbox.create({ network: { allowPublicTraffic: false } }))
    assert.ok(sbx.trafficAccessToken)
    const exec = await sbx.runCode('6 * 7')
    assert.equal(exec.text, '42')
  })

  test('maskRequestHost: the server in the sandbox sees the masked Host, ${PORT} replaced', async () => {
    const sbx = track(server, await Sandbox.create({ network: { maskRequestHost: 'masked.example:${PORT}' } }))
    await startHostServer(sbx)
    const res = await get('/', { Host: sbx.getHost(8000) })
    assert.equal(res.status, 200, res.body)
    assert.equal(res.body, 'host=masked.example:8000\n')
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.equal(info.network?.maskRequestHost, 'masked.example:${PORT}')
  })
})

describe('network rules', () => {
  test('stored, shown by getInfo and replaced by updateNetwork; the sandbox trusts the daemon CA and holds no secret', async () => {
    const value = 'sk-rule-secret-' + Date.now()
    await Secret.create('rule-key', value)
    const auth = `Bearer ${Secret.fill('rule-key')}`
    const sbx = track(server, await Sandbox.create({ network: { rules: { 'API.example.com': [{ transform: { headers: { Authorization: auth } } }] } } }))
    let info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.network?.rules, { 'api.example.com': [{ transform: { headers: { Authorization: 'Bearer ${e2b.secrets.rule-key}' } } }] })

    // The daemon's interception CA, and nothing secret, is in the sandbox.
    const ca = readFileSync(join(server.dataDir, 'intercept-ca.crt'), 'utf8').trim()
    assert.equal((await sbx.commands.run('cat "$NODE_EXTRA_CA_CERTS"')).stdout.trim(), ca)
    assert.ok((await sbx.commands.run('cat "$SSL_CERT_FILE"')).stdout.includes(ca))
    const seen = await sbx.commands.run("env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; grep -rs rule-secret /etc /tmp /home /root || true")
    assert.ok(!seen.stdout.includes(value), 'the secret is in the sandbox')

    await sbx.updateNetwork({ rules: { '*.example.org': [{ transform: { headers: { 'X-Key': auth } } }] } })
    info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(Object.keys(info.network?.rules ?? {}), ['*.example.org'])
    await sbx.updateNetwork({})
    info = await Sandbox.getInfo(sbx.sandboxId)
    assert.equal(info.network?.rules, undefined)

    // A sandbox without rules trusts nothing new.
    const plain = track(server, await Sandbox.create())
    assert.equal((await plain.commands.run('echo "[$NODE_EXTRA_CA_CERTS]"')).stdout, '[]\n')
  })
})

describe('secrets', () => {
  test('create, list, getInfo, update and destroy; the value never comes back', async () => {
    const value = 'sk-' + 'x'.repeat(20) + Date.now()
    const sec = await Secret.create('OpenAI-Key', value, { metadata: { env: 'test' } })
    assert.match(sec.secretId, /^sec_/)
    assert.equal(sec.name, 'openai-key')
    assert.equal(sec.version, 1)
    assert.deepEqual(sec.metadata, { env: 'test' })
    assert.ok(sec.createdAt instanceof Date && !isNaN(sec.createdAt))
    assert.ok(!JSON.stringify(sec).includes(value))

    const info = await Secret.getInfo('openai-key')
    assert.equal(info.secretId, sec.secretId)
    assert.equal(await Secret.exists(sec.secretId), true)
    const pager = Secret.list()
    const listed = await pager.nextItems()
    assert.ok(listed.some((s) => s.secretId === sec.secretId))
    assert.ok(!JSON.stringify(listed).includes(value))

    const updated = await Secret.update(sec.secretId, value + '-2')
    assert.equal(updated.version, 2)

    assert.equal(await Secret.destroy(sec.secretId), true)
    assert.equal(await Secret.destroy(sec.secretId), false)
    assert.equal(await Secret.exists(sec.secretId), false)
    await assert.rejects(Secret.getInfo(sec.secretId), SecretNotFoundError)
  })

  test("another team's secret looks unknown", async () => {
    const sec = await Secret.create('team-a-only', 'value-a')
    const asB = { apiKey: teamKey('b') }
    await assert.rejects(Secret.getInfo(sec.secretId, asB), SecretNotFoundError)
    await assert.rejects(Secret.getInfo('team-a-only', asB), SecretNotFoundError)
    await assert.rejects(Secret.update(sec.secretId, 'stolen', asB), SecretNotFoundError)
    assert.equal(await Secret.exists(sec.secretId, asB), false)
    assert.equal(await Secret.destroy(sec.secretId, asB), false)
    const listedB = await Secret.list(asB).nextItems()
    assert.ok(!listedB.some((s) => s.secretId === sec.secretId))
    // Team b may use the same name for a secret of its own.
    const own = await Secret.create('team-a-only', 'value-b', asB)
    assert.notEqual(own.secretId, sec.secretId)
    assert.equal((await Secret.getInfo('team-a-only')).secretId, sec.secretId)
  })
})

describe('across a daemon restart', () => {
  test("a private sandbox's token and Host mask survive the daemon", async () => {
    const first = await startServer({ name: 'private-restart-1', keepDataDir: true, extraArgs: ['--warm-pool', 'off'] })
    let second
    try {
      useSdkEnv(first)
      const sbx = await Sandbox.create({ network: { allowPublicTraffic: false, maskRequestHost: 'kept.example:${PORT}' }, timeoutMs: 600_000 })
      await startHostServer(sbx)
      const port = (s) => s.port
      const getFrom = (s, headers) => new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: port(s), path: '/', headers }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (d) => (body += d))
          res.on('end', () => resolve({ status: res.statusCode, body }))
        })
        req.on('error', reject)
        req.end()
      })
      const byHeaders = { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8000' }
      assert.equal((await getFrom(first, { ...byHeaders, 'e2b-traffic-access-token': sbx.trafficAccessToken })).status, 200)
      await first.stop()

      second = await startServer({ name: 'private-restart-2', dataDir: first.dataDir, apiKey: first.apiKey, keepDataDir: true, extraArgs: ['--warm-pool', 'off', '--kill-on-stop'] })
      useSdkEnv(second)
      assert.equal((await getFrom(second, byHeaders)).status, 403)
      const ok = await getFrom(second, { ...byHeaders, 'e2b-traffic-access-token': sbx.trafficAccessToken })
      assert.equal(ok.status, 200, ok.body)
      assert.equal(ok.body, 'host=kept.example:8000\n')
      assert.equal((await Sandbox.connect(sbx.sandboxId)).trafficAccessToken, sbx.trafficAccessToken)
      await Sandbox.kill(sbx.sandboxId)
    } finally {
      if (second) await second.stop().catch(() => {})
      else await first.stop().catch(() => {})
      rmSync(first.dataDir, { recursive: true, force: true })
      useSdkEnv(server)
    }
  })
})
