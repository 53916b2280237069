// The team (sandpit's /sandpit/v1/teams): its name, keys and sandboxes;
// an admin key sees every team.
import { empty, h, mount, table } from '../ui.js'

export function team(ctx, root) {
  const { api } = ctx
  let stopped = false
  mount(root, h('div', { class: 'page-head' }, h('h1', { text: 'Team' })), h('p', { class: 'muted', text: 'Loading the team…' }))

  async function load() {
    let list
    try {
      list = await api.get('/sandpit/v1/teams')
    } catch (err) {
      if (!ctx.unauthorized(err)) mount(root, h('p', { class: 'error', text: `Could not read the team: ${err.message}` }))
      return
    }
    if (stopped) return
    const head = h('div', { class: 'page-head' }, h('h1', { text: list.length > 1 ? 'Teams' : 'Team' }))
    if (!list.length) {
      mount(root, head, empty('No team.', 'This key acts for no stored team (the server keeps only SANDPIT_API_KEY).'))
      return
    }
    if (list.length === 1) {
      const t = list[0]
      mount(
        root,
        head,
        h(
          'dl',
          { class: 'facts', id: 'team-facts', 'data-team': t.name },
          h('div', {}, h('dt', { text: 'Name' }), h('dd', { text: t.name })),
          h('div', {}, h('dt', { text: 'Team ID' }), h('dd', { class: 'mono small', text: t.id })),
          h('div', {}, h('dt', { text: 'Active keys' }), h('dd', { id: 'team-keys', text: String(t.keys) })),
          h('div', {}, h('dt', { text: 'Sandboxes' }), h('dd', { id: 'team-sandboxes', text: String(t.sandboxes) })),
          h('div', {}, h('dt', { text: 'Created' }), h('dd', { text: new Date(t.created_at).toLocaleString() })),
        ),
        h('p', { class: 'muted small' }, 'Manage the keys on the ', h('a', { href: '#/keys', text: 'Keys' }), ' page; teams and their limits with ', h('code', { text: 'sandpit teams' }), '.'),
      )
      return
    }
    mount(
      root,
      head,
      h('p', { class: 'muted small', text: 'Your admin key sees every team.' }),
      table(
        ['Team', 'Team ID', 'Active keys', 'Sandboxes', 'Created'],
        list.map((t) =>
          h(
            'tr',
            { 'data-team': t.name },
            h('td', { 'data-label': 'Team', text: t.name }),
            h('td', { class: 'mono small', 'data-label': 'Team ID', text: t.id }),
            h('td', { 'data-label': 'Active keys', text: String(t.keys) }),
            h('td', { 'data-label': 'Sandboxes', text: String(t.sandboxes) }),
            h('td', { 'data-label': 'Created', text: new Date(t.created_at).toLocaleString() }),
          ),
        ),
      ),
    )
  }

  load()
  return () => {
    stopped = true
  }
}
