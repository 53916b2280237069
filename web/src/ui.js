// Small DOM helpers: the console builds its pages from plain elements, no
// framework, so the bundle stays small and nothing is evaluated from
// strings (the page's CSP forbids it anyway).

/**
 * Makes an element. attrs: class, text, on<event> handlers, dataset via
 * data-*, anything else as an attribute (false/null skips it).
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === false || v === null || v === undefined) continue
    if (k === 'class') el.className = v
    else if (k === 'text') el.textContent = v
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v)
    else if (k === 'value') el.value = v
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  append(el, children)
  return el
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    if (Array.isArray(c)) append(el, c)
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
}

/** Replaces el's children. */
export function mount(el, ...children) {
  el.replaceChildren()
  append(el, children)
  return el
}

let toastBox
/** Shows a short message in the corner; kind is 'error' or 'ok'. */
export function toast(message, kind = 'ok') {
  if (!toastBox) {
    toastBox = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' })
    document.body.append(toastBox)
  }
  const t = h('div', { class: `toast toast-${kind}`, text: message })
  toastBox.append(t)
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 3500)
}

/** Age of an RFC 3339 time, like "3m 20s". */
export function since(iso) {
  return duration(Date.now() - Date.parse(iso))
}

/** Time until an RFC 3339 time, or "expired". */
export function until(iso) {
  const ms = Date.parse(iso) - Date.now()
  return ms <= 0 ? 'expired' : duration(ms)
}

export function duration(ms) {
  let s = Math.max(0, Math.floor(ms / 1000))
  const d = Math.floor(s / 86400)
  s -= d * 86400
  const hr = Math.floor(s / 3600)
  s -= hr * 3600
  const m = Math.floor(s / 60)
  s -= m * 60
  if (d) return `${d}d ${hr}h`
  if (hr) return `${hr}h ${m}m`
  if (m) return `${m}m ${s}s`
  return `${s}s`
}

export function bytes(n) {
  n = Number(n)
  if (!Number.isFinite(n)) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${units[i]}`
}

/** A button that shows it is busy while fn runs, and toasts fn's error. */
export function action(label, fn, attrs = {}) {
  const b = h('button', { type: 'button', ...attrs, text: label })
  b.addEventListener('click', async (ev) => {
    ev.stopPropagation()
    b.disabled = true
    try {
      await fn(b)
    } catch (err) {
      toast(`${label}: ${err.message}`, 'error')
    } finally {
      b.disabled = false
    }
  })
  return b
}

/** An empty state: what is (not) here and what to do about it. */
export function empty(title, hint, ...extra) {
  return h('div', { class: 'empty' }, h('p', { class: 'empty-title', text: title }), hint && h('p', { text: hint }), ...extra)
}

/** A table from column headers and rows of cells. */
export function table(headers, rows, attrs = {}) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      attrs,
      h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col', text: c })))),
      h('tbody', {}, rows),
    ),
  )
}

/** Saves a Blob as a file the browser downloads. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob)
  const a = h('a', { href: url, download: name })
  document.body.append(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 10_000)
}

/** Strips ANSI colour codes (tracebacks from Jupyter carry them). */
export function stripAnsi(s) {
  // eslint-disable-next-line no-control-regex
  return String(s).replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
}
