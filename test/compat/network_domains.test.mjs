// Domain rules in network.allowOut, as an E2B SDK user meets them: names
// (exact and *.wildcard) reached over HTTP and HTTPS through sandpit's
// egress proxy; everything else refused, even when the sandbox lies about
// the address; updateNetwork opening and closing names; names that
// resolve to private addresses or the host refused; refusals counted in
// /metrics.
//
// The "internet" is a network namespace this test makes, on TEST-NET-3
// addresses behind a host route, with its own DNS server that the daemon
// is pointed at with --dns.
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { ALL_TRAFFIC, CommandExitError, Sandbox } from 'e2b'
import { execFileSync } from 'node:child_process'
import { sandpitBin, startServer, track, useSdkEnv, useServer, waitFor } from './harness.mjs'
import { addrA, addrB, startTestNet } from './testnet.mjs'

const server = useServer({ extraArgs: ['--dns', addrA, '--egress-rate-max', '64MiB', '--egress-max-conns-max', '64'] })

/** stdout of cmd in sbx and its exit code, whatever it is. */
async function run(sbx, cmd) {
  try {
    const r = await sbx.commands.run(cmd, { timeoutMs: 30_000 })
    return { out: r.stdout, code: 0 }
  } catch (err) {
    if (err instanceof CommandExitError) return { out: err.stdout, code: err.exitCode }
    throw err
  }
}

/** What curl in sbx gets from url ('' when refused), with curl's extra args. */
async function fetchIn(sbx, url, ...args) {
  const r = await run(sbx, `curl -sk -m 10 ${args.join(' ')} ${url}`)
  return r.code === 0 ? r.out : ''
}

async function metric(name) {
  const text = await (await fetch(`${server.url}/metrics`)).text()
  const m = text.match(new RegExp(`^${name.replace(/[{}"]/g, (c) => '\\' + c)} (\\d+)`, 'm'))
  return m ? Number(m[1]) : 0
}

describe('domain rules in network.allowOut', () => {
  let net
  before(async () => { net = await startTestNet() })
  after(() => net?.stop())

  test('allowed names, exact and wildcard, over HTTP and HTTPS; nothing else', async () => {
    const sbx = track(server, await Sandbox.create({ network: { allowOut: ['allowed.test', '*.wild.test'], denyOut: [ALL_TRAFFIC] } }))
    assert.match((await run(sbx, 'cat /etc/resolv.conf')).out, new RegExp(`^nameserver ${addrA}$`, 'm'), 'the sandbox resolves through --dns')
    assert.equal(await fetchIn(sbx, 'http://allowed.test/'), `http ${addrA} allowed.test\n`)
    assert.equal(await fetchIn(sbx, 'https://allowed.test/'), `https ${addrA} allowed.test\n`)
    assert.equal(await fetchIn(sbx, 'http://api.wild.test/'), `http ${addrB} api.wild.test\n`)
    assert.equal(await fetchIn(sbx, 'https://deep.api.wild.test/'), `https ${addrB} deep.api.wild.test\n`)

    const refusedBefore = await metric('sandpit_netproxy_refused_total{reason="not_allowed"}')
    assert.equal(await fetchIn(sbx, 'http://blocked.test/'), '', 'a name outside allowOut')
    assert.equal(await fetchIn(sbx, 'https://wild.test/'), '', 'a wildcard does not hold its apex')
    // The sandbox cannot borrow an allowed name's address for another name...
    assert.equal(await fetchIn(sbx, 'https://blocked.test/', '--resolve', `blocked.test:443:${addrA}`), '', 'curl --resolve to an allowed address')
    // ...nor reach an allowed name's address bare.
    assert.equal(await fetchIn(sbx, `http://${addrA}/`), '', 'the bare address of an allowed name')
    assert.equal(await fetchIn(sbx, `https://${addrB}/`), '', 'the bare address of an allowed wildcard name')
    // A name it was allowed, sent to an address it was not: the proxy
    // dials the name, so the request lands where DNS says.
    assert.equal(await fetchIn(sbx, 'http://allowed.test/', '--resolve', `allowed.test:80:${addrB}`), `http ${addrA} allowed.test\n`)
    assert.ok(await metric('sandpit_netproxy_refused_total{reason="not_allowed"}') >= refusedBefore + 5, 'refusals are counted in /metrics')

    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.network?.allowOut, ['allowed.test', '*.wild.test'])
  })

  test('updateNetwork opens and closes names on a running sandbox', async () => {
    const sbx = track(server, await Sandbox.create({ network: { allowOut: ['allowed.test'], denyOut: [ALL_TRAFFIC] } }))
    assert.equal(await fetchIn(sbx, 'http://allowed.test/'), `http ${addrA} allowed.test\n`)
    assert.equal(await fetchIn(sbx, 'http://blocked.test/'), '')
    await sbx.updateNetwork({ allowOut: ['blocked.test'], denyOut: [ALL_TRAFFIC] })
    assert.equal(await fetchIn(sbx, 'https://blocked.test/'), `https ${addrB} blocked.test\n`, 'opened')
    assert.equal(await fetchIn(sbx, 'http://allowed.test/'), '', 'closed')
    // Without names it is back to addresses only: all out.
    await sbx.updateNetwork({})
    assert.equal(await fetchIn(sbx, `http://${addrB}/`), `http ${addrB} ${addrB}\n`)
    await sbx.updateNetwork({ allowOut: ['allowed.test'], denyOut: [ALL_TRAFFIC] })
    assert.equal(await fetchIn(sbx, `http://${addrB}/`), '', 'names again')
    assert.equal(await fetchIn(sbx, 'http://allowed.test/'), `http ${addrA} allowed.test\n`)
  })

  test('a name that resolves to a private address or the host is refused', async () => {
    const sbx = track(server, await Sandbox.create({ network: { allowOut: ['private.test', 'host.test'], denyOut: [ALL_TRAFFIC] } }))
    const before = await metric('sandpit_netproxy_refused_total{reason="resolved_fixed_range"}')
    assert.equal(await fetchIn(sbx, 'http://private.test/'), '', 'resolves to 10.1.2.3')
    assert.equal(await fetchIn(sbx, 'http://host.test/'), '', 'resolves to the host')
    assert.ok(await metric('sandpit_netproxy_refused_total{reason="resolved_fixed_range"}') >= before + 2)
    // And the audit log has each refusal, with the name and the rule.
    const refusals = await waitFor(() => {
      const out = execFileSync(sandpitBin(), ['audit', '--json', '--data-dir', server.dataDir], { encoding: 'utf8' })
      const found = out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l))
        .filter((e) => e.action === 'network.refused' && e.target === sbx.sandboxId)
      return found.length >= 2 && found
    }, { what: 'network.refused in the audit log' })
    assert.ok(refusals.some((e) => e.result === 'resolved_fixed_range' && /name private\.test: .*10\.1\.2\.3/.test(e.detail)), JSON.stringify(refusals))
  })

  test('a restarted daemon proxies the sandboxes it takes over under their names', async () => {
    const args = ['--dns', addrA, '--warm-pool', 'off']
    const first = await startServer({ name: 'network_domains-restart-1', keepDataDir: true, extraArgs: args })
    let second
    try {
      useSdkEnv(first)
      const sbx = await Sandbox.create({ network: { allowOut: ['allowed.test'], denyOut: [ALL_TRAFFIC] }, timeoutMs: 300_000 })
      assert.equal(await fetchIn(sbx, 'http://allowed.test/'), `http ${addrA} allowed.test\n`)
      await first.stop()
      second = await startServer({ name: 'network_domains-restart-2', keepDataDir: true, dataDir: first.dataDir, apiKey: first.apiKey, extraArgs: args })
      useSdkEnv(second)
      const again = await Sandbox.connect(sbx.sandboxId)
      assert.equal(await fetchIn(again, 'https://allowed.test/'), `https ${addrA} allowed.test\n`, 'allowed after the restart')
      assert.equal(await fetchIn(again, 'http://blocked.test/'), '', 'refused after the restart')
      await again.kill()
    } finally {
      await second?.stop().catch(() => {})
      if (!first.exited) await first.stop().catch(() => {})
      rmSync(first.dataDir, { recursive: true, force: true })
      useSdkEnv(server)
    }
  })

  test('sandpitNetworkLimits bound connections and bandwidth, proxied or not', async () => {
    const create = async (body) => {
      const res = await fetch(`${server.url}/sandboxes`, {
        method: 'POST',
        headers: { 'X-API-Key': server.apiKey, 'Content-Type': 'application/json' },
        body: JSON.stringify({ templateID: 'base', ...body }),
      })
      return { status: res.status, body: await res.json() }
    }
    const over = await create({ sandpitNetworkLimits: { maxConnections: 65 } })
    assert.equal(over.status, 400)
    assert.match(over.body.message, /maxConnections 65 is over this server's maximum of 64/)

    const limits = { maxConnections: 2, egressBytesPerSecond: 256 << 10 }
    const plain = await create({ sandpitNetworkLimits: limits })
    const proxied = await create({ sandpitNetworkLimits: limits, network: { allowOut: ['*.wild.test'], denyOut: [ALL_TRAFFIC] } })
    assert.equal(plain.status, 201, JSON.stringify(plain.body))
    assert.equal(proxied.status, 201, JSON.stringify(proxied.body))
    for (const [how, created, host] of [['plain', plain, addrB], ['proxied', proxied, 'api.wild.test']]) {
      const sbx = track(server, await Sandbox.connect(created.body.sandboxID))
      // 1 MiB each way at 256 KiB/s: well over two seconds. (Only a lower
      // bound: a loaded machine is slower, never faster.)
      const timed = async (cmd) => {
        const r = await run(sbx, cmd)
        const [secs, bytes] = r.out.trim().split(' ').map(Number)
        assert.equal(r.code, 0, `${how}: ${cmd}: ${r.out}`)
        assert.equal(bytes, 1 << 20, `${how}: ${cmd}: ${r.out}`)
        return secs
      }
      const down = await timed(`curl -s -m 60 -o /dev/null -w '%{time_total} %{size_download}' 'http://${host}/big?n=1048576'`)
      assert.ok(down >= 2.5, `${how}: 1 MiB down took ${down} s`)
      const upload = await timed(`head -c 1048576 /dev/zero | curl -s -m 60 -o /dev/null -w '%{time_total} %{size_upload}' --data-binary @- http://${host}/upload`)
      assert.ok(upload >= 2.5, `${how}: 1 MiB up took ${upload} s`)
      // Three connections held open at once: the third is refused. The
      // kernel counts a connection until it is fully closed, so the
      // transfers above may still hold a place for a moment: try again
      // until they are gone (never more than two get through).
      const tries = []
      await waitFor(async () => {
        const three = await run(sbx, `for i in 1 2 3; do curl -s -m 20 -o /dev/null -w '%{http_code}\\n' http://${host}/slow & done; wait`)
        tries.push(three.out.trim().split('\n').sort().join())
        return tries.at(-1) === '000,200,200' || tries.at(-1) === '200,200,200'
      }, { timeoutMs: 60_000, intervalMs: 1000, what: `${how}: two connections of three` }).catch((err) => { throw new Error(`${err.message}: ${tries}`) })
      assert.equal(tries.at(-1), '000,200,200', `${how}: connections, tries ${tries}`)
    }
  })

  test('denyOut takes no names', async () => {
    await assert.rejects(Sandbox.create({ network: { denyOut: ['blocked.test'] } }), /domain names are allowed in allowOut only/)
  })
})
