// Sandbox networking as an E2B SDK user meets it: online by default, out to
// the internet (here: a network namespace this test makes, standing in for
// it) but not to the host's services or another sandbox; offline with
// allowInternetAccess: false.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { after, before, describe, test } from 'node:test'
import { ALL_TRAFFIC, CommandExitError, Sandbox } from 'e2b'
import { track, useServer, waitFor } from './harness.mjs'

const server = useServer()
const ns = `spcompat${process.pid % 100000}`
const hostSide = `spy${process.pid % 100000}`
const outsideAddr = '198.51.100.10'
const outside2 = '198.18.0.10' // a second internet address, behind the same namespace
const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()

/** stdout of cmd in sbx, whatever its exit code, and the code. */
async function run(sbx, cmd) {
  try {
    const r = await sbx.commands.run(cmd, { timeoutMs: 20_000 })
    return { out: r.stdout, code: 0 }
  } catch (err) {
    if (err instanceof CommandExitError) return { out: err.stdout + err.stderr, code: err.exitCode }
    throw err
  }
}

describe('sandbox networking', () => {
  let outside
  let hostServer
  before(async () => {
    // The stand-in internet: a namespace joined to the host by a veth,
    // serving HTTP on a public-looking address.
    ip('netns', 'add', ns)
    ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
    ip('addr', 'add', '198.51.100.9/30', 'dev', hostSide)
    ip('link', 'set', hostSide, 'up')
    ip('-n', ns, 'addr', 'add', `${outsideAddr}/30`, 'dev', 'eth0')
    ip('-n', ns, 'link', 'set', 'eth0', 'up')
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    ip('-n', ns, 'addr', 'add', `${outside2}/32`, 'dev', 'eth0')
    ip('route', 'add', `${outside2}/32`, 'via', outsideAddr)
    outside = spawn('ip', ['netns', 'exec', ns, 'python3', '-c',
      'import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n def do_GET(s):\n  b=("outside saw "+s.client_address[0]+"\\n").encode(); s.send_response(200); s.end_headers(); s.wfile.write(b)\n def log_message(s,*a): pass\nh.HTTPServer(("0.0.0.0",8080),H).serve_forever()'], { stdio: 'ignore' })
    await waitFor(() => { try { return execFileSync('curl', ['-sf', `http://${outsideAddr}:8080/`]).toString() } catch { return null } }, { what: 'the outside server' })
    // A host service on every address, the daemon's own host included.
    hostServer = createServer((req, res) => res.end('host service\n'))
    await new Promise((r) => hostServer.listen(0, '0.0.0.0', r))
  })
  after(() => {
    outside?.kill()
    hostServer?.closeAllConnections()
    hostServer?.close()
    try { ip('route', 'del', `${outside2}/32`) } catch {}
    try { ip('link', 'del', hostSide) } catch {}
    try { ip('netns', 'del', ns) } catch {}
  })

  test('a default sandbox reaches the internet, masqueraded, with the host\'s resolvers', async () => {
    const sbx = track(server, await Sandbox.create())
    const r = await run(sbx, `curl -s -m 5 http://${outsideAddr}:8080/`)
    assert.equal(r.out, 'outside saw 198.51.100.9\n', 'the outside sees the host, not the sandbox address')
    const conf = (await run(sbx, 'cat /etc/resolv.conf')).out
    assert.match(conf, /^nameserver \d+\.\d+\.\d+\.\d+$/m)
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.equal(info.allowInternetAccess ?? true, true)
  })

  test('not the host\'s services, not another sandbox', async () => {
    const a = track(server, await Sandbox.create())
    const b = track(server, await Sandbox.create())
    const port = hostServer.address().port
    const gw = (await run(a, "ip -4 route show default | awk '{print $3}'")).out.trim()
    assert.match(gw, /^10\.213\./)
    // The host answers on the gateway address itself...
    const res = await fetch(`http://${gw}:${port}/`, { signal: AbortSignal.timeout(3000) })
    assert.equal(await res.text(), 'host service\n')
    // ...but not to the sandbox, and it fails at once, not by timeout.
    const t0 = Date.now()
    const toHost = await run(a, `curl -s -m 5 http://${gw}:${port}/; echo rc=$?`)
    assert.match(toHost.out, /rc=(7|28)$/m)
    assert.ok(Date.now() - t0 < 4000, 'a blocked connection should fail fast')
    await b.commands.run('python3 -m http.server 8000 --bind 0.0.0.0', { background: true, timeoutMs: 0 })
    const addrB = (await run(b, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")).out.trim()
    await waitFor(async () => (await run(b, `curl -sf -o /dev/null http://${addrB}:8000/ && echo up`)).out === 'up\n' || null, { what: "b's server" })
    const aToB = await run(a, `curl -s -m 5 -o /dev/null http://${addrB}:8000/; echo rc=$?`)
    assert.match(aToB.out, /rc=(7|28)$/m, `sandbox a reached sandbox b at ${addrB}`)
    const meta = await run(a, 'curl -s -m 3 http://169.254.169.254/; echo rc=$?')
    assert.match(meta.out, /rc=(7|28)$/m)
  })

  test('network.denyOut / allowOut at create, then updateNetwork', async () => {
    const reaches = async (sbx, addr) => (await run(sbx, `curl -s -m 3 -o /dev/null http://${addr}:8080/; echo rc=$?`)).out.trim() === 'rc=0'
    const sbx = track(server, await Sandbox.create({ network: { denyOut: [ALL_TRAFFIC], allowOut: [outsideAddr] } }))
    assert.equal(await reaches(sbx, outsideAddr), true, 'allowOut wins over denyOut')
    assert.equal(await reaches(sbx, outside2), false, 'denyOut all')
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.network?.allowOut, [outsideAddr])
    await sbx.updateNetwork({ denyOut: [outsideAddr] })
    assert.equal(await reaches(sbx, outsideAddr), false, 'after the update')
    assert.equal(await reaches(sbx, outside2), true, 'after the update')
    await sbx.updateNetwork({})
    assert.equal(await reaches(sbx, outsideAddr), true, 'no rules')
    await assert.rejects(Sandbox.create({ network: { denyOut: ['example.com'] } }), /example\.com.*domain names are allowed in allowOut only/)
  })

  test('allowInternetAccess: false gives loopback only', async () => {
    const sbx = track(server, await Sandbox.create({ allowInternetAccess: false }))
    assert.equal((await run(sbx, 'ls /sys/class/net')).out, 'lo\n')
    const r = await run(sbx, `curl -s -m 3 http://${outsideAddr}:8080/; echo rc=$?`)
    assert.match(r.out, /rc=7$/m)
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.equal(info.allowInternetAccess, false)
  })
})
