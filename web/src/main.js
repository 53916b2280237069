// The console's entry point: sign-in, the layout, and a hash router (the
// daemon serves the page only at /, so every view lives in the fragment).
import './style.css'
import { Api, ApiError, storedKey, storeKey } from './api.js'
import { h, mount } from './ui.js'
import { dashboard } from './views/dashboard.js'
import { sandboxPage } from './views/sandbox.js'
import { playground } from './views/playground.js'
import { templates } from './views/templates.js'
import { snapshots } from './views/snapshots.js'
import { audit } from './views/audit.js'
import { keys } from './views/keys.js'
import { team } from './views/team.js'

const app = document.getElementById('app')

const routes = [
  { path: /^\/?$/, view: dashboard, nav: 'sandboxes' },
  { path: /^\/sandboxes$/, view: dashboard, nav: 'sandboxes' },
  { path: /^\/sandboxes\/([^/]+)$/, view: sandboxPage, nav: 'sandboxes' },
  { path: /^\/playground$/, view: playground, nav: 'playground' },
  { path: /^\/templates$/, view: templates, nav: 'templates' },
  { path: /^\/templates\/([^/]+)\/builds\/([^/]+)$/, view: templates, nav: 'templates' },
  { path: /^\/snapshots$/, view: snapshots, nav: 'snapshots' },
  { path: /^\/audit$/, view: audit, nav: 'audit' },
  { path: /^\/keys$/, view: keys, nav: 'keys' },
  { path: /^\/team$/, view: team, nav: 'team' },
]

const navItems = [
  ['sandboxes', 'Sandboxes', '#/sandboxes'],
  ['playground', 'Playground', '#/playground'],
  ['templates', 'Templates', '#/templates'],
  ['snapshots', 'Snapshots', '#/snapshots'],
  ['keys', 'Keys', '#/keys'],
  ['team', 'Team', '#/team'],
  ['audit', 'Audit log', '#/audit'],
]

let cleanup = null

/** The fragment as a path and its query. */
function currentRoute() {
  const frag = window.location.hash.replace(/^#/, '')
  const [path, query = ''] = frag.split('?')
  return { path: path || '/', query: new URLSearchParams(query) }
}

function signIn(reason) {
  if (cleanup) cleanup()
  cleanup = null
  const input = h('input', {
    type: 'password',
    id: 'api-key',
    name: 'api-key',
    autocomplete: 'current-password',
    placeholder: 'e2b_…',
    required: true,
    'aria-describedby': 'signin-error',
  })
  const error = h('p', { class: 'error', id: 'signin-error', role: 'alert', text: reason ?? '' })
  const button = h('button', { type: 'submit', class: 'primary', text: 'Sign in' })
  const form = h(
    'form',
    { class: 'signin card', novalidate: true },
    h('div', { class: 'brand big' }, h('span', { class: 'logo', 'aria-hidden': 'true' }), 'sandpit'),
    h('h1', { text: 'Sign in to the console' }),
    h('label', { for: 'api-key', text: 'API key' }),
    input,
    h(
      'p',
      { class: 'muted small' },
      'The key stays in this tab only. The daemon keeps its first key in ',
      h('code', { text: '/var/lib/sandpit/api-key' }),
      '; make more with ',
      h('code', { text: 'sandpit keys create' }),
      '.',
    ),
    error,
    button,
  )
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const key = input.value.trim()
    if (!key) {
      error.textContent = 'Enter an API key.'
      return
    }
    button.disabled = true
    error.textContent = ''
    try {
      await new Api(key).get('/v2/sandboxes?limit=1')
      storeKey(key)
      render()
    } catch (err) {
      error.textContent =
        err instanceof ApiError && err.status === 401
          ? 'That API key is not valid for this server.'
          : `Could not sign in: ${err.message}`
      input.select()
    } finally {
      button.disabled = false
    }
  })
  mount(app, h('main', { class: 'signin-page' }, form))
  input.focus()
}

function render() {
  const key = storedKey()
  if (!key) return signIn()
  if (cleanup) cleanup()
  cleanup = null
  const api = new Api(key)
  const loc = currentRoute()
  const route = routes.find((r) => r.path.test(loc.path)) ?? routes[0]
  const params = loc.path.match(route.path)?.slice(1).map(decodeURIComponent) ?? []

  const content = h('main', { id: 'content', class: 'content', tabindex: '-1' })
  const nav = h(
    'nav',
    { class: 'nav', 'aria-label': 'Main' },
    navItems.map(([id, label, href]) =>
      h('a', { href, class: id === route.nav ? 'active' : '', 'aria-current': id === route.nav ? 'page' : false, text: label }),
    ),
  )
  const signOut = h('button', { type: 'button', class: 'ghost', text: 'Sign out' })
  signOut.addEventListener('click', () => {
    storeKey('')
    window.location.hash = '#/'
    signIn()
  })
  mount(
    app,
    h('header', { class: 'topbar' }, h('a', { class: 'brand', href: '#/' }, h('span', { class: 'logo', 'aria-hidden': 'true' }), 'sandpit'), nav, signOut),
    content,
  )
  const ctx = {
    api,
    params,
    query: loc.query,
    /** Signs out when the key stopped working (revoked while signed in). */
    unauthorized(err) {
      if (err instanceof ApiError && err.status === 401) {
        storeKey('')
        signIn('The API key stopped working. Sign in again.')
        return true
      }
      return false
    },
  }
  cleanup = route.view(ctx, content) ?? null
  // Keyboard and screen-reader users land on the new page, not on the
  // link they followed; views that focus something of their own win.
  if (!content.contains(document.activeElement)) content.focus({ preventScroll: true })
}

window.addEventListener('hashchange', render)
render()
