// Runs inside the network namespace chromium-netns.sh made: brings
// loopback up, listens on 127.0.0.1:SANDPIT_BRIDGE_PORT (the daemon's port
// outside, so the page's URLs are the same), passes each connection to the
// Unix socket SANDPIT_BRIDGE_SOCK (which the test serves outside, on to the
// daemon), then runs Chromium with this process's arguments and its CDP
// pipe (fds 3 and 4), and exits with it.
import { spawn, spawnSync } from 'node:child_process'
import { connect, createServer } from 'node:net'

const port = Number(process.env.SANDPIT_BRIDGE_PORT)
const sock = process.env.SANDPIT_BRIDGE_SOCK
const chromium = process.env.SANDPIT_BRIDGE_CHROMIUM

const up = spawnSync('ip', ['link', 'set', 'lo', 'up'], { stdio: 'inherit', env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } })
if (up.status !== 0) {
  console.error('chromium-netns: could not bring loopback up')
  process.exit(1)
}

const server = createServer((c) => {
  const out = connect(sock)
  c.pipe(out).pipe(c)
  const end = () => {
    c.destroy()
    out.destroy()
  }
  c.on('error', end)
  out.on('error', end)
  c.on('close', end)
  out.on('close', end)
})
server.listen(port, '127.0.0.1', () => {
  const child = spawn(chromium, process.argv.slice(2), { stdio: [0, 1, 2, 3, 4] })
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
  for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(s, () => child.kill(s))
})
