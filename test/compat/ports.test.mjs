// Issue 3: servers inside a sandbox reached from outside through sandpit,
// routed by the E2b-Sandbox-Id/E2b-Sandbox-Port headers or by a
// PORT-ID.DOMAIN Host header (what sandbox.getHost(port) returns).
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { before, describe, test } from 'node:test'
import { Sandbox } from 'e2b'
import { track, useServer, waitFor } from './harness.mjs'

const server = useServer()
const token = randomBytes(8).toString('hex')

// A small server for what `python3 -m http.server` cannot do: a chunked
// response written over time, and a WebSocket echo.
const EXTRA_SERVER = String.raw`
import base64, hashlib, http.server, os, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a): pass
    def do_GET(self):
        if self.headers.get('Upgrade', '').lower() == 'websocket':
            return self.websocket()
        if self.path == '/stream':
            self.send_response(200)
            self.send_header('Content-Type', 'text/plain')
            self.send_header('Transfer-Encoding', 'chunked')
            self.end_headers()
            for i in range(1, 4):
                part = ('part-%d\n' % i).encode()
                self.wfile.write(b'%x\r\n%s\r\n' % (len(part), part))
                self.wfile.flush()
                time.sleep(0.5)
            self.wfile.write(b'0\r\n\r\n')
            return
        body = ('host=%s\n' % self.headers.get('Host')).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def websocket(self):
        key = self.headers['Sec-WebSocket-Key']
        accept = base64.b64encode(hashlib.sha1((key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').encode()).digest()).decode()
        self.send_response(101)
        self.send_header('Upgrade', 'websocket')
        self.send_header('Connection', 'Upgrade')
        self.send_header('Sec-WebSocket-Accept', accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        r = self.rfile
        while True:
            h = r.read(2)
            if len(h) < 2:
                return
            op, n = h[0] & 0x0f, h[1] & 0x7f
            if n == 126:
                n = int.from_bytes(r.read(2), 'big')
            mask = r.read(4) if h[1] & 0x80 else b'\0\0\0\0'
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(r.read(n)))
            if op == 8:
                self.wfile.write(b'\x88\x00')
                self.wfile.flush()
                return
            reply = b'echo:' + data
            self.wfile.write(bytes([0x81, len(reply)]) + reply)
            self.wfile.flush()
http.server.ThreadingHTTPServer(('', 8001), H).serve_forever()
`

/** Plain HTTP request to the sandpit listener with arbitrary headers (Host included). */
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

/** One WebSocket text message round trip over a raw HTTP upgrade. */
function wsEcho(headers, text) {
  return new Promise((resolve, reject) => {
    const key = randomBytes(16).toString('base64')
    const req = request({
      host: '127.0.0.1',
      port: server.port,
      path: '/ws',
      headers: { ...headers, Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Key': key, 'Sec-WebSocket-Version': '13' },
    })
    req.setTimeout(10_000, () => req.destroy(new Error('websocket timed out')))
    req.on('error', reject)
    req.on('response', (res) => {
      res.resume()
      reject(new Error(`no upgrade: HTTP ${res.statusCode}`))
    })
    req.on('upgrade', (res, socket, head) => {
      const want = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
      if (res.headers['sec-websocket-accept'] !== want) {
        socket.destroy()
        return reject(new Error(`bad Sec-WebSocket-Accept ${res.headers['sec-websocket-accept']}`))
      }
      const payload = Buffer.from(text)
      const mask = randomBytes(4)
      const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))
      socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]))
      let buf = head
      socket.on('data', (d) => {
        buf = Buffer.concat([buf, d])
        if (buf.length >= 2 && buf.length >= 2 + (buf[1] & 0x7f)) {
          socket.destroy()
          resolve(buf.subarray(2, 2 + (buf[1] & 0x7f)).toString())
        }
      })
      socket.on('error', reject)
    })
    req.end()
  })
}

describe('ports', () => {
  /** @type {Sandbox} */
  let sbx
  let byHeader
  before(async () => {
    sbx = track(server, await Sandbox.create())
    byHeader = (port) => ({ 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': String(port) })
    await sbx.commands.run(`mkdir -p ~/site && echo "page ${token}" > ~/site/index.html`)
    await sbx.commands.run('python3 -m http.server 8000', { background: true, cwd: '/home/user/site', timeoutMs: 0 })
    await sbx.commands.run(`cat > /tmp/extra_server.py <<'EOF'\n${EXTRA_SERVER}\nEOF`)
    await sbx.commands.run('python3 /tmp/extra_server.py', { background: true, timeoutMs: 0 })
    // Ready when both answer from inside the sandbox.
    await waitFor(async () => (await sbx.commands.run('python3 -c "import urllib.request as u; u.urlopen(\'http://127.0.0.1:8000/\'); u.urlopen(\'http://127.0.0.1:8001/\')" && echo up').catch(() => ({ stdout: '' }))).stdout === 'up\n', {
      timeoutMs: 20_000,
      intervalMs: 200,
      what: 'servers in the sandbox to listen',
    })
  })

  test('http.server reachable with E2b-Sandbox-Id / E2b-Sandbox-Port headers (fetch)', async () => {
    const res = await fetch(`${server.url}/index.html`, { headers: byHeader(8000) })
    assert.equal(res.status, 200)
    assert.equal(await res.text(), `page ${token}\n`)
  })

  test('reachable through the Host header sandbox.getHost(8000)', async () => {
    const host = sbx.getHost(8000)
    // With no --domain the daemon reports localhost:PORT, so the host names
    // sandpit itself (browsers and curl send *.localhost to loopback), not
    // E2B's cloud domain the SDK falls back to when none is reported.
    const port = new URL(server.url).port
    assert.equal(host, `8000-${sbx.sandboxId}.localhost:${port}`)
    const res = await get('/index.html', { Host: host })
    assert.equal(res.status, 200, `GET with Host ${host}: ${res.status} ${res.body.slice(0, 200)}`)
    assert.equal(res.body, `page ${token}\n`)
  })

  test('the in-sandbox server sees a request it can answer (Host header passes through)', async () => {
    const res = await get('/', { Host: sbx.getHost(8001) })
    assert.equal(res.status, 200)
    assert.match(res.body, /^host=.+\n$/)
  })

  test('streamed responses arrive as they are written', async () => {
    const res = await fetch(`${server.url}/stream`, { headers: byHeader(8001) })
    assert.equal(res.status, 200)
    const t0 = performance.now()
    const dec = new TextDecoder()
    const seen = []
    for await (const chunk of res.body) seen.push({ text: dec.decode(chunk, { stream: true }), at: performance.now() - t0 })
    const all = seen.map((s) => s.text).join('')
    assert.equal(all, 'part-1\npart-2\npart-3\n')
    const last = seen.at(-1).at
    assert.ok(seen.length >= 2 && last - seen[0].at > 600, `chunks at ${seen.map((s) => s.at.toFixed(0))} ms: response was buffered`)
  })

  test('WebSocket upgrade through the proxy (headers and Host routing)', async () => {
    assert.equal(await wsEcho(byHeader(8001), 'hello'), 'echo:hello')
    assert.equal(await wsEcho({ Host: sbx.getHost(8001) }, 'by-host'), 'echo:by-host')
  })

  test('a closed port and an unknown sandbox answer 502', async () => {
    const closed = await fetch(`${server.url}/`, { headers: byHeader(8999) })
    await closed.arrayBuffer()
    assert.equal(closed.status, 502)
    const unknown = await fetch(`${server.url}/`, { headers: { 'E2b-Sandbox-Id': 'inosuchsandbox', 'E2b-Sandbox-Port': '8000' } })
    await unknown.arrayBuffer()
    assert.equal(unknown.status, 502)
  })

  test('after kill the port is gone', async () => {
    const s = track(server, await Sandbox.create())
    await s.commands.run('python3 -m http.server 8000', { background: true, timeoutMs: 0 })
    const headers = { 'E2b-Sandbox-Id': s.sandboxId, 'E2b-Sandbox-Port': '8000' }
    await waitFor(async () => (await fetch(`${server.url}/`, { headers })).status === 200, { timeoutMs: 20_000, intervalMs: 200, what: 'http.server in the second sandbox' })
    await s.kill()
    const res = await fetch(`${server.url}/`, { headers })
    await res.arrayBuffer()
    assert.equal(res.status, 502)
  })
})
