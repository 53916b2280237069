// A stand-in internet for network tests and benchmarks: a network
// namespace joined to the host by a veth, on TEST-NET addresses (TEST-NET-3
// unless told), with a DNS server (UDP) for a few names and web servers
// (HTTP :80, HTTPS :443 with a certificate for every name, signed by a CA
// of the test's own) on two addresses. Each web server answers "<scheme>
// <address reached> <Host>\n" (with echo: 'auth', "<scheme> <Host>
// auth=<Authorization or ->\n"); /slow answers after 3 s, /big?n=N with N
// zero bytes; a POST's body is read and dropped.
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { waitFor } from './harness.mjs'

export const hostAddr = '203.0.113.1' // the host's own end of the link
export const addrA = '203.0.113.2' // DNS, and the web server of allowed.test
export const addrB = '203.0.113.3' // the web server of the other names
const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()

export const names = {
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
  const answer = process.env.ECHO === 'auth'
    ? scheme + ' ' + req.headers.host + ' auth=' + (req.headers.authorization ?? '-')
    : scheme + ' ' + req.socket.localAddress + ' ' + req.headers.host
  req.on('end', () => res.end(answer + '\\n'))
}
const tls = { key: fs.readFileSync(process.env.KEY), cert: fs.readFileSync(process.env.CERT) }
for (const a of process.env.WEB_ADDRS.split(',')) {
  http.createServer(handler('http')).listen(80, a)
  https.createServer(tls, handler('https')).listen(443, a)
}
`


/**
 * Starts the stand-in internet; its stop() removes it, and caFile is the
 * CA its certificate is signed by. Options: net, the first three octets of
 * the /29 it takes (the host is .1, addrA .2, addrB .3: a test that runs
 * beside another takes a net of its own); names, the DNS answers (default
 * above, for the default net); tag, a short word in the netns and link
 * names; echo: 'auth' for the Authorization answer; caName, the CA's CN.
 */
export async function startTestNet({ net = '203.0.113', names: answers = names, tag = 'dom', echo = '', caName = 'sandpit test CA' } = {}) {
  const host = `${net}.1`, a = `${net}.2`, b = `${net}.3`
  const ns = `sp${tag}${process.pid % 100000}`
  const hostSide = `sp${tag[0]}${process.pid % 100000}`
  const dir = mkdtempSync(join(tmpdir(), 'sandpit-testnet-'))
  let web
  const stop = () => {
    web?.kill()
    try { ip('link', 'del', hostSide) } catch {}
    try { ip('netns', 'del', ns) } catch {}
    rmSync(dir, { recursive: true, force: true })
  }
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' })
  try {
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${caName}`, '-keyout', 'ca.key', '-out', 'ca.pem')
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=sandpit-test', '-keyout', 'key.pem', '-out', 'req.csr')
    writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=' + Object.keys(answers).map((n) => 'DNS:' + n).join(',') + '\n')
    ssl('x509', '-req', '-in', 'req.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf', '-out', 'cert.pem')
    writeFileSync(join(dir, 'servers.js'), serverScript)
    ip('netns', 'add', ns)
    ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
    ip('addr', 'add', `${host}/29`, 'dev', hostSide)
    ip('link', 'set', hostSide, 'up')
    ip('-n', ns, 'addr', 'add', `${a}/29`, 'dev', 'eth0')
    ip('-n', ns, 'addr', 'add', `${b}/29`, 'dev', 'eth0')
    ip('-n', ns, 'link', 'set', 'eth0', 'up')
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    web = spawn('ip', ['netns', 'exec', ns, process.execPath, join(dir, 'servers.js')], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, NAMES: JSON.stringify(answers), DNS_ADDR: a, WEB_ADDRS: `${a},${b}`, ECHO: echo, KEY: join(dir, 'key.pem'), CERT: join(dir, 'cert.pem') },
    })
    await waitFor(() => { try { return execFileSync('curl', ['-sf', `http://${b}/`]).toString() } catch { return null } }, { what: 'the test internet' })
  } catch (err) {
    stop()
    throw err
  }
  return { stop, caFile: join(dir, 'ca.pem') }
}
