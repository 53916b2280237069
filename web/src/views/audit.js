// The audit log (sandpit's /sandpit/v1/audit), for admin keys.
import { empty, h, mount, table } from '../ui.js'

export function audit(ctx, root) {
  const { api } = ctx
  let stopped = false
  const filter = h('input', { type: 'search', placeholder: 'Filter by action, e.g. sandbox.create', 'aria-label': 'Filter by action' })
  const body = h('div', {}, h('p', { class: 'muted', text: 'Loading the audit log…' }))
  mount(root, h('div', { class: 'page-head' }, h('h1', { text: 'Audit log' }), h('span', { class: 'spacer' }), filter), body)

  async function load() {
    const q = new URLSearchParams({ since: '24h', limit: '500' })
    if (filter.value.trim()) q.set('action', filter.value.trim())
    let entries
    try {
      entries = await api.get(`/sandpit/v1/audit?${q}`)
    } catch (err) {
      if (ctx.unauthorized(err)) return
      mount(body, err.status === 403 ? empty('The audit log needs an admin key.', 'Sign in with a key made by `sandpit keys create --admin`.') : h('p', { class: 'error', text: `Could not read the audit log: ${err.message}` }))
      return
    }
    if (stopped) return
    entries.reverse()
    mount(
      body,
      entries.length
        ? table(
            ['Time', 'Team', 'Key', 'Action', 'Target', 'Result', 'Detail'],
            entries.map((e) =>
              h(
                'tr',
                {},
                h('td', { 'data-label': 'Time', text: new Date(e.time).toLocaleString() }),
                h('td', { 'data-label': 'Team', text: e.team || e.team_id }),
                h('td', { 'data-label': 'Key', text: e.key_name || '—' }),
                h('td', { class: 'mono', 'data-label': 'Action', text: e.action }),
                h('td', { class: 'mono', 'data-label': 'Target', text: e.target }),
                h('td', { 'data-label': 'Result', text: e.result }),
                h('td', { class: 'mono small', 'data-label': 'Detail', text: e.detail }),
              ),
            ),
          )
        : empty('Nothing in the last 24 hours.', 'Actions on sandboxes, templates and keys are recorded here.'),
    )
  }
  let t
  filter.addEventListener('input', () => {
    clearTimeout(t)
    t = setTimeout(load, 300)
  })
  load()
  return () => {
    stopped = true
    clearTimeout(t)
  }
}
