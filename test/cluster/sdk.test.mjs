// The official E2B JS SDK against the API role of a test cluster
// (test/cluster/up.sh: etcd, kube-apiserver, api replicas, two nodes).
// Run by test/cluster/run.sh, which starts the cluster and sets the
// environment: E2B_API_URL/E2B_SANDBOX_URL/E2B_API_KEY (replica 1),
// SANDPIT_API2_URL (replica 2), KUBECONFIG, SANDPIT_CLUSTER_DIR.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
// The SDK is installed once, pinned, for test/compat.
const { Sandbox, Template } = await import(join(here, '..', 'compat', 'node_modules', 'e2b', 'dist', 'index.mjs'))
const { Sandbox: CodeSandbox } = await import(join(here, '..', 'compat', 'node_modules', '@e2b', 'code-interpreter', 'dist', 'index.mjs'))

const api2 = process.env.SANDPIT_API2_URL
const clusterDir = process.env.SANDPIT_CLUSTER_DIR
assert.ok(process.env.E2B_API_URL && api2 && clusterDir, 'run through test/cluster/run.sh')

const live = new Set()
after(async () => {
  await Promise.allSettled([...live].map((s) => s.kill()))
})

/** The Sandbox objects in the cluster: id -> node (phase in phases). */
const phases = new Map()
function sandboxObjects() {
  const out = execFileSync('kubectl', ['get', 'sandboxes.sandpit.dev', '-n', 'sandpit', '-o', 'json'], { encoding: 'utf8' })
  const items = JSON.parse(out).items
  for (const o of items) phases.set(o.metadata.name, o.status?.phase)
  return new Map(items.map((o) => [o.metadata.name, o.status?.nodeName ?? o.metadata.labels?.['sandpit.dev/node']]))
}

async function create(opts = {}) {
  const s = await Sandbox.create({ timeoutMs: 120_000, ...opts })
  live.add(s)
  return s
}

test('create, commands, files and kill through the API role, spread over both nodes', async () => {
  // Placement weighs each node's free memory and CPU (both nodes measure
  // this one machine, at different moments): create more until both hold
  // some.
  const boxes = await Promise.all(Array.from({ length: 6 }, () => create()))
  for (let i = 0; i < 10 && new Set([...sandboxObjects()].filter(([id]) => boxes.some((s) => s.sandboxId === id)).map(([, n]) => n)).size < 2; i++) {
    boxes.push(await create())
  }
  for (const [i, s] of boxes.entries()) {
    const r = await s.commands.run(`echo hello ${i}`)
    assert.equal(r.stdout, `hello ${i}\n`)
    await s.files.write('/home/user/note.txt', `note ${i}`)
    assert.equal(await s.files.read('/home/user/note.txt'), `note ${i}`)
  }
  const objs = sandboxObjects()
  const nodes = new Set(boxes.map((s) => objs.get(s.sandboxId)))
  assert.deepEqual([...nodes].sort(), ['node-1', 'node-2'], `sandboxes' nodes: ${[...objs]}`)
  const listed = await Sandbox.list().nextItems()
  for (const s of boxes) assert.ok(listed.some((l) => l.sandboxId === s.sandboxId), `${s.sandboxId} listed`)

  for (const s of boxes) {
    await s.kill()
    live.delete(s)
  }
  const after = sandboxObjects()
  for (const s of boxes) assert.ok(!after.has(s.sandboxId), `${s.sandboxId}'s Sandbox object deleted on kill`)
  await assert.rejects(boxes[0].commands.run('true'))
})

test('a second API replica serves the sandboxes the first created', async () => {
  const s = await create()
  const other = await Sandbox.connect(s.sandboxId, { apiUrl: api2, sandboxUrl: api2 })
  const r = await other.commands.run('echo via-two')
  assert.equal(r.stdout, 'via-two\n')
  assert.ok(await other.isRunning())
  await other.kill()
  live.delete(s)
  assert.equal(await s.isRunning(), false)
})

test('the code interpreter through the API role: state across runs', async () => {
  const s = await CodeSandbox.create({ timeoutMs: 120_000 })
  live.add(s)
  await s.runCode('x = 20')
  const r = await s.runCode('x * 2 + 2')
  assert.equal(r.text, '42')
  const out = await s.runCode('print("streamed")')
  assert.deepEqual(out.logs.stdout, ['streamed\n'])
  assert.ok(sandboxObjects().has(s.sandboxId))
  await s.kill()
  live.delete(s)
})

// The template the registry test builds with the shared key (the
// operator's, no team): the teams test checks a team key cannot see it.
let operatorsTemplate

test('a template built once through the API starts on both nodes (pulled from the registry by digest), via either replica', async () => {
  const name = `cluster-${Date.now()}`
  operatorsTemplate = name
  // 16 MiB of layer, so the pull figure below measures moving data.
  const tpl = Template().fromTemplate('base')
    .runCmd('echo built-in-cluster > /opt/which && head -c 16777216 /dev/urandom > /opt/blob', { user: 'root' })
  const built = await Template.build(tpl, name)
  assert.equal(built.name, name)
  assert.equal(await Template.exists(name), true)

  // One SandboxTemplate: built on one node, Ready, its build in the
  // registry by digest.
  const tpls = JSON.parse(execFileSync('kubectl', ['get', 'sandboxtemplates.sandpit.dev', '-n', 'sandpit', '-o', 'json'], { encoding: 'utf8' }))
    .items.filter((o) => o.spec?.aliases?.includes(name))
  assert.equal(tpls.length, 1, `SandboxTemplates of ${name}: ${tpls.map((o) => o.metadata.name)}`)
  const st = tpls[0].status
  assert.equal(st.phase, 'Ready', JSON.stringify(st))
  assert.match(st.image, /^127\.0\.0\.1:\d+\/sandpit\/templates@sha256:[0-9a-f]{64}$/)
  const builder = st.builtOn
  assert.match(builder, /^node-[12]$/)
  const other = builder === 'node-1' ? 'node-2' : 'node-1'

  // Placement prefers the node holding the template (x2) but may take any:
  // create in batches, through both replicas, until both nodes hold some.
  const boxes = []
  const took = new Map() // sandbox id -> create ms
  const nodesOf = () => {
    const objs = sandboxObjects()
    return new Map(boxes.map((s) => [s.sandboxId, objs.get(s.sandboxId)]))
  }
  let firstOnOther
  for (let round = 0; round < 8 && new Set(nodesOf().values()).size < 2; round++) {
    const batch = await Promise.all([0, 1, 2, 3].map(async (i) => {
      const apiUrl = i % 2 ? api2 : process.env.E2B_API_URL
      const t0 = performance.now()
      const s = await create({ template: name, apiUrl, sandboxUrl: apiUrl })
      took.set(s.sandboxId, performance.now() - t0)
      return s
    }))
    boxes.push(...batch)
    const on = nodesOf()
    firstOnOther ??= batch.filter((s) => on.get(s.sandboxId) === other)
      .sort((a, b) => took.get(b.sandboxId) - took.get(a.sandboxId))[0]
  }
  const on = nodesOf()
  assert.deepEqual(new Set(on.values()), new Set(['node-1', 'node-2']), `the template's sandboxes' nodes: ${[...on]}`)
  // The file the template's RUN step wrote is in every sandbox, on both nodes.
  for (const s of boxes) {
    assert.equal((await s.commands.run('cat /opt/which; stat -c %s /opt/blob')).stdout, 'built-in-cluster\n16777216\n', `on ${on.get(s.sandboxId)}`)
  }

  // Built once: only the builder ran the build; the other pulled it once
  // (concurrent creates there shared the pull).
  const log = (n) => readFileSync(join(clusterDir, 'logs', `${n}.log`), 'utf8')
  const id = tpls[0].metadata.name
  const started = (n) => log(n).split('\n').filter((l) => l.includes('template build started') && l.includes(`template=${id}`)).length
  assert.equal(started(builder), 1, 'one build on the builder')
  assert.equal(started(other), 0, 'no build on the other node')
  const pulled = log(other).split('\n').filter((l) => l.includes('template pulled') && l.includes(`template=${id}`))
  assert.equal(pulled.length, 1, `pulls on ${other}: ${pulled.join('\n')}`)

  // Figures: a create that pulled the template, the pull alone, and
  // creates where it is present (sequential, so each node's own time).
  const present = { [builder]: [], [other]: [] }
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now()
    const s = await create({ template: name })
    const ms = performance.now() - t0
    present[sandboxObjects().get(s.sandboxId)]?.push(ms)
    await s.kill()
    live.delete(s)
  }
  const med = (a) => a.length ? a.sort((x, y) => x - y)[Math.floor(a.length / 2)].toFixed(0) : '-'
  console.log(`# template pull figures (16 MiB layer): first create on ${other} (pulled) ${took.get(firstOnOther.sandboxId).toFixed(0)} ms` +
    ` (in a batch of 4); pull alone ${pulled[0].match(/took=\S+/)?.[0]}; sequential creates where present:` +
    ` p50 ${med(present[builder])} ms on ${builder} (n=${present[builder].length}), ${med(present[other])} ms on ${other} (n=${present[other].length})`)

  for (const s of boxes) {
    await s.kill()
    live.delete(s)
  }
})

test('pause and resume, forks, and sandboxes from a snapshot, through the API role', async () => {
  const parent = await create()
  await parent.files.write('/home/user/state.txt', 'kept')
  const snap = await parent.createSnapshot()
  const parentNode = sandboxObjects().get(parent.sandboxId)
  for (const apiUrl of [process.env.E2B_API_URL, api2]) {
    const child = await create({ template: snap.snapshotId, apiUrl, sandboxUrl: apiUrl })
    assert.equal(await child.files.read('/home/user/state.txt'), 'kept')
    assert.equal(sandboxObjects().get(child.sandboxId), parentNode, 'a snapshot\'s sandboxes start where it is')
    await child.kill()
    live.delete(child)
  }

  const [fork] = await parent.fork({ count: 1 })
  assert.ok(!(fork instanceof Error), `fork: ${fork?.message}`)
  live.add(fork)
  assert.equal(await fork.files.read('/home/user/state.txt'), 'kept')
  assert.equal(sandboxObjects().get(fork.sandboxId), parentNode, 'a fork starts on its parent\'s node')
  await fork.kill()
  live.delete(fork)

  assert.equal(await parent.pause(), true)
  sandboxObjects()
  assert.equal(phases.get(parent.sandboxId), 'Paused')
  const resumed = await Sandbox.connect(parent.sandboxId, { apiUrl: api2, sandboxUrl: api2 })
  assert.equal(await resumed.files.read('/home/user/state.txt'), 'kept')
  sandboxObjects()
  assert.equal(phases.get(parent.sandboxId), 'Running')
  await resumed.kill()
  live.delete(parent)
})

test('two teams\' keys made with sandpit keys create --kubeconfig: each sees only its own sandboxes and templates (public ones start), a revoked key gets 401', async () => {
  const sandpit = process.env.SANDPIT_BIN ?? join(here, '..', '..', 'bin', 'sandpit')
  const cli = (...args) => execFileSync(sandpit, [...args, '--kubeconfig', process.env.KUBECONFIG], { encoding: 'utf8' })
  const keys = {}
  for (const team of ['red', 'blue']) {
    cli('teams', 'create', team)
    keys[team] = cli('keys', 'create', 'sdk', '--team', team).trimEnd().split('\n').at(-1)
    assert.match(keys[team], /^e2b_[0-9a-f]{40}$/)
  }
  const teamIDs = Object.fromEntries(cli('teams', 'list', '--json').trim().split('\n').map((l) => JSON.parse(l)).map((t) => [t.name, t.id]))
  // Both replicas watch the keys: a new key works there within moments.
  for (const apiUrl of [process.env.E2B_API_URL, api2]) {
    for (let i = 0; ; i++) {
      const ok = await Sandbox.list({ apiKey: keys.blue, apiUrl }).nextItems().then(() => true, (e) => { if (i >= 100) throw e; return false })
      if (ok) break
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const red = await create({ apiKey: keys.red })
  const blue = await create({ apiKey: keys.blue, apiUrl: api2, sandboxUrl: api2 })
  const operators = await create() // the shared key: no team
  assert.equal((await red.commands.run('echo red')).stdout, 'red\n')

  const specs = JSON.parse(execFileSync('kubectl', ['get', 'sandboxes.sandpit.dev', '-n', 'sandpit', '-o', 'json'], { encoding: 'utf8' })).items
  const teamOf = (id) => specs.find((o) => o.metadata.name === id)?.spec.teamID
  assert.equal(teamOf(red.sandboxId), teamIDs.red)
  assert.equal(teamOf(blue.sandboxId), teamIDs.blue)
  assert.equal(teamOf(operators.sandboxId), '')

  for (const apiUrl of [process.env.E2B_API_URL, api2]) {
    for (const [team, mine, theirs] of [['red', red, blue], ['blue', blue, red]]) {
      const listed = (await Sandbox.list({ apiKey: keys[team], apiUrl }).nextItems()).map((l) => l.sandboxId)
      assert.deepEqual(listed, [mine.sandboxId], `${team} lists only its own via ${apiUrl}`)
      await assert.rejects(Sandbox.getInfo(theirs.sandboxId, { apiKey: keys[team], apiUrl }), /not found/i)
      await assert.rejects(Sandbox.connect(theirs.sandboxId, { apiKey: keys[team], apiUrl, sandboxUrl: apiUrl }))
      assert.equal(await Sandbox.kill(theirs.sandboxId, { apiKey: keys[team], apiUrl }), false, `${team} cannot kill the other's`)
    }
  }
  const opsListed = (await Sandbox.list().nextItems()).map((l) => l.sandboxId)
  assert.ok(opsListed.includes(operators.sandboxId) && !opsListed.includes(red.sandboxId) && !opsListed.includes(blue.sandboxId))
  assert.ok(await blue.isRunning(), 'the other team\'s kill did nothing')

  await red.kill()
  live.delete(red)
  const redKey = JSON.parse(cli('keys', 'list', '--team', 'red', '--json').trim())
  assert.match(cli('keys', 'revoke', redKey.id), /^revoked key /)
  // A revoked key stops working within seconds, on every replica.
  for (const apiUrl of [process.env.E2B_API_URL, api2]) {
    for (let i = 0; ; i++) {
      const err = await Sandbox.list({ apiKey: keys.red, apiUrl }).nextItems().then(() => null, (e) => e)
      if (err) {
        assert.equal(err.name, 'AuthenticationError', `${err}`)
        break
      }
      assert.ok(i < 100, `the revoked key still works on ${apiUrl} after 10 s`)
      await new Promise((r) => setTimeout(r, 100))
    }
    await assert.rejects(Sandbox.create({ apiKey: keys.red, apiUrl }), (e) => e.name === 'AuthenticationError')
  }
  assert.equal((await blue.commands.run('echo blue')).stdout, 'blue\n')

  // Templates are a team's own too: the operator's is unknown to blue
  // (exists, create) on both replicas until the operator's admin key
  // makes it public; then blue starts it but cannot delete it.
  if (!operatorsTemplate) {
    operatorsTemplate = `ops-${Date.now()}`
    await Template.build(Template().fromTemplate('base').runCmd('echo built-in-cluster > /opt/which', { user: 'root' }), operatorsTemplate)
  }
  for (const apiUrl of [process.env.E2B_API_URL, api2]) {
    assert.equal(await Template.exists(operatorsTemplate, { apiKey: keys.blue, apiUrl }), false, `blue sees the operator's template via ${apiUrl}`)
    await assert.rejects(Sandbox.create(operatorsTemplate, { apiKey: keys.blue, apiUrl, sandboxUrl: apiUrl }), /not found/i)
  }
  const tplID = (await (await fetch(`${process.env.E2B_API_URL}/templates/aliases/${operatorsTemplate}`, { headers: { 'X-API-KEY': process.env.E2B_API_KEY } })).json()).templateID
  const patch = await fetch(`${process.env.E2B_API_URL}/templates/${tplID}`, {
    method: 'PATCH', headers: { 'X-API-KEY': process.env.E2B_API_KEY, 'Content-Type': 'application/json' }, body: JSON.stringify({ public: true }),
  })
  assert.equal(patch.status, 200, await patch.text())
  const pub = await Sandbox.create(operatorsTemplate, { timeoutMs: 120_000, apiKey: keys.blue, apiUrl: api2, sandboxUrl: api2 })
  live.add(pub)
  assert.equal((await pub.commands.run('cat /opt/which')).stdout, 'built-in-cluster\n')
  const del = await fetch(`${api2}/templates/${tplID}`, { method: 'DELETE', headers: { 'X-API-KEY': keys.blue } })
  assert.equal(del.status, 404, 'blue deletes the operator\'s public template')
  await pub.kill()
  live.delete(pub)
  await blue.kill()
  live.delete(blue)
  await operators.kill()
  live.delete(operators)
})

test('a team over both nodes: Sandbox.list pages it two at a time through either replica (state and metadata filters too), max-sandboxes set with teams set --kubeconfig holds across replicas, the audit log through the API names the team', async () => {
  const sandpit = process.env.SANDPIT_BIN ?? join(here, '..', '..', 'bin', 'sandpit')
  const cli = (...args) => execFileSync(sandpit, [...args, '--kubeconfig', process.env.KUBECONFIG], { encoding: 'utf8' })
  const lastLine = (out) => out.trimEnd().split('\n').at(-1)
  const replicas = [process.env.E2B_API_URL, api2]
  cli('teams', 'create', 'green')
  const key = lastLine(cli('keys', 'create', 'sdk', '--team', 'green'))
  const admin = lastLine(cli('keys', 'create', 'ops', '--team', 'green', '--admin'))
  for (const apiUrl of replicas) {
    for (let i = 0; ; i++) {
      const ok = await Sandbox.list({ apiKey: key, apiUrl }).nextItems().then(() => true, (e) => { if (i >= 100) throw e; return false })
      if (ok) break
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const via = (i) => ({ apiKey: key, apiUrl: replicas[i % 2], sandboxUrl: replicas[i % 2] })
  const mine = []
  const nodesOf = () => { const objs = sandboxObjects(); return new Set(mine.map((s) => objs.get(s.sandboxId))) }
  for (let i = 0; i < 12 && (mine.length < 5 || nodesOf().size < 2); i++) {
    mine.push(await create({ ...via(i), metadata: { parity: i % 2 ? 'odd' : 'even' } }))
  }
  assert.deepEqual([...nodesOf()].sort(), ['node-1', 'node-2'], 'the team\'s sandboxes on both nodes')
  assert.equal(await mine[1].pause(), true)
  const ids = (ss) => ss.map((s) => s.sandboxId).sort()
  const walk = async (opts) => {
    const p = Sandbox.list({ apiKey: key, limit: 2, ...opts })
    const out = []
    while (p.hasNext) {
      const items = await p.nextItems()
      assert.ok(items.length <= 2, `a page of ${items.length}`)
      out.push(...items.map((i) => i.sandboxId))
    }
    assert.equal(new Set(out).size, out.length, `no sandbox twice: ${out}`)
    return out.sort()
  }
  for (const apiUrl of replicas) {
    assert.deepEqual(await walk({ apiUrl }), ids(mine), `every page via ${apiUrl}`)
    assert.deepEqual(await walk({ apiUrl, query: { state: ['running'] } }), ids(mine.filter((_, i) => i !== 1)))
    assert.deepEqual(await walk({ apiUrl, query: { state: ['paused'] } }), [mine[1].sandboxId])
    assert.deepEqual(await walk({ apiUrl, query: { metadata: { parity: 'odd' } } }), ids(mine.filter((_, i) => i % 2)))
  }

  // The team is at its limit: both replicas refuse another create.
  assert.match(cli('teams', 'set', 'green', '--max-sandboxes', String(mine.length)), /green/)
  for (const [i, apiUrl] of replicas.entries()) {
    for (let n = 0; ; n++) {
      const err = await Sandbox.create({ ...via(i), timeoutMs: 60_000 }).then(async (s) => { await s.kill(); return null }, (e) => e)
      if (err) {
        assert.equal(err.name, 'RateLimitError', `${err}`)
        assert.match(err.message, /max-sandboxes/)
        break
      }
      assert.ok(n < 100, `${apiUrl} still creates past the limit after 10 s`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  await mine[0].kill()
  live.delete(mine[0])
  mine[0] = await create(via(1))
  await assert.rejects(create(via(0)), (e) => e.name === 'RateLimitError')

  // The nodes' audit logs, merged through a replica, name the team's key.
  assert.equal((await fetch(`${api2}/sandpit/v1/audit`, { headers: { 'X-API-KEY': key } })).status, 403, 'the audit log needs an admin key')
  let entries
  for (let n = 0; ; n++) {
    const res = await fetch(`${api2}/sandpit/v1/audit?team=green&action=sandbox.create`, { headers: { 'X-API-KEY': admin } })
    assert.equal(res.status, 200, await res.clone().text())
    entries = await res.json()
    if (new Set(entries.map((e) => e.node)).size === 2) break
    assert.ok(n < 50, `audit entries of green: ${JSON.stringify(entries)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  for (const e of entries) {
    assert.equal(e.team, 'green')
    assert.equal(e.key_name, 'sdk')
  }
  const times = entries.map((e) => Date.parse(e.time))
  assert.deepEqual(times, [...times].sort((a, b) => a - b), 'merged oldest first')
  for (const s of mine) {
    await s.kill()
    live.delete(s)
  }
})

// Last: it kills a node.
test('a dead node\'s sandboxes are reported gone, creates go to the other node, and the node back re-adopts them', async () => {
  // Placement weighs the nodes' load: create until node-2 holds some.
  const boxes = []
  let onTwo = []
  for (let i = 0; i < 16 && onTwo.length < 2; i++) {
    boxes.push(await create())
    const objs = sandboxObjects()
    onTwo = boxes.filter((s) => objs.get(s.sandboxId) === 'node-2')
  }
  assert.ok(onTwo.length > 0, 'no sandbox landed on node-2 in 16 creates')
  execFileSync(join(here, 'kill-node.sh'), [clusterDir, 'node-2'])
  // The nodes' Lease is 5 s (up.sh): give it that and some.
  const deadline = Date.now() + 30_000
  for (;;) {
    const running = await Promise.all(onTwo.map((s) => s.isRunning().catch(() => false)))
    if (running.every((r) => !r)) break
    assert.ok(Date.now() < deadline, 'node-2\'s sandboxes still reported running 30 s after it died')
    await new Promise((r) => setTimeout(r, 250))
  }
  await assert.rejects(onTwo[0].commands.run('true'))
  for (const s of onTwo) live.delete(s)
  // An API replica marks them Lost once the Lease has run out.
  for (;;) {
    sandboxObjects()
    if (onTwo.every((s) => phases.get(s.sandboxId) === 'Lost')) break
    assert.ok(Date.now() < deadline, `node-2's Sandboxes not marked Lost: ${onTwo.map((s) => phases.get(s.sandboxId))}`)
    await new Promise((r) => setTimeout(r, 250))
  }
  for (let i = 0; i < 4; i++) {
    const s = await create()
    assert.equal(sandboxObjects().get(s.sandboxId), 'node-1')
    assert.equal((await s.commands.run('echo ok')).stdout, 'ok\n')
  }

  // Back on the same machine, node-2 takes its sandboxes over again: they
  // answer, and the API shows them Running.
  execFileSync(join(here, 'restart-node.sh'), [clusterDir, 'node-2'])
  for (const s of onTwo) live.add(s)
  const back = Date.now() + 30_000
  for (;;) {
    sandboxObjects()
    if (onTwo.every((s) => phases.get(s.sandboxId) === 'Running')) break
    assert.ok(Date.now() < back, `node-2's Sandboxes not Running again: ${onTwo.map((s) => phases.get(s.sandboxId))}`)
    await new Promise((r) => setTimeout(r, 250))
  }
  for (const s of onTwo) assert.equal((await s.commands.run('echo back')).stdout, 'back\n')
})
