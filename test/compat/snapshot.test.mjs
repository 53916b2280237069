// Issue 12: snapshots and fork through the official JS SDK. A snapshot is
// the sandbox's filesystem saved as a template of its team; a fork starts
// sandboxes from the parent's filesystem while it keeps running. Neither
// copies processes or memory (the template's start command runs again).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { after, test } from 'node:test'
import { NotFoundError, Sandbox, SandboxError, SandboxNotFoundError } from 'e2b'
import { startServer, useSdkEnv } from './harness.mjs'

const servers = []
const sandboxes = []
after(async () => {
  for (const s of sandboxes) await s.kill().catch(() => {})
  for (const s of servers) if (!s.exited) await s.stop().catch(() => {})
  if (servers[0]) rmSync(servers[0].dataDir, { recursive: true, force: true })
})

async function create(opts) {
  const s = await Sandbox.create({ timeoutMs: 300_000, ...opts })
  sandboxes.push(s)
  return s
}

test('snapshot, start from it, list, survive a restart, delete', async () => {
  const first = await startServer({ name: 'snapshot-1', keepDataDir: true })
  servers.push(first)
  useSdkEnv(first)
  const run = randomBytes(6).toString('hex')
  const parent = await create({ envs: { RUN: run }, metadata: { run } })
  await parent.files.write('/home/user/notes.txt', `notes ${run}\n`)
  await parent.commands.run('mkdir -p /home/user/data && seq 1 1000 > /home/user/data/seq && rm -f /home/user/.bashrc')

  const named = await parent.createSnapshot({ name: `snap-${run}` })
  assert.equal(named.snapshotId.endsWith(`snap-${run}:default`), true, JSON.stringify(named))
  assert.deepEqual(named.names, [named.snapshotId])
  const plain = await Sandbox.createSnapshot(parent.sandboxId)
  assert.match(plain.snapshotId, /:default$/)
  assert.deepEqual(plain.names, [])

  // The parent runs on; what it writes now is not in the snapshots.
  await parent.files.write('/home/user/later.txt', 'later')
  assert.equal((await parent.commands.run('cat /home/user/notes.txt')).stdout, `notes ${run}\n`)

  for (const id of [named.snapshotId, plain.snapshotId]) {
    const child = await create({ template: id })
    assert.equal(await child.files.read('/home/user/notes.txt'), `notes ${run}\n`)
    assert.equal((await child.commands.run('wc -l < /home/user/data/seq; echo $RUN; test -e /home/user/.bashrc || echo gone; test -e /home/user/later.txt || echo nolater')).stdout,
      `1000\n${run}\ngone\nnolater\n`)
    const info = await child.getInfo()
    assert.equal(info.metadata.run, run)
  }

  const listed = []
  const pages = Sandbox.listSnapshots({ sandboxId: parent.sandboxId, limit: 1 })
  while (pages.hasNext) listed.push(...(await pages.nextItems()))
  assert.deepEqual(listed.map((s) => s.snapshotId).sort(), [named.snapshotId, plain.snapshotId].sort())
  const byName = await Sandbox.listSnapshots({ name: `snap-${run}` }).nextItems()
  assert.deepEqual(byName.map((s) => s.snapshotId), [named.snapshotId])

  // A restart of the daemon keeps the snapshot (and its layer: the GC at
  // start must count it as used).
  await parent.kill()
  await first.stop()
  const second = await startServer({ name: 'snapshot-2', dataDir: first.dataDir, apiKey: first.apiKey })
  servers.push(second)
  useSdkEnv(second)
  const revived = await create({ template: named.snapshotId })
  assert.equal(await revived.files.read('/home/user/notes.txt'), `notes ${run}\n`)
  assert.equal((await Sandbox.listSnapshots({ name: `snap-${run}` }).nextItems()).length, 1)

  assert.equal(await Sandbox.deleteSnapshot(named.snapshotId), true)
  assert.equal(await Sandbox.deleteSnapshot(named.snapshotId), false)
  await assert.rejects(() => Sandbox.create({ template: named.snapshotId }), /not found/i)
  assert.equal(await Sandbox.deleteSnapshot(plain.snapshotId), true)
  await assert.rejects(() => Sandbox.createSnapshot('inosuchsandbox000000'), SandboxNotFoundError)
})

test('fork twice: each fork is independent of the parent and of the others', async () => {
  if (servers.length === 0 || servers.at(-1).exited) {
    const s = await startServer({ name: 'snapshot-fork' })
    servers.push(s)
  }
  useSdkEnv(servers.at(-1))
  const parent = await create({ envs: { WHO: 'parent' }, metadata: { role: 'parent' } })
  await parent.files.write('/home/user/shared.txt', 'from the parent')

  const forks = await parent.fork({ count: 2, timeoutMs: 120_000 })
  assert.equal(forks.length, 2)
  for (const f of forks) {
    assert.ok(f instanceof Sandbox, `a fork failed: ${f}`)
    sandboxes.push(f)
  }
  const [a, b] = forks
  assert.notEqual(a.sandboxId, b.sandboxId)
  assert.notEqual(a.sandboxId, parent.sandboxId)
  for (const f of forks) {
    assert.equal(await f.files.read('/home/user/shared.txt'), 'from the parent')
    assert.equal((await f.commands.run('echo $WHO')).stdout, 'parent\n')
    assert.equal((await f.getInfo()).metadata.role, 'parent')
  }
  // Writes stay where they were made.
  await a.files.write('/home/user/shared.txt', 'a')
  await b.files.write('/home/user/b.txt', 'b')
  await parent.files.write('/home/user/p.txt', 'p')
  assert.equal(await parent.files.read('/home/user/shared.txt'), 'from the parent')
  assert.equal(await b.files.read('/home/user/shared.txt'), 'from the parent')
  assert.equal(await a.files.exists('/home/user/b.txt'), false)
  assert.equal(await parent.files.exists('/home/user/b.txt'), false)
  assert.equal(await a.files.exists('/home/user/p.txt'), false)
  assert.equal(await b.files.exists('/home/user/p.txt'), false)

  // A second fork (of the parent, as it is now) and Sandbox.fork.
  const [c] = await Sandbox.fork(parent.sandboxId, { timeoutMs: 120_000 })
  assert.ok(c instanceof Sandbox, `the second fork failed: ${c}`)
  sandboxes.push(c)
  assert.equal(await c.files.read('/home/user/p.txt'), 'p')
  assert.equal(await c.files.read('/home/user/shared.txt'), 'from the parent')

  // A count below 1 is E2B's 400 (InvalidArgumentError in the Python
  // SDK; this JS SDK raises a SandboxError with the status).
  await assert.rejects(() => parent.fork({ count: 0 }), (err) => err instanceof SandboxError && err.statusCode === 400)
  await parent.kill()
  await assert.rejects(() => Sandbox.fork(parent.sandboxId, { count: 1 }), (err) => err instanceof SandboxNotFoundError || err instanceof NotFoundError)
  // The forks outlive their parent.
  assert.equal(await a.files.read('/home/user/shared.txt'), 'a')
})
