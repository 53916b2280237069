// The dashboard: the team's live sandboxes, refreshed every few seconds,
// with their resources and the lifecycle actions.
import { action, bytes, empty, h, mount, since, table, toast, until } from '../ui.js'

const REFRESH_MS = 3000
// Metrics are one request per sandbox: only the newest this many get them
// on each refresh, so a big fleet does not turn the page into a load test.
const METRICS_MAX = 24

export function dashboard(ctx, root) {
  const { api } = ctx
  const status = h('span', { class: 'muted small', 'aria-live': 'polite' })
  const body = h('div', { class: 'stack' }, h('p', { class: 'muted', text: 'Loading sandboxes…' }))
  const templateSelect = h('select', { id: 'new-template', 'aria-label': 'Template for a new sandbox' }, h('option', { value: 'base', text: 'base' }))
  const start = action('Start sandbox', async () => {
    const s = await api.createSandbox(templateSelect.value, { timeout: 900, metadata: { 'sandpit.console': 'dashboard' } })
    window.location.hash = `#/sandboxes/${encodeURIComponent(s.sandboxID)}`
  }, { class: 'primary', id: 'new-sandbox' })
  api
    .get('/templates')
    .then((list) => {
      const names = (list ?? []).filter((t) => t.buildStatus === 'ready').map((t) => t.names?.[0] ?? t.templateID)
      if (names.length) mount(templateSelect, names.map((n) => h('option', { value: n, text: n, selected: n === 'base' })))
    })
    .catch(() => {})
  mount(
    root,
    h('div', { class: 'page-head' }, h('h1', { text: 'Sandboxes' }), status, h('span', { class: 'spacer' }), templateSelect, start),
    body,
  )

  const metrics = new Map()
  let timer = null
  let stopped = false

  async function refresh() {
    try {
      const list = await api.listSandboxes()
      list.sort((a, b) => Date.parse(b.startedAt) - Date.parse(a.startedAt))
      await Promise.all(
        list
          .filter((s) => s.state === 'running')
          .slice(0, METRICS_MAX)
          .map(async (s) => {
            try {
              metrics.set(s.sandboxID, await api.metrics(s.sandboxID))
            } catch {
              metrics.delete(s.sandboxID)
            }
          }),
      )
      if (stopped) return
      draw(list)
      status.textContent = `${list.length} live · updated ${new Date().toLocaleTimeString()}`
    } catch (err) {
      if (ctx.unauthorized(err)) return stop()
      status.textContent = `Could not refresh: ${err.message}`
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS)
  }

  function draw(list) {
    if (!list.length) {
      mount(
        body,
        empty(
          'No sandboxes are running.',
          'Start one from the playground, or with an E2B SDK pointed at this server (E2B_API_URL and E2B_SANDBOX_URL set to this address).',
          h('a', { class: 'button primary', href: '#/playground', text: 'Open the playground' }),
        ),
      )
      return
    }
    const rows = list.map((s) => row(s))
    mount(body, table(['Sandbox', 'Template', 'State', 'Age', 'Time left', 'CPU', 'Memory', 'Metadata', ''], rows, { class: 'sandboxes' }))
  }

  function row(s) {
    const m = metrics.get(s.sandboxID)
    const id = s.sandboxID
    const acts = h('div', { class: 'actions' })
    if (s.state === 'running') {
      acts.append(
        action('Extend', async () => {
          const left = Math.max(0, (Date.parse(s.endAt) - Date.now()) / 1000)
          await api.setTimeout(id, left + 300)
          toast(`${id}: 5 more minutes`)
          kick()
        }, { title: 'Add five minutes to its timeout', 'data-action': 'extend' }),
        action('Pause', async () => {
          await api.pause(id)
          toast(`${id} paused`)
          kick()
        }, { 'data-action': 'pause' }),
      )
    } else {
      acts.append(
        action('Resume', async () => {
          await api.connect(id, 300)
          toast(`${id} resumed`)
          kick()
        }, { 'data-action': 'resume' }),
      )
    }
    acts.append(
      action('Kill', async () => {
        if (!window.confirm(`Kill sandbox ${id}? Its processes and files are gone for good.`)) return
        await api.kill(id)
        toast(`${id} killed`)
        kick()
      }, { class: 'danger', 'data-action': 'kill' }),
    )
    const meta = Object.entries(s.metadata ?? {})
    return h(
      'tr',
      { 'data-sandbox': id },
      h('td', { 'data-label': 'Sandbox' }, h('a', { href: `#/sandboxes/${encodeURIComponent(id)}`, class: 'mono', text: id })),
      h('td', { 'data-label': 'Template', text: s.alias || s.templateID }),
      h('td', { 'data-label': 'State' }, h('span', { class: `badge badge-${s.state}`, text: s.state })),
      h('td', { 'data-label': 'Age', text: since(s.startedAt) }),
      h('td', { 'data-label': 'Time left', text: s.state === 'paused' ? '—' : until(s.endAt) }),
      h('td', { 'data-label': 'CPU', text: m ? `${m.cpuUsedPct.toFixed(1)}% of ${m.cpuCount} vCPU` : `${s.cpuCount} vCPU` }),
      h('td', { 'data-label': 'Memory', text: m ? `${bytes(m.memUsed)} / ${bytes(m.memTotal)}` : `${s.memoryMB} MiB` }),
      h(
        'td',
        { 'data-label': 'Metadata' },
        meta.length ? meta.map(([k, v]) => h('span', { class: 'tag', text: `${k}=${v}` })) : h('span', { class: 'muted', text: '—' }),
      ),
      h('td', { class: 'actions-cell' }, acts),
    )
  }

  function kick() {
    clearTimeout(timer)
    refresh()
  }

  function stop() {
    stopped = true
    clearTimeout(timer)
  }

  refresh()
  return stop
}
