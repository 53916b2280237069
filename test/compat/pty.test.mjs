// Issue 3: interactive terminals (sandbox.pty) through the official e2b SDK.
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import { Sandbox, SandboxError } from 'e2b'
import { track, useServer, waitFor } from './harness.mjs'

const server = useServer()
const enc = new TextEncoder()

/** Collects a PTY's output as text. */
function terminal() {
  const dec = new TextDecoder()
  const t = {
    text: '',
    onData: (bytes) => {
      t.text += dec.decode(bytes, { stream: true })
    },
    /** Waits for a regexp to match the output produced after `from`. */
    async expect(re, from = 0) {
      try {
        return await waitFor(() => t.text.slice(from).match(re), { timeoutMs: 10_000, what: `terminal output ${re}` })
      } catch (err) {
        err.message += `; got ${JSON.stringify(t.text.slice(from).slice(-300))}`
        throw err
      }
    },
  }
  return t
}

describe('pty', () => {
  /** @type {Sandbox} */
  let sbx
  before(async () => {
    sbx = track(server, await Sandbox.create())
  })

  test('create, input, resize, kill', async () => {
    const t = terminal()
    const term = await sbx.pty.create({ cols: 80, rows: 24, onData: t.onData, timeoutMs: 0 })
    assert.equal(typeof term.pid, 'number')

    let mark = t.text.length
    await sbx.pty.sendInput(term.pid, enc.encode('stty size\n'))
    await t.expect(/\b24 80\b/, mark)

    // Arithmetic so the answer is not an echo of the input.
    mark = t.text.length
    await sbx.pty.sendInput(term.pid, enc.encode('echo $((6*7))-$TERM\n'))
    await t.expect(/\b42-xterm-256color\b/, mark)

    mark = t.text.length
    await sbx.pty.sendInput(term.pid, enc.encode('tty; whoami\n'))
    await t.expect(/\/dev\/pts\/\d+\s+user\b/, mark)

    await sbx.pty.resize(term.pid, { cols: 120, rows: 40 })
    mark = t.text.length
    await sbx.pty.sendInput(term.pid, enc.encode('stty size\n'))
    await t.expect(/\b40 120\b/, mark)

    assert.equal(await sbx.pty.kill(term.pid), true)
    await assert.rejects(term.wait(), SandboxError, 'a killed terminal must not report success')
    assert.equal(await sbx.pty.kill(term.pid), false, 'the killed terminal is still there')
  })

  test('cwd, envs and user', async () => {
    const t = terminal()
    const term = await sbx.pty.create({ cols: 100, rows: 30, cwd: '/tmp', envs: { PTY_VAR: 'pty-value' }, user: 'root', onData: t.onData })
    await sbx.pty.sendInput(term.pid, enc.encode('echo "$PTY_VAR:$(pwd):$(id -u)"\n'))
    await t.expect(/pty-value:\/tmp:0\b/)
    await sbx.pty.kill(term.pid)
  })

  test('exit ends the terminal with its status', async () => {
    const t = terminal()
    const term = await sbx.pty.create({ cols: 80, rows: 24, onData: t.onData })
    await sbx.pty.sendInput(term.pid, enc.encode('exit 0\n'))
    const r = await term.wait()
    assert.equal(r.exitCode, 0)
  })

  test('a full-screen program gets the terminal size', async () => {
    const t = terminal()
    const term = await sbx.pty.create({ cols: 90, rows: 20, onData: t.onData })
    // tput asks the terminal driver via the environment and ioctl, as curses programs do.
    await sbx.pty.sendInput(term.pid, enc.encode('echo "size=$(tput cols)x$(tput lines)"\n'))
    await t.expect(/size=90x20/)
    await sbx.pty.kill(term.pid)
  })

  test('tmux runs full-screen inside the terminal', async () => {
    const t = terminal()
    const term = await sbx.pty.create({ cols: 100, rows: 30, onData: t.onData })
    const session = `s${Date.now() % 100000}`
    let mark = t.text.length
    await sbx.pty.sendInput(term.pid, enc.encode(`tmux new -s ${session}\n`))
    // tmux switches to the alternate screen and draws its status line.
    await t.expect(new RegExp(`\\x1b\\[\\?1049h[\\s\\S]*\\[${session}\\]`), mark)
    mark = t.text.length
    await sbx.pty.sendInput(term.pid, enc.encode('echo $((6*7))x; tput lines\n'))
    // Inside tmux the shell sees the window minus the status line.
    await t.expect(/42x[\s\S]*[^0-9]29\r\n/, mark)
    mark = t.text.length
    await sbx.pty.sendInput(term.pid, enc.encode('exit\n'))
    await t.expect(/\[exited\]/, mark)
    await sbx.pty.kill(term.pid)
  })

  test('output is streamed while the command runs', async () => {
    const t = terminal()
    const term = await sbx.pty.create({ cols: 80, rows: 24, onData: t.onData })
    const mark = t.text.length
    await sbx.pty.sendInput(term.pid, enc.encode('for i in a b c; do echo "tick-$i"; sleep 0.4; done\n'))
    const t0 = performance.now()
    await t.expect(/tick-a/, mark)
    const first = performance.now() - t0
    await t.expect(/tick-c/, mark)
    const last = performance.now() - t0
    assert.ok(last - first > 500, `tick-a at ${first.toFixed(0)} ms and tick-c at ${last.toFixed(0)} ms: terminal output was buffered`)
    await sbx.pty.kill(term.pid)
  })
})
