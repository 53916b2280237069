// A file browser for one sandbox: list a directory, go in and up, upload
// into it, download a file. Used by the sandbox page and the playground.
import { action, bytes, empty, h, mount, saveBlob, toast } from './ui.js'

export function fileBrowser(sb, { start = '/home/user', compact = false } = {}) {
  let cwd = start
  const crumb = h('div', { class: 'crumbs mono' })
  const list = h('ul', { class: 'files', 'aria-label': 'Files' })
  const picker = h('input', { type: 'file', multiple: true, class: 'visually-hidden', 'data-testid': 'upload-input', 'aria-label': 'Upload files' })
  picker.addEventListener('change', async () => {
    const files = [...picker.files]
    picker.value = ''
    for (const f of files) {
      try {
        await sb.upload(join(cwd, f.name), f)
        toast(`Uploaded ${f.name}`)
      } catch (err) {
        toast(`Upload of ${f.name}: ${err.message}`, 'error')
      }
    }
    refresh()
  })
  const upload = h('button', { type: 'button', text: 'Upload' })
  upload.addEventListener('click', () => picker.click())
  const el = h(
    'section',
    { class: `filebox ${compact ? 'compact' : ''}`, 'aria-label': 'Sandbox files' },
    h('div', { class: 'filebox-head' }, crumb, h('span', { class: 'spacer' }), upload, action('Refresh', () => refresh(), { class: 'ghost' }), picker),
    list,
  )

  function go(path) {
    cwd = path
    refresh()
  }

  async function refresh() {
    const parts = crumbs(cwd)
    mount(
      crumb,
      parts.map(([name, path], i) => {
        const last = i === parts.length - 1
        const label = i === 0 ? '/' : name
        const el = last ? h('span', { text: label }) : h('a', { href: '#', 'data-path': path, text: label, onclick: (e) => (e.preventDefault(), go(path)) })
        return i > 0 && !last ? [el, h('span', { class: 'muted', text: '/' })] : el
      }),
    )
    let entries
    try {
      entries = await sb.listDir(cwd)
    } catch (err) {
      mount(list, h('li', { class: 'error', text: `Could not list ${cwd}: ${err.message}` }))
      return
    }
    const items = []
    if (cwd !== '/') items.push(h('li', {}, h('button', { type: 'button', class: 'file dir', onclick: () => go(parent(cwd)), text: '..' })))
    for (const e of entries) {
      const isDir = e.type === 'FILE_TYPE_DIRECTORY'
      const btn = h('button', { type: 'button', class: `file ${isDir ? 'dir' : ''}`, 'data-name': e.name, title: isDir ? `Open ${e.path}` : `Download ${e.path}` }, h('span', { class: 'name', text: e.name + (isDir ? '/' : '') }), !isDir && h('span', { class: 'muted small', text: bytes(e.size ?? 0) }))
      btn.addEventListener('click', async () => {
        if (isDir) return go(e.path)
        try {
          saveBlob(await sb.download(e.path), e.name)
        } catch (err) {
          toast(`Download of ${e.name}: ${err.message}`, 'error')
        }
      })
      items.push(h('li', {}, btn))
    }
    if (!entries.length) items.push(h('li', {}, empty('This directory is empty.', 'Upload a file, or write one from code.')))
    mount(list, items)
  }

  refresh()
  return { el, refresh, get cwd() { return cwd } }
}

function join(dir, name) {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`
}

function parent(p) {
  const i = p.replace(/\/$/, '').lastIndexOf('/')
  return i <= 0 ? '/' : p.slice(0, i)
}

function crumbs(p) {
  const out = [['/', '/']]
  let acc = ''
  for (const part of p.split('/').filter(Boolean)) {
    acc += `/${part}`
    out.push([part, acc])
  }
  return out
}
