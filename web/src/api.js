// The console's clients: the control-plane REST API (with the signed-in
// API key) and one sandbox's agent (envd's Connect services, /files, and
// the code interpreter's /execute), reached through the daemon's proxy on
// the same origin with E2B's routing headers, as the E2B SDKs do.

const KEY = 'sandpit.apiKey'
export const ENVD_PORT = 49983
export const INTERP_PORT = 49999

/** An error the server answered, with its HTTP status. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message)
    this.status = status
  }
}

async function errorOf(res) {
  const text = await res.text().catch(() => '')
  let msg = text
  try {
    const body = JSON.parse(text)
    msg = body.message ?? text
  } catch {
    // not JSON: the text is the message
  }
  if (!msg) msg = `${res.status} ${res.statusText}`
  return new ApiError(res.status, msg)
}

export function storedKey() {
  return sessionStorage.getItem(KEY) ?? ''
}

export function storeKey(key) {
  if (key) sessionStorage.setItem(KEY, key)
  else sessionStorage.removeItem(KEY)
}

/** The control-plane REST API, as the holder of one API key. */
export class Api {
  constructor(key) {
    this.key = key
  }

  async request(method, path, body, { raw = false, signal } = {}) {
    const headers = { 'X-API-Key': this.key }
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    })
    if (!res.ok) throw await errorOf(res)
    if (raw) return res
    if (res.status === 204) return null
    const text = await res.text()
    return text ? JSON.parse(text) : null
  }

  get(path, opts) {
    return this.request('GET', path, undefined, opts)
  }

  listSandboxes() {
    return this.get('/v2/sandboxes?state=running,paused&limit=100')
  }

  sandboxInfo(id) {
    return this.get(`/sandboxes/${encodeURIComponent(id)}`)
  }

  async metrics(id) {
    const m = await this.get(`/sandboxes/${encodeURIComponent(id)}/metrics`)
    return Array.isArray(m) && m.length ? m[m.length - 1] : null
  }

  createSandbox(templateID, { timeout = 900, metadata = {} } = {}) {
    return this.request('POST', '/v2/sandboxes', { templateID, timeout, metadata })
  }

  connect(id, timeout = 900) {
    return this.request('POST', `/v2/sandboxes/${encodeURIComponent(id)}/connect`, { timeout })
  }

  kill(id) {
    return this.request('DELETE', `/sandboxes/${encodeURIComponent(id)}`)
  }

  pause(id) {
    return this.request('POST', `/sandboxes/${encodeURIComponent(id)}/pause`, {})
  }

  setTimeout(id, seconds) {
    return this.request('POST', `/sandboxes/${encodeURIComponent(id)}/timeout`, { timeout: Math.round(seconds) })
  }

  snapshot(id, name) {
    return this.request('POST', `/sandboxes/${encodeURIComponent(id)}/snapshots`, name ? { name } : {})
  }

  /** A client for the sandbox's agent, with its access token. */
  async sandbox(id) {
    const info = await this.sandboxInfo(id)
    return new SandboxClient(id, info.envdAccessToken ?? '', info)
  }
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export function b64encode(bytesOrString) {
  const b = typeof bytesOrString === 'string' ? enc.encode(bytesOrString) : bytesOrString
  let s = ''
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000))
  return btoa(s)
}

export function b64decode(s) {
  const bin = atob(s)
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  return out
}

/** One sandbox's agent: envd on 49983 and the code interpreter on 49999. */
export class SandboxClient {
  constructor(id, token, info) {
    this.id = id
    this.token = token
    this.info = info
  }

  headers(port, extra = {}) {
    const hd = { 'E2b-Sandbox-Id': this.id, 'E2b-Sandbox-Port': String(port), ...extra }
    if (this.token) hd['X-Access-Token'] = this.token
    return hd
  }

  /** A unary Connect call with the JSON codec, e.g. rpc('filesystem.Filesystem', 'ListDir', {...}). */
  async rpc(service, method, body, { signal } = {}) {
    const res = await fetch(`/${service}/${method}`, {
      method: 'POST',
      headers: this.headers(ENVD_PORT, { 'Content-Type': 'application/json' }),
      body: JSON.stringify(body ?? {}),
      signal,
    })
    if (!res.ok) throw await errorOf(res)
    return res.json()
  }

  /**
   * A server-streaming Connect call: calls onMessage with each message and
   * resolves when the stream ends (rejects with its error).
   */
  async stream(service, method, body, onMessage, { signal, timeoutMs } = {}) {
    const payload = enc.encode(JSON.stringify(body ?? {}))
    const frame = new Uint8Array(5 + payload.length)
    new DataView(frame.buffer).setUint32(1, payload.length)
    frame.set(payload, 5)
    const extra = { 'Content-Type': 'application/connect+json', 'Connect-Protocol-Version': '1' }
    if (timeoutMs) extra['Connect-Timeout-Ms'] = String(timeoutMs)
    const res = await fetch(`/${service}/${method}`, {
      method: 'POST',
      headers: this.headers(ENVD_PORT, extra),
      body: frame,
      signal,
    })
    if (!res.ok) throw await errorOf(res)
    const reader = res.body.getReader()
    let buf = new Uint8Array(0)
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      const next = new Uint8Array(buf.length + value.length)
      next.set(buf)
      next.set(value, buf.length)
      buf = next
      while (buf.length >= 5) {
        const flags = buf[0]
        const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1)
        if (buf.length < 5 + len) break
        const msg = JSON.parse(dec.decode(buf.subarray(5, 5 + len)) || '{}')
        buf = buf.slice(5 + len)
        if (flags & 2) {
          if (msg.error) throw new ApiError(0, msg.error.message || msg.error.code)
          return
        }
        onMessage(msg)
      }
    }
    throw new ApiError(0, 'the stream ended without its end message')
  }

  async listDir(path) {
    const r = await this.rpc('filesystem.Filesystem', 'ListDir', { path, depth: 1 })
    return (r.entries ?? []).sort((a, b) => {
      const da = a.type === 'FILE_TYPE_DIRECTORY' ? 0 : 1
      const db = b.type === 'FILE_TYPE_DIRECTORY' ? 0 : 1
      return da - db || a.name.localeCompare(b.name)
    })
  }

  async processes() {
    const r = await this.rpc('process.Process', 'List', {})
    return r.processes ?? []
  }

  killProcess(pid) {
    return this.rpc('process.Process', 'SendSignal', { process: { pid }, signal: 'SIGNAL_SIGKILL' })
  }

  /** Writes a File or Blob at path (multipart, as the SDK does). */
  async upload(path, blob) {
    const form = new FormData()
    form.append('file', blob, path)
    const res = await fetch(`/files?path=${encodeURIComponent(path)}`, {
      method: 'POST',
      headers: this.headers(ENVD_PORT),
      body: form,
    })
    if (!res.ok) throw await errorOf(res)
    return res.json()
  }

  async download(path) {
    const res = await fetch(`/files?path=${encodeURIComponent(path)}`, { headers: this.headers(ENVD_PORT) })
    if (!res.ok) throw await errorOf(res)
    return res.blob()
  }

  /** Creates a fresh interpreter context for language. */
  async newContext(language) {
    const res = await fetch('/contexts', {
      method: 'POST',
      headers: this.headers(INTERP_PORT, { 'Content-Type': 'application/json' }),
      body: JSON.stringify({ language }),
    })
    if (!res.ok) throw await errorOf(res)
    return res.json()
  }

  /**
   * Runs code in the interpreter, calling onLine with each NDJSON line
   * (stdout, stderr, result, error, number_of_executions) as it arrives.
   */
  async execute({ code, language, contextId }, onLine, { signal } = {}) {
    const body = { code }
    if (contextId) body.context_id = contextId
    else body.language = language
    const res = await fetch('/execute', {
      method: 'POST',
      headers: this.headers(INTERP_PORT, { 'Content-Type': 'application/json' }),
      body: JSON.stringify(body),
      signal,
    })
    if (!res.ok) throw await errorOf(res)
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let rest = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      rest += value
      let nl
      while ((nl = rest.indexOf('\n')) >= 0) {
        const line = rest.slice(0, nl).trim()
        rest = rest.slice(nl + 1)
        if (line) onLine(JSON.parse(line))
      }
    }
    if (rest.trim()) onLine(JSON.parse(rest))
  }
}
