// Snapshots: list them, start a sandbox from one, delete one.
import { action, empty, h, mount, table, toast } from '../ui.js'

export function snapshots(ctx, root) {
  const { api } = ctx
  let stopped = false

  async function load() {
    let list
    try {
      list = await api.get('/snapshots?limit=100')
    } catch (err) {
      if (!ctx.unauthorized(err)) mount(root, h('p', { class: 'error', text: `Could not list snapshots: ${err.message}` }))
      return
    }
    if (stopped) return
    mount(
      root,
      h('div', { class: 'page-head' }, h('h1', { text: 'Snapshots' })),
      list.length
        ? table(
            ['Snapshot', 'Names', ''],
            list.map((s) =>
              h(
                'tr',
                { 'data-snapshot': s.snapshotID },
                h('td', { class: 'mono', 'data-label': 'Snapshot', text: s.snapshotID }),
                h('td', { 'data-label': 'Names' }, (s.names ?? []).map((n) => h('span', { class: 'tag', text: n }))),
                h(
                  'td',
                  { class: 'actions' },
                  action('Start sandbox', async () => {
                    const sbx = await api.createSandbox(s.snapshotID, { timeout: 900, metadata: { 'sandpit.console': 'snapshot' } })
                    window.location.hash = `#/sandboxes/${encodeURIComponent(sbx.sandboxID)}`
                  }),
                  action('Delete', async () => {
                    if (!window.confirm(`Delete snapshot ${s.snapshotID}?`)) return
                    await api.request('DELETE', `/templates/${encodeURIComponent(s.snapshotID)}`)
                    toast(`Snapshot ${s.snapshotID} deleted`)
                    load()
                  }, { class: 'danger', 'data-action': 'delete' }),
                ),
              ),
            ),
          )
        : empty('No snapshots yet.', "Take one from a sandbox's page (Snapshot), or with sandbox.createSnapshot() in the SDK."),
    )
  }

  mount(root, h('div', { class: 'page-head' }, h('h1', { text: 'Snapshots' })), h('p', { class: 'muted', text: 'Loading snapshots…' }))
  load()
  return () => {
    stopped = true
  }
}
