// Templates and their builds, with a build's log followed live while it
// runs.
import { action, empty, h, mount, since, table, toast } from '../ui.js'

const POLL_MS = 1500

export function templates(ctx, root) {
  const { api } = ctx
  let stopped = false
  let timer = null

  if (ctx.params.length === 2) {
    buildPage(ctx.params[0], ctx.params[1])
  } else {
    listPage()
  }

  async function listPage(again = false) {
    if (!again) mount(root, h('div', { class: 'page-head' }, h('h1', { text: 'Templates' })), h('p', { class: 'muted', text: 'Loading templates…' }))
    let list
    try {
      list = await api.get('/templates')
    } catch (err) {
      if (!ctx.unauthorized(err)) mount(root, h('p', { class: 'error', text: `Could not list templates: ${err.message}` }))
      return
    }
    if (stopped) return
    const body = list.length
      ? table(
          ['Template', 'Names', 'Build', 'Status', 'CPU / memory', 'Sandboxes started', 'Updated', ''],
          list.map((t) =>
            h(
              'tr',
              { 'data-template': t.templateID },
              h('td', { class: 'mono', 'data-label': 'Template', text: t.templateID }),
              h('td', { 'data-label': 'Names' }, (t.names ?? []).map((n) => h('span', { class: 'tag', text: n })), t.builtin && h('span', { class: 'badge', text: 'built in' })),
              h('td', { 'data-label': 'Build' }, t.buildID && !t.builtin ? h('a', { class: 'mono', href: `#/templates/${encodeURIComponent(t.templateID)}/builds/${encodeURIComponent(t.buildID)}`, text: t.buildID.slice(0, 12) }) : '—'),
              h('td', { 'data-label': 'Status' }, h('span', { class: `badge badge-${t.buildStatus}`, text: t.buildStatus })),
              h('td', { 'data-label': 'CPU / memory', text: `${t.cpuCount} vCPU / ${t.memoryMB} MiB` }),
              h('td', { 'data-label': 'Sandboxes started', text: String(t.spawnCount ?? 0) }),
              h('td', { 'data-label': 'Updated', text: `${since(t.updatedAt)} ago` }),
              h('td', {}, h('a', { class: 'button', href: `#/playground?template=${encodeURIComponent(t.names?.[0] ?? t.templateID)}`, text: 'Try it' })),
            ),
          ),
        )
      : empty('No templates yet.', 'Build one with an E2B SDK (Template.build) or `sandpit template build`.')
    mount(
      root,
      h('div', { class: 'page-head' }, h('h1', { text: 'Templates' })),
      h('p', { class: 'muted', text: 'Build templates with the E2B SDK (Template.build) or the sandpit CLI; their builds and logs show here.' }),
      body,
    )
    // While a build runs, follow it to its end.
    if (list.some((t) => t.buildStatus === 'building' || t.buildStatus === 'waiting')) timer = setTimeout(() => listPage(true), 3000)
  }

  function buildPage(templateID, buildID) {
    const statusEl = h('span', { class: 'badge', text: '…' })
    const log = h('pre', { class: 'build-log', 'aria-live': 'polite', 'aria-label': 'Build log' })
    const reason = h('div')
    mount(
      root,
      h('div', { class: 'page-head' }, h('h1', {}, h('a', { href: '#/templates', class: 'muted', text: 'Templates' }), ' / ', h('span', { class: 'mono', text: templateID }), ' / build ', h('span', { class: 'mono', text: buildID.slice(0, 12) })), statusEl),
      reason,
      log,
    )
    let offset = 0
    const poll = async () => {
      let info
      try {
        info = await api.get(`/templates/${encodeURIComponent(templateID)}/builds/${encodeURIComponent(buildID)}/status?logsOffset=${offset}`)
      } catch (err) {
        if (!ctx.unauthorized(err)) mount(reason, h('p', { class: 'error', text: `Could not read the build: ${err.message}` }))
        return
      }
      if (stopped) return
      statusEl.textContent = info.status
      statusEl.className = `badge badge-${info.status}`
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4
      for (const e of info.logEntries ?? []) {
        const line = h('span', { class: `log-${e.level}` }, `${new Date(e.timestamp).toLocaleTimeString()} ${e.step ? `[${e.step}] ` : ''}${e.message}\n`)
        log.append(line)
      }
      offset += (info.logEntries ?? []).length
      if (atBottom) log.scrollTop = log.scrollHeight
      if (!offset && (info.status === 'ready' || info.status === 'error')) log.textContent = '(this build logged nothing)'
      if (info.reason?.message) mount(reason, h('p', { class: info.status === 'error' ? 'error' : 'muted', text: info.reason.message }))
      if (info.status === 'building' || info.status === 'waiting') timer = setTimeout(poll, POLL_MS)
      else if (info.status === 'ready') toast('Build ready')
    }
    poll()
  }

  return () => {
    stopped = true
    clearTimeout(timer)
  }
}
