// One sandbox: its details and actions, files, processes and a terminal.
import { action, bytes, empty, h, mount, since, table, toast, until } from '../ui.js'
import { fileBrowser } from '../files.js'
import { openTerminal } from '../terminal.js'

export function sandboxPage(ctx, root) {
  const { api } = ctx
  const id = ctx.params[0]
  let stopped = false
  let closeTerm = null
  let timer = null
  mount(root, h('p', { class: 'muted', text: `Loading ${id}…` }))

  const facts = h('dl', { class: 'facts' })
  const tabs = h('div', { class: 'tabs', role: 'tablist' })
  const panel = h('div', { class: 'tab-panel', role: 'tabpanel' })
  let sb = null

  async function load() {
    try {
      sb = await api.sandbox(id)
    } catch (err) {
      if (ctx.unauthorized(err)) return
      mount(
        root,
        empty(err.status === 404 ? `Sandbox ${id} does not exist (any more).` : `Could not load ${id}: ${err.message}`, 'It may have been killed or reached its timeout.', h('a', { class: 'button', href: '#/sandboxes', text: 'Back to sandboxes' })),
      )
      return
    }
    const info = sb.info
    const actions = h(
      'div',
      { class: 'actions' },
      h('a', { class: 'button', href: `#/playground?sandbox=${encodeURIComponent(id)}`, text: 'Open in playground' }),
      info.state === 'running' &&
        action('Extend 5 min', async () => {
          const left = Math.max(0, (Date.parse(sb.info.endAt) - Date.now()) / 1000)
          await api.setTimeout(id, left + 300)
          toast('Five more minutes')
          drawFacts(await api.sandboxInfo(id))
        }),
      info.state === 'running' &&
        action('Snapshot', async () => {
          const s = await api.snapshot(id)
          toast(`Snapshot ${s.snapshotID} taken`)
        }, { 'data-action': 'snapshot' }),
      info.state === 'running'
        ? action('Pause', async () => {
            await api.pause(id)
            toast(`${id} paused`)
            reload()
          })
        : action('Resume', async () => {
            await api.connect(id, 300)
            toast(`${id} resumed`)
            reload()
          }),
      action('Kill', async () => {
        if (!window.confirm(`Kill sandbox ${id}?`)) return
        await api.kill(id)
        toast(`${id} killed`)
        window.location.hash = '#/sandboxes'
      }, { class: 'danger' }),
    )
    mount(
      root,
      h('div', { class: 'page-head' }, h('h1', {}, h('a', { href: '#/sandboxes', class: 'muted', text: 'Sandboxes' }), ' / ', h('span', { class: 'mono', text: id })), h('span', { class: 'spacer' }), actions),
      facts,
      info.state === 'running' ? [tabs, panel] : empty('This sandbox is paused.', 'Resume it to see its files, processes and a terminal.'),
    )
    drawFacts(info)
    if (info.state === 'running') {
      const names = [
        ['files', 'Files', showFiles],
        ['processes', 'Processes', showProcesses],
        ['terminal', 'Terminal', showTerminal],
        ['logs', 'Logs', showLogs],
      ]
      const want = ctx.query.get('tab') ?? 'files'
      mount(
        tabs,
        names.map(([key, label, show]) => {
          const b = h('button', { type: 'button', role: 'tab', 'data-tab': key, 'aria-selected': key === want ? 'true' : 'false', text: label })
          b.addEventListener('click', () => select(key, show))
          return b
        }),
      )
      const first = names.find(([k]) => k === want) ?? names[0]
      select(first[0], first[2])
    }
    pollFacts()
  }

  function select(key, show) {
    for (const b of tabs.querySelectorAll('[role=tab]')) b.setAttribute('aria-selected', b.dataset.tab === key ? 'true' : 'false')
    if (closeTerm) closeTerm()
    closeTerm = null
    clearTimeout(logTimer)
    history.replaceState(null, '', `#/sandboxes/${encodeURIComponent(id)}?tab=${key}`)
    show()
  }

  async function drawFacts(info) {
    let m = null
    if (info.state === 'running') m = await api.metrics(id).catch(() => null)
    if (stopped) return
    const fact = (k, v) => h('div', {}, h('dt', { text: k }), h('dd', {}, v))
    mount(
      facts,
      fact('Template', info.alias || info.templateID),
      fact('State', h('span', { class: `badge badge-${info.state}`, text: info.state })),
      fact('Age', since(info.startedAt)),
      fact('Time left', info.state === 'paused' ? '—' : until(info.endAt)),
      fact('CPU', m ? `${m.cpuUsedPct.toFixed(1)}% of ${m.cpuCount} vCPU` : `${info.cpuCount} vCPU`),
      fact('Memory', m ? `${bytes(m.memUsed)} of ${bytes(m.memTotal)}` : `${info.memoryMB} MiB`),
      fact('Disk', m ? `${bytes(m.diskUsed)} of ${bytes(m.diskTotal)}` : `${info.diskSizeMB} MiB`),
      fact('Metadata', Object.keys(info.metadata ?? {}).length ? Object.entries(info.metadata).map(([k, v]) => h('span', { class: 'tag', text: `${k}=${v}` })) : '—'),
    )
  }

  function pollFacts() {
    timer = setTimeout(async () => {
      if (stopped) return
      try {
        const info = await api.sandboxInfo(id)
        sb.info = info
        await drawFacts(info)
      } catch (err) {
        if (err.status === 404) {
          mount(facts, h('dd', { class: 'error', text: 'This sandbox is gone: it was killed or reached its timeout.' }))
          return
        }
      }
      pollFacts()
    }, 5000)
  }

  function showFiles() {
    mount(panel, fileBrowser(sb).el)
  }

  async function showProcesses() {
    const refresh = async () => {
      let procs
      try {
        procs = await sb.processes()
      } catch (err) {
        mount(panel, h('p', { class: 'error', text: `Could not list processes: ${err.message}` }))
        return
      }
      const head = h('div', { class: 'page-head' }, h('h2', { text: 'Processes started through the API' }), h('span', { class: 'spacer' }), action('Refresh', refresh, { class: 'ghost' }))
      if (!procs.length) {
        mount(panel, head, empty('No processes are running.', 'Commands the SDK starts and terminals show up here.'))
        return
      }
      mount(
        panel,
        head,
        table(
          ['PID', 'Command', 'Tag', 'Directory', ''],
          procs.map((p) =>
            h(
              'tr',
              { 'data-pid': p.pid },
              h('td', { class: 'mono', 'data-label': 'PID', text: p.pid }),
              h('td', { class: 'mono', 'data-label': 'Command', text: [p.config?.cmd, ...(p.config?.args ?? [])].join(' ') }),
              h('td', { 'data-label': 'Tag', text: p.tag ?? '—' }),
              h('td', { class: 'mono', 'data-label': 'Directory', text: p.config?.cwd ?? '—' }),
              h(
                'td',
                {},
                action('Kill', async () => {
                  await sb.killProcess(p.pid)
                  toast(`Process ${p.pid} killed`)
                  refresh()
                }, { class: 'danger' }),
              ),
            ),
          ),
        ),
      )
    }
    mount(panel, h('p', { class: 'muted', text: 'Loading processes…' }))
    refresh()
  }

  function showTerminal() {
    const box = h('div', { class: 'term-box', 'data-testid': 'terminal' })
    mount(panel, box)
    closeTerm = openTerminal(sb, box, {
      onExit: () => toast('The shell ended; open the tab again for a new one.'),
      onError: (err) => toast(`Terminal: ${err.message}`, 'error'),
    })
  }

  let logTimer = null
  function showLogs() {
    const pre = h('pre', { class: 'build-log', 'aria-live': 'polite', 'aria-label': 'Sandbox log' })
    mount(panel, h('p', { class: 'muted small', text: "The sandbox's lifecycle and agent log, newest last; follows while open." }), pre)
    let cursor = 0
    const poll = async () => {
      try {
        const q = new URLSearchParams({ direction: 'forward', limit: '500' })
        if (cursor) q.set('cursor', String(cursor + 1))
        const r = await api.get(`/v2/sandboxes/${encodeURIComponent(id)}/logs?${q}`)
        if (stopped) return
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4
        for (const e of r.logs ?? []) {
          const fields = Object.entries(e.fields ?? {}).map(([k, v]) => `${k}=${v}`).join(' ')
          pre.append(h('span', { class: `log-${e.level}` }, `${new Date(e.timestamp).toLocaleTimeString()} ${e.level.padEnd(5)} ${e.message}${fields ? `  ${fields}` : ''}\n`))
          cursor = Math.max(cursor, Date.parse(e.timestamp))
        }
        if (!pre.childNodes.length) pre.textContent = ''
        if (atBottom) pre.scrollTop = pre.scrollHeight
      } catch (err) {
        if (ctx.unauthorized(err)) return
        mount(panel, h('p', { class: 'error', text: `Could not read the log: ${err.message}` }))
        return
      }
      logTimer = setTimeout(poll, 2000)
    }
    poll()
  }

  function reload() {
    clearTimeout(timer)
    if (closeTerm) closeTerm()
    closeTerm = null
    load()
  }

  load()
  return () => {
    stopped = true
    clearTimeout(timer)
    clearTimeout(logTimer)
    if (closeTerm) closeTerm()
  }
}
