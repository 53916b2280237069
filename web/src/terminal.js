// A terminal in the page: xterm.js over envd's PTY API (process.Start with
// a pty, SendInput for keystrokes, Update for resizes), as the SDK's
// sandbox.pty does.
import { Terminal } from '@xterm/xterm'
import { FitAddon } from '@xterm/addon-fit'
import '@xterm/xterm/css/xterm.css'
import { b64decode, b64encode } from './api.js'

function theme() {
  const dark = window.matchMedia('(prefers-color-scheme: dark)').matches
  return dark
    ? { background: '#0f1115', foreground: '#e6e6e6', cursor: '#f59e0b', selectionBackground: '#3b4252' }
    : { background: '#ffffff', foreground: '#1f2328', cursor: '#b45309', selectionBackground: '#d0d7de' }
}

/**
 * Opens a shell in sandbox sb inside el. Returns a function that ends it.
 * onExit is called when the shell ends on its own.
 */
export function openTerminal(sb, el, { onExit, onError } = {}) {
  const term = new Terminal({
    cursorBlink: true,
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace',
    fontSize: 13,
    theme: theme(),
    scrollback: 5000,
  })
  const fit = new FitAddon()
  term.loadAddon(fit)
  term.open(el)
  fit.fit()

  const ac = new AbortController()
  let pid = 0
  let closed = false
  // Keystrokes go out one SendInput at a time, in order: concurrent
  // requests may arrive out of order. What is typed meanwhile is batched.
  let queued = ''
  let flushing = false

  const flush = async () => {
    if (flushing || !pid) return
    flushing = true
    while (queued && !closed) {
      const data = queued
      queued = ''
      try {
        await sb.rpc('process.Process', 'SendInput', { process: { pid }, input: { pty: b64encode(data) } })
      } catch (err) {
        if (!closed) onError?.(err)
      }
    }
    flushing = false
  }
  const send = (data) => {
    queued += data
    flush()
  }
  term.onData(send)

  const resize = () => {
    try {
      fit.fit()
    } catch {
      return
    }
    if (pid) {
      sb.rpc('process.Process', 'Update', { process: { pid }, pty: { size: { cols: term.cols, rows: term.rows } } }).catch(() => {})
    }
  }
  const ro = new ResizeObserver(resize)
  ro.observe(el)

  sb.stream(
    'process.Process',
    'Start',
    {
      process: {
        cmd: '/bin/bash',
        args: ['-i', '-l'],
        envs: { TERM: 'xterm-256color', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' },
      },
      pty: { size: { cols: term.cols, rows: term.rows } },
    },
    (msg) => {
      const ev = msg.event ?? {}
      if (ev.start) {
        pid = ev.start.pid
        el.dataset.pid = String(pid)
        flush()
      } else if (ev.data?.pty) {
        term.write(b64decode(ev.data.pty))
      } else if (ev.end) {
        term.write(`\r\n\x1b[2m[shell exited${ev.end.exitCode ? ` with ${ev.end.exitCode}` : ''}]\x1b[0m\r\n`)
      }
    },
    { signal: ac.signal },
  )
    .then(() => {
      if (!closed) onExit?.()
    })
    .catch((err) => {
      if (!closed) onError?.(err)
    })
  term.focus()

  return () => {
    closed = true
    ro.disconnect()
    if (pid) sb.killProcess(pid).catch(() => {})
    ac.abort()
    term.dispose()
  }
}
