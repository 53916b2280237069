#!/usr/bin/env node
// netproxy_bench.mjs — what the egress proxy behind domain rules costs a
// sandbox's connections: setup and throughput through the proxy (a
// sandbox with allowOut names and denyOut 0.0.0.0/0) against direct
// (a default, allow-all sandbox: veth, NAT, nftables), in the same run.
//
//   (cd test/compat && npm ci) && make build
//   node bench/netproxy_bench.mjs [--requests 300] [--mib 256] [--rounds 3]
//
// As root. The "internet" is test/compat/testnet.mjs: a network namespace
// on TEST-NET-3 addresses with its own DNS (the daemon gets --dns) and
// node web servers. Inside each sandbox a Python client makes --requests
// sequential HTTP/1.1 requests, each on a new connection
// (connect, send, read the 40-byte answer, close) and reports the median
// and p95 per request; then it downloads and uploads --mib MiB on one
// connection. Rounds alternate direct and proxied. Last, --creates cold
// creates of each kind (no rules, address rules, domain rules),
// alternating, for what domain rules add to one.
import { dirname, join, resolve } from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const compatDir = resolve(here, '..', 'test', 'compat')
const { startServer, useSdkEnv } = await import(pathToFileURL(join(compatDir, 'harness.mjs')))
const { addrA, startTestNet } = await import(pathToFileURL(join(compatDir, 'testnet.mjs')))
const requireFromCompat = createRequire(join(compatDir, 'package.json'))
const { Sandbox } = await import(pathToFileURL(requireFromCompat.resolve('e2b')))

const { values: opt } = parseArgs({
  options: {
    requests: { type: 'string', default: '300' },
    mib: { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
    creates: { type: 'string', default: '20' },
  },
})

// The client inside the sandbox: argv host, name, requests, MiB.
const client = String.raw`
import socket, sys, time
host, name, n, mib = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
req = ("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name).encode()
times = []
for _ in range(n):
    t0 = time.perf_counter()
    s = socket.create_connection((host, 80))
    s.sendall(req)
    while s.recv(65536):
        pass
    s.close()
    times.append(time.perf_counter() - t0)
times.sort()
def transfer(down):
    s = socket.create_connection((host, 80))
    size = mib << 20
    t0 = time.perf_counter()
    if down:
        s.sendall(("GET /big?n=%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (size, name)).encode())
        got = 0
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got += len(b)
    else:
        s.sendall(("POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (name, size)).encode())
        chunk = bytes(1 << 20)
        for _ in range(mib):
            s.sendall(chunk)
        while s.recv(65536):
            pass
    dt = time.perf_counter() - t0
    s.close()
    return size / dt / 1e6
print("%.3f %.3f %.1f %.1f" % (times[len(times) // 2] * 1e3, times[int(len(times) * 0.95)] * 1e3, transfer(True), transfer(False)))
`

const net = await startTestNet()
const server = await startServer({ name: 'netproxy-bench', extraArgs: ['--dns', addrA, '--warm-pool', 'off'] })
useSdkEnv(server)
const rows = []
try {
  const direct = await Sandbox.create({ timeoutMs: 600_000 })
  const proxied = await Sandbox.create({ timeoutMs: 600_000, network: { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] } })
  for (const sbx of [direct, proxied]) await sbx.files.write('/tmp/client.py', client)
  for (let round = 0; round < Number(opt.rounds); round++) {
    for (const [how, sbx] of [['direct', direct], ['proxied', proxied]]) {
      const r = await sbx.commands.run(`python3 /tmp/client.py allowed.test allowed.test ${opt.requests} ${opt.mib}`, { timeoutMs: 600_000 })
      const [p50, p95, down, up] = r.stdout.trim().split(' ').map(Number)
      rows.push({ round, how, p50, p95, down, up })
      console.log(`round ${round} ${how.padEnd(8)} request p50 ${p50.toFixed(3)} ms  p95 ${p95.toFixed(3)} ms  download ${down.toFixed(0)} MB/s  upload ${up.toFixed(0)} MB/s`)
    }
  }
  const med = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  for (const how of ['direct', 'proxied']) {
    const mine = rows.filter((r) => r.how === how)
    console.log(`median of rounds, ${how.padEnd(8)}: request p50 ${med(mine.map((r) => r.p50)).toFixed(3)} ms, p95 ${med(mine.map((r) => r.p95)).toFixed(3)} ms, download ${med(mine.map((r) => r.down)).toFixed(0)} MB/s, upload ${med(mine.map((r) => r.up)).toFixed(0)} MB/s`)
  }
  const text = await (await fetch(`${server.url}/metrics`)).text()
  const sum = text.match(/^sandpit_netproxy_setup_seconds_sum (\S+)/m)
  const count = text.match(/^sandpit_netproxy_setup_seconds_count (\S+)/m)
  if (sum && count) console.log(`proxy's own setup (accept to relaying: peek, lookup, connect), mean over ${count[1]} connections: ${(Number(sum[1]) / Number(count[1]) * 1e3).toFixed(3)} ms`)
  await direct.kill()
  await proxied.kill()

  // What domain rules add to a create (no warm pool: both cold): the
  // listener in the sandbox's namespace and its redirect table.
  const kinds = [['direct', undefined], ['addresses', { allowOut: [addrA], denyOut: ['0.0.0.0/0'] }], ['proxied', { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] }]]
  const took = Object.fromEntries(kinds.map(([how]) => [how, []]))
  for (let i = 0; i < Number(opt.creates); i++) {
    for (const [how, network] of kinds) {
      const t0 = performance.now()
      const sbx = await Sandbox.create({ network })
      took[how].push(performance.now() - t0)
      await sbx.kill()
    }
  }
  for (const [how] of kinds) console.log(`create, cold, ${how.padEnd(9)}: p50 ${med(took[how]).toFixed(2)} ms over ${took[how].length}`)
} finally {
  await server.stop()
  net.stop()
}
