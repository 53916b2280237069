// Issue 3: the filesystem API (envd /files and filesystem.Filesystem) through
// the official e2b SDK.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { before, describe, test } from 'node:test'
import { FileNotFoundError, Sandbox, SandboxError } from 'e2b'
import { track, useServer, waitFor } from './harness.mjs'
import { hostAncestor, hostPeakRss, hostPidsWithMarker, resetPeakRss } from './hostproc.mjs'

const server = useServer()
const tag = () => randomBytes(6).toString('hex')
const sha256 = (buf) => createHash('sha256').update(buf).digest('hex')

/** A ReadableStream of `total` pseudo-random bytes in `chunk`-sized pieces; hashes as it goes. */
function randomStream(total, chunk = 1 << 20) {
  const hash = createHash('sha256')
  let sent = 0
  let seed = randomBytes(chunk)
  const stream = new ReadableStream({
    pull(controller) {
      if (sent >= total) {
        controller.close()
        return
      }
      const n = Math.min(chunk, total - sent)
      // Vary every chunk cheaply so a repeated or dropped chunk changes the hash.
      seed = createHash('sha512').update(seed).digest()
      const buf = Buffer.alloc(n)
      for (let off = 0; off < n; off += seed.length) seed.copy(buf, off, 0, Math.min(seed.length, n - off))
      buf.writeUInt32BE(sent / chunk, 0)
      hash.update(buf)
      sent += n
      controller.enqueue(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength))
    },
  })
  return { stream, digest: () => hash.digest('hex') }
}

describe('files', () => {
  /** @type {Sandbox} */
  let sbx
  before(async () => {
    sbx = track(server, await Sandbox.create())
  })

  test('write and read text', async () => {
    const info = await sbx.files.write('/home/user/hello.txt', 'hello, sandpit\n')
    assert.equal(info.path, '/home/user/hello.txt')
    assert.equal(info.name, 'hello.txt')
    assert.equal(await sbx.files.read('/home/user/hello.txt'), 'hello, sandpit\n')
    assert.equal((await sbx.commands.run('cat /home/user/hello.txt')).stdout, 'hello, sandpit\n')
  })

  test('relative paths resolve against the user home; ~ expands', async () => {
    await sbx.files.write('rel.txt', 'relative')
    assert.equal((await sbx.commands.run('cat /home/user/rel.txt')).stdout, 'relative')
    assert.equal(await sbx.files.read('~/rel.txt'), 'relative')
  })

  test('overwrite replaces the whole file; empty files read as empty', async () => {
    await sbx.files.write('/tmp/over.txt', 'a long first version')
    await sbx.files.write('/tmp/over.txt', 'short')
    assert.equal(await sbx.files.read('/tmp/over.txt'), 'short')
    await sbx.files.write('/tmp/empty.txt', '')
    assert.equal(await sbx.files.read('/tmp/empty.txt'), '')
  })

  test('write and read bytes (every byte value)', async () => {
    const data = new Uint8Array(256 * 4)
    for (let i = 0; i < data.length; i++) data[i] = i % 256
    await sbx.files.write('/tmp/bytes.bin', data)
    const back = await sbx.files.read('/tmp/bytes.bin', { format: 'bytes' })
    assert.ok(back instanceof Uint8Array)
    assert.deepEqual(Buffer.from(back), Buffer.from(data))
    const blob = await sbx.files.read('/tmp/bytes.bin', { format: 'blob' })
    assert.deepEqual(Buffer.from(await blob.arrayBuffer()), Buffer.from(data))
  })

  test('write a stream, read a stream', async () => {
    const { stream, digest } = randomStream(3 << 20, 64 << 10)
    await sbx.files.write('/tmp/stream.bin', stream)
    const want = digest()
    const rs = await sbx.files.read('/tmp/stream.bin', { format: 'stream' })
    const h = createHash('sha256')
    for await (const chunk of rs) h.update(chunk)
    assert.equal(h.digest('hex'), want)
  })

  test('gzip upload and download', async () => {
    const text = 'compressible '.repeat(10_000)
    await sbx.files.write('/tmp/gz.txt', text, { gzip: true })
    assert.equal(await sbx.files.read('/tmp/gz.txt', { gzip: true }), text)
    assert.equal((await sbx.commands.run('wc -c < /tmp/gz.txt')).stdout.trim(), String(text.length))
  })

  test('write many files in one call; parents are created', async () => {
    const base = `/home/user/multi-${tag()}`
    const res = await sbx.files.write([
      { path: `${base}/a.txt`, data: 'A' },
      { path: `${base}/deep/er/b.txt`, data: 'B' },
      { path: `${base}/c.bin`, data: new Uint8Array([1, 2, 3]) },
    ])
    assert.equal(res.length, 3)
    assert.deepEqual(res.map((r) => r.path).sort(), [`${base}/a.txt`, `${base}/c.bin`, `${base}/deep/er/b.txt`])
    assert.equal(await sbx.files.read(`${base}/deep/er/b.txt`), 'B')
    assert.equal((await sbx.commands.run(`stat -c %U ${base}/deep/er ${base}/deep`)).stdout, 'user\nuser\n')
  })

  test('a 100 MB file round-trips with the same SHA-256', { timeout: 300_000 }, async (t) => {
    const size = 100 << 20
    // The daemon and the sandbox's agent must stream, not hold the file:
    // find both on the host and watch their peak resident memory.
    const marker = `files-marker-${tag()}`
    const probe = await sbx.commands.run(`bash -c 'sleep 120; : ${marker}'`, { background: true, timeoutMs: 0 })
    const [markedPid] = await waitFor(() => {
      const p = hostPidsWithMarker(marker)
      return p.length ? p : null
    }, { what: 'the marked process on the host' })
    const agentPid = hostAncestor(markedPid, /\benvd\b/)
    await probe.kill()
    assert.ok(agentPid, `no envd among the host ancestors of ${markedPid}`)
    for (const pid of [server.pid, agentPid]) resetPeakRss(pid)
    const { stream, digest } = randomStream(size)
    const t0 = performance.now()
    await sbx.files.write('/home/user/big.bin', stream, { requestTimeoutMs: 240_000 })
    const up = performance.now() - t0
    const want = digest()
    const inside = await sbx.commands.run('sha256sum /home/user/big.bin; stat -c %s /home/user/big.bin')
    assert.equal(inside.stdout, `${want}  /home/user/big.bin\n${size}\n`)
    const t1 = performance.now()
    const rs = await sbx.files.read('/home/user/big.bin', { format: 'stream', requestTimeoutMs: 240_000 })
    const h = createHash('sha256')
    let n = 0
    for await (const chunk of rs) {
      h.update(chunk)
      n += chunk.length
    }
    const down = performance.now() - t1
    assert.equal(n, size)
    assert.equal(h.digest('hex'), want)
    // Also as one buffer (the default text/bytes path).
    const bytes = await sbx.files.read('/home/user/big.bin', { format: 'bytes', requestTimeoutMs: 240_000 })
    assert.equal(sha256(bytes), want)
    const peaks = { daemon: hostPeakRss(server.pid), agent: hostPeakRss(agentPid) }
    t.diagnostic(`100 MB: upload ${(size / 2 ** 20 / (up / 1000)).toFixed(0)} MiB/s, download ${(size / 2 ** 20 / (down / 1000)).toFixed(0)} MiB/s; peak RSS daemon ${(peaks.daemon / 2 ** 20).toFixed(0)} MiB, agent ${(peaks.agent / 2 ** 20).toFixed(0)} MiB`)
    for (const [who, peak] of Object.entries(peaks)) assert.ok(peak < size, `${who} peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB during a ${size >> 20} MiB transfer: it buffers the file`)
    await sbx.files.remove('/home/user/big.bin')
  })

  test('list with depth', async () => {
    const root = `/home/user/tree-${tag()}`
    await sbx.files.write([
      { path: `${root}/x.txt`, data: 'x' },
      { path: `${root}/a/y.txt`, data: 'yy' },
      { path: `${root}/a/b/z.txt`, data: 'zzz' },
    ])
    const rel = (entries) => entries.map((e) => e.path.slice(root.length + 1)).sort()
    const d1 = await sbx.files.list(root)
    assert.deepEqual(rel(d1), ['a', 'x.txt'])
    const a = d1.find((e) => e.name === 'a')
    assert.equal(a.type, 'dir')
    const x = d1.find((e) => e.name === 'x.txt')
    assert.equal(x.type, 'file')
    assert.equal(x.size, 1)
    assert.equal(x.path, `${root}/x.txt`)
    assert.deepEqual(rel(await sbx.files.list(root, { depth: 2 })), ['a', 'a/b', 'a/y.txt', 'x.txt'])
    assert.deepEqual(rel(await sbx.files.list(root, { depth: 3 })), ['a', 'a/b', 'a/b/z.txt', 'a/y.txt', 'x.txt'])
    await assert.rejects(sbx.files.list(`${root}/nope`), FileNotFoundError)
    await assert.rejects(sbx.files.list(`${root}/x.txt`), SandboxError, 'listing a file must fail')
  })

  test('exists and getInfo', async () => {
    const before = Date.now()
    await sbx.files.write('/home/user/info.txt', '12345')
    assert.equal(await sbx.files.exists('/home/user/info.txt'), true)
    assert.equal(await sbx.files.exists('/home/user/nope.txt'), false)
    const info = await sbx.files.getInfo('/home/user/info.txt')
    assert.equal(info.name, 'info.txt')
    assert.equal(info.type, 'file')
    assert.equal(info.path, '/home/user/info.txt')
    assert.equal(info.size, 5)
    assert.equal(info.owner, 'user')
    assert.equal(info.group, 'user')
    assert.match(info.permissions, /^-rw/)
    assert.equal(info.mode & 0o600, 0o600)
    assert.ok(info.modifiedTime instanceof Date)
    assert.ok(Math.abs(info.modifiedTime.getTime() - before) < 60_000, `modifiedTime ${info.modifiedTime.toISOString()}`)
    const dir = await sbx.files.getInfo('/home/user')
    assert.equal(dir.type, 'dir')
    assert.match(dir.permissions, /^d/)
    await assert.rejects(sbx.files.getInfo('/home/user/nope.txt'), FileNotFoundError)
    await assert.rejects(sbx.files.read('/home/user/nope.txt'), FileNotFoundError)
  })

  test('symlinks are reported as symlinks', async () => {
    await sbx.commands.run('echo t > /tmp/target.txt && ln -sf /tmp/target.txt /tmp/link.txt')
    const info = await sbx.files.getInfo('/tmp/link.txt')
    assert.equal(info.symlinkTarget, '/tmp/target.txt')
  })

  test('makeDir', async () => {
    const dir = `/home/user/made-${tag()}/with/parents`
    assert.equal(await sbx.files.makeDir(dir), true)
    assert.equal(await sbx.files.makeDir(dir), false, 'makeDir on an existing dir returns false')
    assert.equal((await sbx.files.getInfo(dir)).type, 'dir')
    assert.equal((await sbx.commands.run(`stat -c %U ${dir}`)).stdout, 'user\n')
  })

  test('rename', async () => {
    await sbx.files.write('/home/user/old-name.txt', 'moving')
    const entry = await sbx.files.rename('/home/user/old-name.txt', '/home/user/new-name.txt')
    assert.equal(entry.path, '/home/user/new-name.txt')
    assert.equal(entry.name, 'new-name.txt')
    assert.equal(await sbx.files.exists('/home/user/old-name.txt'), false)
    assert.equal(await sbx.files.read('/home/user/new-name.txt'), 'moving')
    await assert.rejects(sbx.files.rename('/home/user/no-such', '/home/user/x'), FileNotFoundError)
  })

  test('remove files and directories', async () => {
    await sbx.files.write('/home/user/rm/a/b.txt', 'b')
    await sbx.files.remove('/home/user/rm/a/b.txt')
    assert.equal(await sbx.files.exists('/home/user/rm/a/b.txt'), false)
    await sbx.files.remove('/home/user/rm')
    assert.equal(await sbx.files.exists('/home/user/rm'), false)
    await sbx.files.remove('/home/user/rm') // missing is not an error
  })

  test('watchDir sees create, write, remove in order', async () => {
    const dir = `/home/user/watched-${tag()}`
    await sbx.files.makeDir(dir)
    const events = []
    const handle = await sbx.files.watchDir(dir, (e) => events.push(e))
    try {
      await sbx.files.write(`${dir}/f.txt`, 'one')
      await waitFor(() => events.some((e) => e.name === 'f.txt' && e.type === 'write'), { what: 'write event' })
      await sbx.commands.run(`rm ${dir}/f.txt`)
      await waitFor(() => events.some((e) => e.name === 'f.txt' && e.type === 'remove'), { what: 'remove event' })
    } finally {
      await handle.stop()
    }
    const seq = events.filter((e) => e.name === 'f.txt').map((e) => e.type)
    const ci = seq.indexOf('create')
    const wi = seq.indexOf('write')
    const ri = seq.indexOf('remove')
    assert.ok(ci >= 0, `no create event: ${seq}`)
    assert.ok(ci < wi && wi < ri, `events out of order: ${seq}`)
  })

  test('watchDir recursive reports nested paths', async () => {
    const dir = `/home/user/rwatch-${tag()}`
    await sbx.files.makeDir(`${dir}/sub`)
    const events = []
    const handle = await sbx.files.watchDir(dir, (e) => events.push(e), { recursive: true })
    try {
      await sbx.files.write(`${dir}/sub/n.txt`, 'n')
      await waitFor(() => events.some((e) => e.name === 'sub/n.txt'), { what: 'nested event' })
    } finally {
      await handle.stop()
    }
  })

  test('uploadUrl and downloadUrl', async () => {
    const path = `/home/user/url-${tag()}.txt`
    const up = await sbx.uploadUrl(path)
    assert.ok(up.startsWith(server.url + '/files?'), `uploadUrl ${up} does not point at the server`)
    const form = new FormData()
    form.append('file', new Blob(['via url']), path)
    const res = await fetch(up, { method: 'POST', body: form })
    assert.equal(res.status, 200, `upload via URL: ${res.status} ${await res.clone().text()}`)
    await res.arrayBuffer()
    assert.equal(await sbx.files.read(path), 'via url')
    const down = await sbx.downloadUrl(path)
    const got = await fetch(down)
    assert.equal(got.status, 200)
    assert.equal(await got.text(), 'via url')
    // A URL whose signature was tampered with is refused.
    const bad = new URL(down)
    bad.searchParams.set('signature', 'v1_' + 'A'.repeat(43))
    const refused = await fetch(bad)
    await refused.arrayBuffer()
    assert.equal(refused.status, 401)
  })

  test('ownership: user by default, root when asked', async () => {
    const u = await sbx.files.write('/tmp/owned-by-user.txt', 'u')
    assert.equal(u.path, '/tmp/owned-by-user.txt')
    assert.equal((await sbx.files.getInfo('/tmp/owned-by-user.txt')).owner, 'user')
    await sbx.files.write('/tmp/owned-by-root.txt', 'r', { user: 'root' })
    assert.equal((await sbx.files.getInfo('/tmp/owned-by-root.txt')).owner, 'root')
    assert.equal((await sbx.commands.run('stat -c %U:%G /tmp/owned-by-user.txt /tmp/owned-by-root.txt')).stdout, 'user:user\nroot:root\n')
    // user cannot write where only root can.
    await assert.rejects(sbx.files.write('/root/nope.txt', 'x'), 'user wrote into /root')
    await sbx.files.write('/root/yes.txt', 'x', { user: 'root' })
    await sbx.commands.run('chmod 600 /root/yes.txt', { user: 'root' })
    assert.equal(await sbx.files.read('/root/yes.txt', { user: 'root' }), 'x')
    await assert.rejects(sbx.files.read('/root/yes.txt'), 'user read a root-only file')
  })

  test('parents are made for the user, as on E2B (issue 17.1)', async () => {
    // / is root's: envd makes the missing parents itself and gives them to the user.
    const t = tag()
    const multi = await sbx.files.write(`/0-${t}/deep/x.txt`, 'multipart')
    assert.equal(multi.path, `/0-${t}/deep/x.txt`)
    await sbx.files.write(`/1-${t}/deep/y.txt`, 'octet', { useOctetStream: true })
    await sbx.files.write([
      { path: `/2-${t}/a/one.txt`, data: 'one' },
      { path: `/2-${t}/b/two.txt`, data: 'two' },
    ])
    assert.equal(await sbx.files.makeDir(`/3-${t}/deep`), true)
    const r = await sbx.commands.run(
      `stat -c '%U %a %n' /0-${t} /0-${t}/deep /0-${t}/deep/x.txt /1-${t}/deep/y.txt /2-${t}/a /2-${t}/b/two.txt /3-${t} /3-${t}/deep && cat /0-${t}/deep/x.txt /1-${t}/deep/y.txt /2-${t}/a/one.txt`,
    )
    assert.equal(
      r.stdout,
      [
        `user 755 /0-${t}`, `user 755 /0-${t}/deep`, `user 644 /0-${t}/deep/x.txt`, `user 644 /1-${t}/deep/y.txt`,
        `user 755 /2-${t}/a`, `user 644 /2-${t}/b/two.txt`, `user 755 /3-${t}`, `user 755 /3-${t}/deep`,
      ].join('\n') + '\nmultipartoctetone',
    )
    // Other operations keep the user's permissions.
    await assert.rejects(sbx.files.write('/root/nope-17.txt', 'x'), 'user wrote into /root')
    await sbx.files.write(`/tmp/mv-${t}`, 'm')
    await assert.rejects(sbx.files.rename(`/tmp/mv-${t}`, `/4-${t}/deep/m`), 'rename made parents in / for the user')
  })

  test('signed URLs for another user resolve relative paths against its home (issue 17.2)', async () => {
    const name = `hello-${tag()}.txt`
    const up = await sbx.uploadUrl(name, { user: 'root' })
    const form = new FormData()
    form.append('file', new Blob(['for root']), name)
    const res = await fetch(up, { method: 'POST', body: form })
    assert.equal(res.status, 200, `upload via URL: ${res.status} ${await res.clone().text()}`)
    assert.equal((await res.json())[0].path, `/root/${name}`)
    assert.equal((await sbx.commands.run(`stat -c %U /root/${name} && cat /root/${name}`, { user: 'root' })).stdout, 'root\nfor root')
    const got = await fetch(await sbx.downloadUrl(name, { user: 'root' }))
    assert.equal(got.status, 200)
    assert.equal(await got.text(), 'for root')
    // The default user's relative paths are unchanged.
    await sbx.files.write(name, 'for user')
    assert.equal((await sbx.commands.run(`cat /home/user/${name}`)).stdout, 'for user')
  })

  test('limits at the edge: oversized headers get 431, oversized envd messages resource_exhausted, never a 502 (issue 10.9)', async () => {
    const big = await fetch(`${server.url}/health`, { headers: { 'X-Big': 'a'.repeat(80 << 10) } })
    await big.arrayBuffer()
    assert.equal(big.status, 431)
    const fine = await fetch(`${server.url}/health`, { headers: { 'X-Big': 'a'.repeat(60 << 10) } })
    await fine.arrayBuffer()
    assert.equal(fine.status, 200)
    // 1 MiB per filesystem message, 16 MiB per process message.
    await assert.rejects(sbx.files.makeDir('x'.repeat(2 << 20)), (err) => {
      assert.match(err.message, /resource_exhausted|larger than configured max/, `makeDir: ${err.message}`)
      return true
    })
    const cmd = await sbx.commands.run('cat > /dev/null', { background: true, stdin: true })
    await assert.rejects(sbx.commands.sendStdin(cmd.pid, 'y'.repeat(17 << 20)), (err) => {
      assert.match(err.message, /resource_exhausted|larger than configured max/, `sendStdin: ${err.message}`)
      return true
    })
    await cmd.kill()
    assert.equal((await sbx.commands.run('echo alive')).stdout, 'alive\n')
  })

  test('concurrent writes replace the file whole: readers and the end state see one version (issue 10.8)', async () => {
    const path = `/tmp/race-${tag()}.bin`
    const size = 1 << 20
    const version = (i) => Buffer.alloc(size, 97 + i)
    const whole = (buf) => buf.length === size && buf.every((b) => b === buf[0])
    await sbx.files.write(path, version(0))
    let writing = true
    const reads = (async () => {
      let n = 0
      while (writing) {
        const got = Buffer.from(await sbx.files.read(path, { format: 'bytes' }))
        assert.ok(whole(got), `a read saw a partial or mixed file: ${got.length} bytes`)
        n++
      }
      return n
    })()
    await Promise.all(Array.from({ length: 6 }, (_, i) => (async () => {
      for (let r = 0; r < 3; r++) await sbx.files.write(path, version(i))
    })()))
    writing = false
    console.log(`${await reads} reads during the writes`)
    assert.ok(whole(Buffer.from(await sbx.files.read(path, { format: 'bytes' }))))
    const ls = await sbx.files.list('/tmp')
    assert.deepEqual(ls.filter((e) => e.name.startsWith('.sandpit-')).map((e) => e.name), [], 'temporary files left')
  })

  test('paths cannot escape the sandbox root', async () => {
    const marker = `escape-${tag()}`
    await sbx.files.write(`/tmp/../../../../tmp/${marker}`, 'inside', { user: 'root' })
    assert.equal((await sbx.commands.run(`cat /tmp/${marker}`)).stdout, 'inside')
    await sbx.commands.run(`ln -sfn / /tmp/rootlink-${marker}`, { user: 'root' })
    // Through a symlink to "/", the sandbox's own root is what is listed: its
    // /tmp holds the marker written above, the host's /tmp does not.
    const names = (await sbx.files.list(`/tmp/rootlink-${marker}/tmp`, { user: 'root' })).map((e) => e.name)
    assert.ok(names.includes(marker), `listing through a symlink to / did not show the sandbox /tmp: ${names}`)
    assert.equal(await sbx.files.read(`/tmp/rootlink-${marker}/tmp/${marker}`, { user: 'root' }), 'inside')
  })
})
