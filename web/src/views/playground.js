// The playground: code in an editor, run in a sandbox's code interpreter,
// output streamed as it comes, rich results inline. The sandbox's ID goes
// in the URL, so the link reopens the same sandbox and its state.
import { ApiError } from '../api.js'
import { createEditor } from '../editor.js'
import { fileBrowser } from '../files.js'
import { action, empty, h, mount, stripAnsi, toast } from '../ui.js'

const LANGS = [
  ['python', 'Python'],
  ['javascript', 'JavaScript'],
  ['typescript', 'TypeScript'],
  ['bash', 'Bash'],
  ['r', 'R'],
]

const SAMPLES = {
  python: 'import sys\nprint("Hello from", sys.version.split()[0])\n6 * 7\n',
  javascript: 'const xs = [1, 2, 3]\nconsole.log(xs.map((x) => x * 2))\nxs.length\n',
  typescript: 'const greet = (name: string): string => `Hello, ${name}`\nconsole.log(greet("sandpit"))\n',
  bash: 'uname -a\nls -la ~\n',
  r: 'x <- c(1, 2, 3)\nprint(mean(x))\n',
}

const DEFAULT_TEMPLATE = 'code-interpreter-v1'
// How much of one run's stdout and stderr the page keeps.
const MAX_PRINTED = 2e6
// The playground's sandboxes live this long without a run; every run
// extends them again.
const SANDBOX_TIMEOUT_S = 900

export function playground(ctx, root) {
  const { api } = ctx
  let language = LANGS.some(([k]) => k === ctx.query.get('lang')) ? ctx.query.get('lang') : 'python'
  let template = ctx.query.get('template') || DEFAULT_TEMPLATE
  let sb = null
  let starting = null
  let running = null
  const contexts = new Map() // language -> context id made by "New context"
  let files = null
  let stopped = false

  const drafts = (lang) => sessionStorage.getItem(`sandpit.draft.${lang}`) ?? SAMPLES[lang]

  const templateSelect = h('select', { id: 'pg-template', 'aria-label': 'Template' }, h('option', { value: template, text: template }))
  const langSelect = h('select', { id: 'pg-language', 'aria-label': 'Language' }, LANGS.map(([k, label]) => h('option', { value: k, text: label, selected: k === language })))
  const runBtn = h('button', { type: 'button', class: 'primary', id: 'pg-run', title: 'Run (Ctrl/Cmd+Enter)' }, 'Run ', h('kbd', { text: navigator.platform.startsWith('Mac') ? '⌘↵' : 'Ctrl↵' }))
  const stopBtn = h('button', { type: 'button', id: 'pg-stop', disabled: true, text: 'Stop' })
  const newCtxBtn = h('button', { type: 'button', id: 'pg-new-context', title: 'Start over with a fresh interpreter state', text: 'New context' })
  const clearBtn = h('button', { type: 'button', class: 'ghost', text: 'Clear output' })
  const sandboxInfo = h('span', { class: 'muted small', id: 'pg-sandbox', 'aria-live': 'polite', text: 'No sandbox yet: Run starts one.' })
  const output = h('div', { class: 'output', id: 'pg-output', 'aria-live': 'polite', 'aria-label': 'Output' }, emptyOutput())
  const editorBox = h('div', { class: 'editor', id: 'pg-editor' })
  const side = h('aside', { class: 'pg-side', 'aria-label': 'Sandbox files' }, empty('No sandbox yet.', 'Its files show here once code runs.'))

  mount(
    root,
    h(
      'div',
      { class: 'page-head wrap' },
      h('h1', { text: 'Playground' }),
      h('label', { class: 'field' }, h('span', { text: 'Template' }), templateSelect),
      h('label', { class: 'field' }, h('span', { text: 'Language' }), langSelect),
      runBtn,
      stopBtn,
      newCtxBtn,
      clearBtn,
    ),
    h('div', { class: 'pg-status' }, sandboxInfo),
    h('div', { class: 'playground' }, h('div', { class: 'pg-main' }, editorBox, output), side),
  )

  const editor = createEditor(editorBox, {
    doc: drafts(language),
    language,
    onRun: () => run(),
    onChange: (code) => sessionStorage.setItem(`sandpit.draft.${language}`, code),
  })

  api
    .get('/templates')
    .then((list) => {
      const names = new Set([DEFAULT_TEMPLATE, template])
      for (const t of list ?? []) names.add(t.names?.[0] ?? t.aliases?.[0] ?? t.templateID)
      mount(templateSelect, [...names].map((n) => h('option', { value: n, text: n, selected: n === template })))
    })
    .catch((err) => ctx.unauthorized(err))

  templateSelect.addEventListener('change', () => {
    template = templateSelect.value
    sb = null
    contexts.clear()
    setSandboxInfo()
    updateLink()
    mount(side, empty('No sandbox yet.', `Run starts one from ${template}.`))
  })
  langSelect.addEventListener('change', () => {
    language = langSelect.value
    editor.setLanguage(language)
    editor.code = drafts(language)
    updateLink()
    editor.focus()
  })
  runBtn.addEventListener('click', () => run())
  stopBtn.addEventListener('click', () => running?.abort())
  clearBtn.addEventListener('click', () => mount(output, emptyOutput()))
  newCtxBtn.addEventListener('click', async () => {
    newCtxBtn.disabled = true
    try {
      const s = await ensureSandbox()
      const c = await s.newContext(language)
      contexts.set(language, c.id)
      note(`New ${language} context ${c.id}: earlier variables are gone.`)
    } catch (err) {
      showError('Could not make a new context', err)
    } finally {
      newCtxBtn.disabled = false
    }
  })

  function emptyOutput() {
    return h('p', { class: 'muted placeholder', text: 'Output shows here. Write code and press Run or Ctrl/Cmd+Enter.' })
  }

  function updateLink() {
    const q = new URLSearchParams()
    if (sb) q.set('sandbox', sb.id)
    if (template !== DEFAULT_TEMPLATE) q.set('template', template)
    if (language !== 'python') q.set('lang', language)
    const s = q.toString()
    history.replaceState(null, '', `#/playground${s ? `?${s}` : ''}`)
  }

  function setSandboxInfo() {
    if (!sb) {
      mount(sandboxInfo, 'No sandbox yet: Run starts one.')
      return
    }
    const link = h('a', { href: window.location.href, id: 'pg-link', text: 'link to reopen it' })
    link.addEventListener('click', (e) => {
      e.preventDefault()
      navigator.clipboard?.writeText(window.location.href).then(
        () => toast('Link copied'),
        () => toast('Copy the address bar to share this sandbox'),
      )
    })
    mount(sandboxInfo, 'Sandbox ', h('a', { href: `#/sandboxes/${encodeURIComponent(sb.id)}`, class: 'mono', text: sb.id }), ` (${sb.info.alias || sb.info.templateID}) · `, link)
  }

  async function attach(id) {
    mount(sandboxInfo, `Reconnecting to ${id}…`)
    try {
      await api.connect(id, SANDBOX_TIMEOUT_S)
      sb = await api.sandbox(id)
    } catch (err) {
      if (ctx.unauthorized(err)) return
      sb = null
      updateLink()
      mount(sandboxInfo, h('span', { class: 'error', text: `Sandbox ${id} cannot be reopened (${err.message}); Run starts a new one.` }))
      return
    }
    afterAttach()
  }

  function afterAttach() {
    if (stopped) return
    template = sb.info.alias || template
    updateLink()
    setSandboxInfo()
    files = fileBrowser(sb, { compact: true })
    mount(side, files.el)
  }

  async function ensureSandbox() {
    if (sb) return sb
    if (!starting) {
      starting = (async () => {
        mount(sandboxInfo, `Starting a sandbox from ${template}…`)
        const created = await api.createSandbox(template, { timeout: SANDBOX_TIMEOUT_S, metadata: { 'sandpit.console': 'playground' } })
        sb = await api.sandbox(created.sandboxID)
        afterAttach()
        return sb
      })()
        .catch((err) => {
          setSandboxInfo()
          throw new Error(`starting a sandbox from ${template}: ${err.message}`, { cause: err })
        })
        .finally(() => {
          starting = null
        })
    }
    return starting
  }

  function note(text) {
    clearPlaceholder()
    output.append(h('div', { class: 'note', text }))
  }

  function clearPlaceholder() {
    output.querySelector('.placeholder')?.remove()
  }

  /** Says what went wrong, in the run's cell when there is one. */
  function showError(title, err, where = output) {
    clearPlaceholder()
    where.append(h('div', { class: 'run-error', role: 'alert' }, h('strong', { text: title }), h('pre', { text: err.message })))
    if (err instanceof ApiError && err.status === 404 && sb) {
      output.append(h('p', { class: 'muted', text: 'The sandbox may be gone: the next Run starts a new one.' }))
      sb = null
      contexts.clear()
      updateLink()
      setSandboxInfo()
    }
  }

  async function run() {
    if (running) return
    const code = editor.code
    const lang = language
    clearPlaceholder()
    const cell = h('section', { class: 'cell', 'aria-label': 'Run' })
    const head = h('div', { class: 'cell-head' }, h('span', { class: 'badge', text: lang }), h('span', { class: 'muted small exec-count', text: 'running…' }))
    const body = h('div', { class: 'cell-body' })
    cell.append(head, body)
    output.append(cell)
    output.scrollTop = output.scrollHeight
    running = new AbortController()
    runBtn.disabled = true
    stopBtn.disabled = false
    const started = performance.now()
    let last = null // the <pre> the last stream chunk went to, and its kind
    let sawError = false
    // A run that prints without end must not take the page down with it.
    let printed = 0
    let cut = false
    // Keeps the newest output in view unless the user scrolled up to read.
    const follow = () => {
      if (output.scrollHeight - output.scrollTop - output.clientHeight < 80) output.scrollTop = output.scrollHeight
    }
    try {
      const s = await ensureSandbox()
      api.setTimeout(s.id, SANDBOX_TIMEOUT_S).catch(() => {})
      await s.execute({ code, language: lang, contextId: contexts.get(lang) }, (line) => {
        switch (line.type) {
          case 'stdout':
          case 'stderr':
            if (cut) break
            printed += line.text.length
            if (printed > MAX_PRINTED) {
              cut = true
              body.append(h('p', { class: 'note', text: `Output past ${MAX_PRINTED / 1e6} MB is not shown here.` }))
              break
            }
            if (!last || last.kind !== line.type) {
              last = { kind: line.type, el: h('pre', { class: `stream ${line.type}` }) }
              body.append(last.el)
            }
            last.el.append(line.text)
            follow()
            break
          case 'result':
            last = null
            {
              const atEnd = output.scrollHeight - output.scrollTop - output.clientHeight < 80
              const res = renderResult(line)
              body.append(res)
              // An image gets its height once decoded: keep following then.
              res.querySelector('img')?.addEventListener('load', () => {
                if (atEnd) output.scrollTop = output.scrollHeight
              })
              follow()
            }
            break
          case 'error':
            last = null
            sawError = true
            body.append(
              h(
                'div',
                { class: 'run-error', role: 'alert' },
                h('strong', { text: `${line.name}: ${line.value}` }),
                line.traceback && h('pre', { text: stripAnsi(line.traceback) }),
              ),
            )
            break
          case 'number_of_executions':
            head.querySelector('.exec-count').textContent = `[${line.execution_count}]`
            break
        }
      }, { signal: running.signal })
      head.append(h('span', { class: `muted small ${sawError ? 'error' : ''}`, text: `${sawError ? 'failed' : 'done'} in ${((performance.now() - started) / 1000).toFixed(2)} s` }))
    } catch (err) {
      if (err.name === 'AbortError') body.append(h('p', { class: 'note', text: 'Stopped.' }))
      else if (!ctx.unauthorized(err)) {
        head.querySelector('.exec-count').textContent = ''
        head.append(h('span', { class: 'small error', text: 'did not run' }))
        showError('The run did not complete', err, body)
      }
    } finally {
      running = null
      runBtn.disabled = false
      stopBtn.disabled = true
      files?.refresh()
    }
  }

  // Ctrl/Cmd+Enter runs from anywhere on the page, not only the editor.
  const onKey = (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !e.defaultPrevented) {
      e.preventDefault()
      run()
    }
  }
  document.addEventListener('keydown', onKey)

  if (ctx.query.get('sandbox')) attach(ctx.query.get('sandbox'))
  editor.focus()

  return () => {
    stopped = true
    document.removeEventListener('keydown', onKey)
    running?.abort()
    editor.destroy()
  }
}

// Plain looks for HTML results (pandas tables and the like), in the
// system's light or dark.
const HTML_BASE =
  '<meta charset="utf-8"><style>:root{color-scheme:light dark}body{margin:6px;font:13px/1.4 system-ui,sans-serif}' +
  'table{border-collapse:collapse}th,td{border:1px solid rgb(127 127 127 / 35%);padding:3px 10px;text-align:right}' +
  'thead th{background:rgb(127 127 127 / 12%)}</style>'

/** Shows one result: the richest form it has. */
function renderResult(r) {
  const box = h('div', { class: 'result' })
  if (r.png) box.append(h('img', { src: `data:image/png;base64,${r.png}`, alt: r.text ?? 'PNG result', class: 'result-img' }))
  else if (r.jpeg) box.append(h('img', { src: `data:image/jpeg;base64,${r.jpeg}`, alt: r.text ?? 'JPEG result', class: 'result-img' }))
  else if (r.svg) box.append(h('img', { src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(r.svg)}`, alt: 'SVG result', class: 'result-img' }))
  else if (r.html) {
    // A sandboxed frame: the sandbox's HTML can style itself but runs no
    // script (no allow-scripts, and the page's CSP), so it cannot reach the
    // console or the API key; same-origin only so its height can be read.
    const frame = h('iframe', { sandbox: 'allow-same-origin', srcdoc: HTML_BASE + r.html, class: 'result-html', title: 'HTML result' })
    frame.addEventListener('load', () => {
      const doc = frame.contentDocument
      if (doc) frame.style.height = `${Math.min(480, doc.documentElement.scrollHeight + 4)}px`
    })
    box.append(frame)
  } else if (r.json !== undefined) box.append(h('pre', { class: 'json', text: JSON.stringify(r.json, null, 2) }))
  else if (r.markdown) box.append(h('pre', { text: r.markdown }))
  else if (r.latex) box.append(h('pre', { text: r.latex }))
  else if (r.text !== undefined) box.append(h('pre', { class: 'text', text: r.text }))
  else box.append(h('pre', { class: 'muted', text: `(a result with ${Object.keys(r).filter((k) => k !== 'type').join(', ')})` }))
  return box
}
