// Domain rules in network.allowOut, as an E2B SDK user meets them: names
// (exact and *.wildcard) reached over HTTP and HTTPS through sandpit's
// egress proxy; everything else refused, even when the sandbox lies about
// the address; updateNetwork opening and closing names; names that
// resolve to private addresses or the host refused; refusals counted in
// /metrics.
//
// The "internet" is a network namespace this test makes, on TEST-NET-3
// addresses behind a host route, with its own DNS server that the daemon
// is pointed at with --dns.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { ALL_TRAFFIC, CommandExitError, Sandbox } from 'e2b'
import { startServer, track, useSdkEnv, useServer, waitFor } from './harness.mjs'

const ns = `spdom${process.pid % 100000}`
const hostSide = `spd${process.pid % 100000}`
const hostAddr = '203.0.113.1' // the host's own end of the link
const addrA = '203.0.113.2' // DNS, and the web server of allowed.test
const addrB = '203.0.113.3' // the web server of the other names
const server = useServer({ extraArgs: ['--dns', addrA, '--egress-rate-max', '64MiB', '--egress-max-conns-max', '64'] })
const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()

const names = {
  'allowed.test': addrA,
  'api.wild.test': addrB,
  'deep.api.wild.test': addrB,
  'wild.test': addrB,
  'blocked.test': addrB,
  'private.test': '10.1.2.3',
  'host.test': hostAddr,
}

// The stand-in internet's servers, run with node inside the namespace: DNS
// over UDP for the names above, HTTP on :80 and HTTPS on :443 of both
// addresses, each answering with the address it was reached on and the
// Host it was asked for.
const serverScript = `
const dgram = require('node:dgram'), http = require('node:http'), https = require('node:https'), fs = require('node:fs')
const names = JSON.parse(process.env.NAMES)
const dns = dgram.createSocket('udp4')
dns.on('message', (q, rinfo) => {
  let i = 12, labels = []
  while (q[i] !== 0) { labels.push(q.subarray(i + 1, i + 1 + q[i]).toString()); i += q[i] + 1 }
  const qtype = q.readUInt16BE(i + 1), qend = i + 5
  const name = labels.join('.').toLowerCase(), addr = names[name]
  const answer = addr && qtype === 1
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
dns.bind(53, process.env.DNS_ADDR)
const handler = (scheme) => (req, res) => {
  const url = new URL(req.url, 'http://x')
  if (url.pathname === '/slow') return setTimeout(() => res.end('slow\\n'), 3000)
  if (url.pathname === '/big') return res.end(Buffer.alloc(Number(url.searchParams.get('n'))))
  req.resume()
  req.on('end', () => res.end(scheme + ' ' + req.socket.localAddress + ' ' + req.headers.host + '\\n'))
}
const tls = { key: fs.readFileSync(process.env.KEY), cert: fs.readFileSync(process.env.CERT) }
for (const a of process.env.WEB_ADDRS.split(',')) {
  http.createServer(handler('http')).listen(80, a)
  https.createServer(tls, handler('https')).listen(443, a)
}
`

/** stdout of cmd in sbx and its exit code, whatever it is. */
async function run(sbx, cmd) {
  try {
    const r = await sbx.commands.run(cmd, { timeoutMs: 30_000 })
    return { out: r.stdout, code: 0 }
  } catch (err) {
    if (err instanceof CommandExitError) return { out: err.stdout, code: err.exitCode }
    throw err
  }
}

/** What curl in sbx gets from url ('' when refused), with curl's extra args. */
async function fetchIn(sbx, url, ...args) {
  const r = await run(sbx, `curl -sk -m 10 ${args.join(' ')} ${url}`)
  return r.code === 0 ? r.out : ''
}

async function metric(name) {
  const text = await (await fetch(`${server.url}/metrics`)).text()
  const m = text.match(new RegExp(`^${name.replace(/[{}"]/g, (c) => '\\' + c)} (\\d+)`, 'm'))
  return m ? Number(m[1]) : 0
}

describe('domain rules in network.allowOut', () => {
  let web
  let dir
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sandpit-domains-'))
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=sandpit-test',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
    writeFileSync(join(dir, 'servers.js'), serverScript)
    ip('netns', 'add', ns)
    ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
    ip('addr', 'add', `${hostAddr}/29`, 'dev', hostSide)
    ip('link', 'set', hostSide, 'up')
    ip('-n', ns, 'addr', 'add', `${addrA}/29`, 'dev', 'eth0')
    ip('-n', ns, 'addr', 'add', `${addrB}/29`, 'dev', 'eth0')
    ip('-n', ns, 'link', 'set', 'eth0', 'up')
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    web = spawn('ip', ['netns', 'exec', ns, process.execPath, join(dir, 'servers.js')], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, NAMES: JSON.stringify(names), DNS_ADDR: addrA, WEB_ADDRS: `${addrA},${addrB}`, KEY: join(dir, 'key.pem'), CERT: join(dir, 'cert.pem') },
    })
    await waitFor(() => { try { return execFileSync('curl', ['-sf', `http://${addrB}/`]).toString() } catch { return null } }, { what: 'the test internet' })
  })
  after(() => {
    web?.kill()
    try { ip('link', 'del', hostSide) } catch {}
    try { ip('netns', 'del', ns) } catch {}
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  test('allowed names, exact and wildcard, over HTTP and HTTPS; nothing else', async () => {
    const sbx = track(server, await Sandbox.create({ network: { allowOut: ['allowed.test', '*.wild.test'], denyOut: [ALL_TRAFFIC] } }))
    assert.match((await run(sbx, 'cat /etc/resolv.conf')).out, new RegExp(`^nameserver ${addrA}$`, 'm'), 'the sandbox resolves through --dns')
    assert.equal(await fetchIn(sbx, 'http://allowed.test/'), `http ${addrA} allowed.test\n`)
    assert.equal(await fetchIn(sbx, 'https://allowed.test/'), `https ${addrA} allowed.test\n`)
    assert.equal(await fetchIn(sbx, 'http://api.wild.test/'), `http ${addrB} api.wild.test\n`)
    assert.equal(await fetchIn(sbx, 'https://deep.api.wild.test/'), `https ${addrB} deep.api.wild.test\n`)

    const refusedBefore = await metric('sandpit_netproxy_refused_total{reason="not_allowed"}')
    assert.equal(await fetchIn(sbx, 'http://blocked.test/'), '', 'a name outside allowOut')
    assert.equal(await fetchIn(sbx, 'https://wild.test/'), '', 'a wildcard does not hold its apex')
    // The sandbox cannot borrow an allowed name's address for another name...
    assert.equal(await fetchIn(sbx, 'https://blocked.test/', '--resolve', `blocked.test:443:${addrA}`), '', 'curl --resolve to an allowed address')
    // ...nor reach an allowed name's address bare.
    assert.equal(await fetchIn(sbx, `http://${addrA}/`), '', 'the bare address of an allowed name')
    assert.equal(await fetchIn(sbx, `https://${addrB}/`), '', 'the bare address of an allowed wildcard name')
    // A name it was allowed, sent to an address it was not: the proxy
    // dials the name, so the request lands where DNS says.
    assert.equal(await fetchIn(sbx, 'http://allowed.test/', '--resolve', `allowed.test:80:${addrB}`), `http ${addrA} allowed.test\n`)
    assert.ok(await metric('sandpit_netproxy_refused_total{reason="not_allowed"}') >= refusedBefore + 5, 'refusals are counted in /metrics')

    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.network?.allowOut, ['allowed.test', '*.wild.test'])
  })

  test('updateNetwork opens and closes names on a running sandbox', async () => {
    const sbx = track(server, await Sandbox.create({ network: { allowOut: ['allowed.test'], denyOut: [ALL_TRAFFIC] } }))
    assert.equal(await fetchIn(sbx, 'http://allowed.test/'), `http ${addrA} allowed.test\n`)
    assert.equal(await fetchIn(sbx, 'http://blocked.test/'), '')
    await sbx.updateNetwork({ allowOut: ['blocked.test'], denyOut: [ALL_TRAFFIC] })
    assert.equal(await fetchIn(sbx, 'https://blocked.test/'), `https ${addrB} blocked.test\n`, 'opened')
    assert.equal(await fetchIn(sbx, 'http://allowed.test/'), '', 'closed')
    // Without names it is back to addresses only: all out.
    await sbx.updateNetwork({})
    assert.equal(await fetchIn(sbx, `http://${addrB}/`), `http ${addrB} ${addrB}\n`)
    await sbx.updateNetwork({ allowOut: ['allowed.test'], denyOut: [ALL_TRAFFIC] })
    assert.equal(await fetchIn(sbx, `http://${addrB}/`), '', 'names again')
    assert.equal(await fetchIn(sbx, 'http://allowed.test/'), `http ${addrA} allowed.test\n`)
  })

  test('a name that resolves to a private address or the host is refused', async () => {
    const sbx = track(server, await Sandbox.create({ network: { allowOut: ['private.test', 'host.test'], denyOut: [ALL_TRAFFIC] } }))
    const before = await metric('sandpit_netproxy_refused_total{reason="resolved_fixed_range"}')
    assert.equal(await fetchIn(sbx, 'http://private.test/'), '', 'resolves to 10.1.2.3')
    assert.equal(await fetchIn(sbx, 'http://host.test/'), '', 'resolves to the host')
    assert.ok(await metric('sandpit_netproxy_refused_total{reason="resolved_fixed_range"}') >= before + 2)
  })

  test('a restarted daemon proxies the sandboxes it takes over under their names', async () => {
    const args = ['--dns', addrA, '--warm-pool', 'off']
    const first = await startServer({ name: 'network_domains-restart-1', keepDataDir: true, extraArgs: args })
    let second
    try {
      useSdkEnv(first)
      const sbx = await Sandbox.create({ network: { allowOut: ['allowed.test'], denyOut: [ALL_TRAFFIC] }, timeoutMs: 300_000 })
      assert.equal(await fetchIn(sbx, 'http://allowed.test/'), `http ${addrA} allowed.test\n`)
      await first.stop()
      second = await startServer({ name: 'network_domains-restart-2', keepDataDir: true, dataDir: first.dataDir, apiKey: first.apiKey, extraArgs: args })
      useSdkEnv(second)
      const again = await Sandbox.connect(sbx.sandboxId)
      assert.equal(await fetchIn(again, 'https://allowed.test/'), `https ${addrA} allowed.test\n`, 'allowed after the restart')
      assert.equal(await fetchIn(again, 'http://blocked.test/'), '', 'refused after the restart')
      await again.kill()
    } finally {
      await second?.stop().catch(() => {})
      if (!first.exited) await first.stop().catch(() => {})
      rmSync(first.dataDir, { recursive: true, force: true })
      useSdkEnv(server)
    }
  })

  test('sandpitNetworkLimits bound connections and bandwidth, proxied or not', async () => {
    const create = async (body) => {
      const res = await fetch(`${server.url}/sandboxes`, {
        method: 'POST',
        headers: { 'X-API-Key': server.apiKey, 'Content-Type': 'application/json' },
        body: JSON.stringify({ templateID: 'base', ...body }),
      })
      return { status: res.status, body: await res.json() }
    }
    const over = await create({ sandpitNetworkLimits: { maxConnections: 65 } })
    assert.equal(over.status, 400)
    assert.match(over.body.message, /maxConnections 65 is over this server's maximum of 64/)

    const limits = { maxConnections: 2, egressBytesPerSecond: 256 << 10 }
    const plain = await create({ sandpitNetworkLimits: limits })
    const proxied = await create({ sandpitNetworkLimits: limits, network: { allowOut: ['*.wild.test'], denyOut: [ALL_TRAFFIC] } })
    assert.equal(plain.status, 201, JSON.stringify(plain.body))
    assert.equal(proxied.status, 201, JSON.stringify(proxied.body))
    for (const [how, created, host] of [['plain', plain, addrB], ['proxied', proxied, 'api.wild.test']]) {
      const sbx = track(server, await Sandbox.connect(created.body.sandboxID))
      // Three connections held open at once: the third is refused.
      const three = await run(sbx, `for i in 1 2 3; do curl -s -m 20 -o /dev/null -w '%{http_code}\\n' http://${host}/slow & done; wait`)
      assert.deepEqual(three.out.trim().split('\n').sort(), ['000', '200', '200'], `${how}: connections`)
      // 1 MiB each way at 256 KiB/s: well over two seconds. (Only a lower
      // bound: a loaded machine is slower, never faster.)
      const down = Number((await run(sbx, `curl -s -m 60 -o /dev/null -w '%{time_total}' 'http://${host}/big?n=1048576'`)).out)
      assert.ok(down >= 2.5, `${how}: 1 MiB down took ${down} s`)
      const upload = Number((await run(sbx, `head -c 1048576 /dev/zero | curl -s -m 60 -o /dev/null -w '%{time_total}' --data-binary @- http://${host}/upload`)).out)
      assert.ok(upload >= 2.5, `${how}: 1 MiB up took ${upload} s`)
    }
  })

  test('denyOut takes no names', async () => {
    await assert.rejects(Sandbox.create({ network: { denyOut: ['blocked.test'] } }), /domain names are allowed in allowOut only/)
  })
})
