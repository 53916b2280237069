// API keys (sandpit's /sandpit/v1/keys): the team's keys, making one (its
// secret shown once, here and nowhere else) and revoking one.
import { action, empty, h, mount, table, toast } from '../ui.js'

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '—'
}

export function keys(ctx, root) {
  const { api } = ctx
  let stopped = false
  const name = h('input', {
    type: 'text',
    id: 'new-key-name',
    name: 'key-name',
    placeholder: 'Name, e.g. ci',
    'aria-label': 'Name of the new key',
    maxlength: '200',
    autocomplete: 'off',
  })
  const create = h('button', { type: 'submit', class: 'primary', id: 'new-key', text: 'Create key' })
  const form = h('form', { class: 'key-form' }, name, create)
  // The new secret lives only in this element until the page changes.
  const secretBox = h('div', { id: 'new-key-secret' })
  const body = h('div', {}, h('p', { class: 'muted', text: 'Loading keys…' }))
  mount(root, h('div', { class: 'page-head' }, h('h1', { text: 'API keys' }), h('span', { class: 'spacer' }), form), secretBox, body)

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const n = name.value.trim()
    if (!n) {
      toast('Name the key: what is it for?', 'error')
      name.focus()
      return
    }
    create.disabled = true
    try {
      const k = await api.request('POST', '/sandpit/v1/keys', { name: n })
      name.value = ''
      showSecret(k)
      load()
    } catch (err) {
      if (!ctx.unauthorized(err)) toast(`Create key: ${err.message}`, 'error')
    } finally {
      create.disabled = false
    }
  })

  function showSecret(k) {
    const value = h('code', { class: 'secret-value', id: 'new-key-value', text: k.key })
    const copy = h('button', { type: 'button', id: 'copy-key', text: 'Copy' })
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(k.key)
        toast('Key copied')
      } catch {
        // No clipboard (plain http, or denied): select it for Ctrl+C.
        const range = document.createRange()
        range.selectNodeContents(value)
        window.getSelection().removeAllRanges()
        window.getSelection().addRange(range)
        toast('Press Ctrl+C to copy the selected key')
      }
    })
    const done = h('button', { type: 'button', class: 'ghost', text: 'Done' })
    done.addEventListener('click', () => {
      mount(secretBox)
      load()
    })
    mount(
      secretBox,
      h(
        'div',
        { class: 'card secret', role: 'alert' },
        h('p', {}, h('strong', { text: `Key “${k.name}” created. ` }), 'Copy it now: it is shown only this once and cannot be recovered.'),
        h('div', { class: 'secret-row' }, value, copy, done),
      ),
    )
    copy.focus()
  }

  async function load() {
    let list
    try {
      list = await api.get('/sandpit/v1/keys')
    } catch (err) {
      if (!ctx.unauthorized(err)) mount(body, h('p', { class: 'error', text: `Could not list keys: ${err.message}` }))
      return
    }
    if (stopped) return
    list.reverse()
    const teams = new Set(list.map((k) => k.team))
    // SANDPIT_API_KEY is not stored, so it has no row of its own.
    const note = list.length && !list.some((k) => k.current) && h('p', { class: 'muted small', text: 'Signed in with a key that is not stored here (the server’s SANDPIT_API_KEY): it is not listed.' })
    mount(
      body,
      note,
      list.length
        ? table(
            ['Name', 'Key', ...(teams.size > 1 ? ['Team'] : []), 'Created', 'Last used', 'State', ''],
            list.map((k) =>
              h(
                'tr',
                { 'data-key': k.id, class: k.revoked_at ? 'revoked' : '' },
                h(
                  'td',
                  { 'data-label': 'Name' },
                  k.name,
                  k.current && h('span', { class: 'badge badge-running', title: 'The key this console is signed in with', text: 'this key' }),
                  k.admin && h('span', { class: 'badge', text: 'admin' }),
                ),
                h('td', { class: 'mono', 'data-label': 'Key', text: `${k.prefix}…` }),
                teams.size > 1 && h('td', { 'data-label': 'Team', text: k.team }),
                h('td', { 'data-label': 'Created', text: when(k.created_at) }),
                h('td', { 'data-label': 'Last used', text: when(k.last_used_at) }),
                h('td', { 'data-label': 'State' }, k.revoked_at ? h('span', { class: 'badge badge-error', title: when(k.revoked_at), text: 'revoked' }) : h('span', { class: 'badge badge-ready', text: 'active' })),
                h(
                  'td',
                  { class: 'actions' },
                  !k.revoked_at &&
                    action('Revoke', async () => {
                      const warn = k.current ? ' This is the key you are signed in with: the console will sign you out.' : ''
                      if (!window.confirm(`Revoke key “${k.name}” (${k.prefix}…)? Anything using it stops working at once.${warn}`)) return
                      await api.request('DELETE', `/sandpit/v1/keys/${encodeURIComponent(k.id)}`)
                      toast(`Key ${k.name} revoked`)
                      load()
                    }, { class: 'danger', 'data-action': 'revoke' }),
                ),
              ),
            ),
          )
        : empty('No API keys.', 'Create one above, or with `sandpit keys create`.'),
    )
  }

  load()
  name.focus()
  return () => {
    stopped = true
  }
}
