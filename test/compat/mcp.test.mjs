// The official MCP TypeScript SDK's client (@modelcontextprotocol/sdk,
// pinned in package.json) against sandpit's MCP server, over both of its
// transports: stdio (spawning `sandpit mcp`, which finds the daemon through
// SANDPIT_URL/SANDPIT_API_KEY) and streamable HTTP at the daemon's /mcp.
// The same scenario runs over each: list the tools, create a sandbox, run
// Python, write and read a file (as a tool and as a resource), see a failing
// command and bad arguments reported as tool errors, use the session's own
// sandbox and see it go when the session ends, kill a sandbox.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { describe, test } from 'node:test'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { Sandbox } from 'e2b'
import { sandpitBin, track, useServer, waitFor } from './harness.mjs'

const server = useServer()

const TOOLS = ['create_sandbox', 'kill_sandbox', 'list_files', 'read_file', 'run_code', 'run_command', 'write_file']

/** The text of a tool result's text content. */
function text(res) {
  return res.content
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('\n')
}

/** The session sandboxes alive on the server (the MCP server labels them). */
async function sessionSandboxes() {
  return await Sandbox.list({ query: { metadata: { mcp_session: 'true' }, state: ['running'] } }).nextItems()
}

async function stdioClient() {
  const transport = new StdioClientTransport({
    command: sandpitBin(),
    args: ['mcp'],
    env: { PATH: process.env.PATH, SANDPIT_URL: server.url, SANDPIT_API_KEY: server.apiKey },
    stderr: 'pipe',
  })
  let stderr = ''
  transport.stderr?.on('data', (d) => (stderr += d))
  const client = new Client({ name: 'compat-stdio', version: '1.0.0' })
  await client.connect(transport)
  client.log = () => stderr
  return client
}

async function httpClient(key = server.apiKey) {
  const transport = new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  })
  const client = new Client({ name: 'compat-http', version: '1.0.0' })
  await client.connect(transport)
  client.log = () => ''
  // An HTTP session ends when the client says so (DELETE), not when it
  // stops sending.
  const close = client.close.bind(client)
  client.close = async () => {
    await transport.terminateSession()
    await close()
  }
  return client
}

for (const [name, connect] of [
  ['stdio', stdioClient],
  ['http', () => httpClient()],
]) {
  describe(`MCP over ${name}`, () => {
    test('the tools are listed with schemas and descriptions', async () => {
      const client = await connect()
      try {
        const { tools } = await client.listTools()
        assert.deepEqual(tools.map((t) => t.name).sort(), TOOLS)
        for (const t of tools) {
          assert.equal(t.inputSchema.type, 'object', t.name)
          assert.ok(t.description.length > 20, `${t.name} has a description`)
        }
        const run = tools.find((t) => t.name === 'run_command')
        assert.deepEqual(run.inputSchema.required, ['command'])
        assert.match(run.inputSchema.properties.command.description, /bash/)
        const { resourceTemplates } = await client.listResourceTemplates()
        assert.equal(resourceTemplates[0].uriTemplate, 'sandbox://{sandbox_id}/{+path}')
      } finally {
        await client.close()
      }
    })

    test('create, run code, files, a failing command, kill', { timeout: 120_000 }, async () => {
      const client = await connect()
      let id
      try {
        const created = await client.callTool({ name: 'create_sandbox', arguments: { timeout_seconds: 300, metadata: { test: name } } })
        assert.ok(!created.isError, text(created))
        id = created.structuredContent.sandbox_id
        assert.match(id, /^\w+$/)
        track(server, { sandboxId: id, kill: () => Sandbox.kill(id) })
        assert.equal((await Sandbox.getInfo(id)).metadata.test, name)

        const ran = await client.callTool({ name: 'run_code', arguments: { sandbox_id: id, code: 'print(6*7)' } })
        assert.ok(!ran.isError, text(ran))
        assert.match(text(ran), /\b42\b/)

        const chart = await client.callTool({
          name: 'run_code',
          arguments: { sandbox_id: id, code: 'import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()' },
        })
        assert.ok(!chart.isError, text(chart))
        const image = chart.content.find((c) => c.type === 'image')
        assert.ok(image, `a chart comes back as image content: ${JSON.stringify(chart.content).slice(0, 300)}`)
        assert.equal(image.mimeType, 'image/png')
        assert.equal(Buffer.from(image.data, 'base64').subarray(1, 4).toString(), 'PNG')

        const raised = await client.callTool({ name: 'run_code', arguments: { sandbox_id: id, code: 'def f():\n    return 1/0\nf()' } })
        assert.equal(raised.isError, true)
        assert.match(text(raised), /ZeroDivisionError/)
        assert.match(text(raised), /traceback:[\s\S]*line 2/)
        assert.doesNotMatch(text(raised), /\x1b\[/, 'no terminal colour codes')

        const wrote = await client.callTool({
          name: 'write_file',
          arguments: { sandbox_id: id, path: '/home/user/notes/hello.txt', content: 'hello from MCP\n' },
        })
        assert.ok(!wrote.isError, text(wrote))
        const read = await client.callTool({ name: 'read_file', arguments: { sandbox_id: id, path: '/home/user/notes/hello.txt' } })
        assert.equal(text(read), 'hello from MCP\n')
        const listed = await client.callTool({ name: 'list_files', arguments: { sandbox_id: id, path: '/home/user/notes' } })
        assert.match(text(listed), /file\s+15\s+\/home\/user\/notes\/hello\.txt/)
        const resource = await client.readResource({ uri: `sandbox://${id}/home/user/notes/hello.txt` })
        assert.equal(resource.contents[0].text, 'hello from MCP\n')
        const missing = await client.callTool({ name: 'read_file', arguments: { sandbox_id: id, path: 'nope.txt' } })
        assert.equal(missing.isError, true)
        assert.match(text(missing), /no such file/)

        const failed = await client.callTool({
          name: 'run_command',
          arguments: { sandbox_id: id, command: 'echo partial; echo something broke >&2; exit 3' },
        })
        assert.equal(failed.isError, true)
        assert.match(text(failed), /exited with code 3/)
        assert.match(text(failed), /something broke/)
        assert.match(text(failed), /partial/)

        const ok = await client.callTool({ name: 'run_command', arguments: { sandbox_id: id, command: 'echo "$GREETING from $PWD"', cwd: '/tmp', env: { GREETING: 'hi' } } })
        assert.ok(!ok.isError, text(ok))
        assert.match(text(ok), /hi from \/tmp/)

        const long = await client.callTool({ name: 'run_command', arguments: { sandbox_id: id, command: 'head -c 100000 /dev/zero | tr "\\0" x' } })
        assert.match(text(long), /\[\.\.\. \d+ bytes truncated \.\.\.\]/)
        assert.ok(text(long).length < 40_000, 'long output is cut')

        const killed = await client.callTool({ name: 'kill_sandbox', arguments: { sandbox_id: id } })
        assert.ok(!killed.isError, text(killed))
        await assert.rejects(Sandbox.getInfo(id))
        const after = await client.callTool({ name: 'run_code', arguments: { sandbox_id: id, code: 'print(1)' } })
        assert.equal(after.isError, true)
        assert.match(text(after), /no sandbox/)
      } catch (err) {
        err.message += `\n--- sandpit mcp stderr ---\n${client.log()}`
        throw err
      } finally {
        await client.close()
      }
    })

    test('bad arguments are tool errors that say what to fix', async () => {
      const client = await connect()
      try {
        const empty = await client.callTool({ name: 'run_code', arguments: { code: '   ' } })
        assert.equal(empty.isError, true)
        assert.match(text(empty), /code is empty/)
        const missing = await client.callTool({ name: 'run_command', arguments: {} })
        assert.equal(missing.isError, true)
        assert.match(text(missing), /command/)
        const timeout = await client.callTool({ name: 'run_command', arguments: { command: 'true', timeout_seconds: 999999 } })
        assert.equal(timeout.isError, true)
        assert.match(text(timeout), /timeout_seconds must be between 1 and 1800/)
        const nosuch = await client.callTool({ name: 'read_file', arguments: { sandbox_id: 'doesnotexist', path: 'x' } })
        assert.equal(nosuch.isError, true)
        assert.match(text(nosuch), /no sandbox "doesnotexist".*create_sandbox/)
        // None of these needed the session's sandbox.
        assert.deepEqual(await sessionSandboxes(), [])
      } finally {
        await client.close()
      }
    })

    test("calls without sandbox_id share the session's sandbox, which ends with the session", { timeout: 120_000 }, async () => {
      const client = await connect()
      let sid
      try {
        const first = await client.callTool({ name: 'run_code', arguments: { code: 'x = 6 * 7\nprint("set")' } })
        assert.ok(!first.isError, text(first))
        const second = await client.callTool({ name: 'run_code', arguments: { code: 'print(x)' } })
        assert.match(text(second), /\b42\b/)
        const other = await client.callTool({ name: 'run_code', arguments: { code: 'print(x)', context: 'other' } })
        assert.equal(other.isError, true, 'a named context has its own variables')
        assert.match(text(other), /NameError/)
        const again = await client.callTool({ name: 'run_code', arguments: { code: 'y = 1\nprint(x)', context: 'other' } })
        assert.match(text(again), /NameError/)
        const shared = await client.callTool({ name: 'run_code', arguments: { code: 'print(x)' } })
        assert.match(text(shared), /\b42\b/)
        const wrote = await client.callTool({ name: 'write_file', arguments: { path: 'data.csv', content: 'a,b\n1,2\n' } })
        assert.ok(!wrote.isError, text(wrote))
        const cmd = await client.callTool({ name: 'run_command', arguments: { command: 'wc -l < data.csv' } })
        assert.match(text(cmd), /\b2\b/)
        const live = await sessionSandboxes()
        assert.equal(live.length, 1)
        sid = live[0].sandboxId
        track(server, { sandboxId: sid, kill: () => Sandbox.kill(sid) })
      } finally {
        await client.close()
      }
      await waitFor(async () => (await sessionSandboxes()).length === 0, { timeoutMs: 20_000, what: 'the session sandbox to be killed' })
    })
  })
}

describe('MCP over HTTP: the API key', () => {
  const initialize = (headers) =>
    fetch(`${server.url}/mcp`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
      }),
    })

  test('no key or a wrong one is refused', async () => {
    for (const headers of [{}, { Authorization: 'Bearer e2b_' + '0'.repeat(40) }, { 'X-API-Key': 'nope' }]) {
      const res = await initialize(headers)
      await res.arrayBuffer()
      assert.equal(res.status, 401, JSON.stringify(headers))
    }
  })

  test("a session acts for its key's team, and only that key may use it", { timeout: 60_000 }, async () => {
    const cli = (...args) => execFileSync(sandpitBin(), [...args, '--data-dir', server.dataDir], { encoding: 'utf8' })
    cli('teams', 'create', 'mcp-other')
    const otherKey = cli('keys', 'create', 'mcp-other-key', '--team', 'mcp-other').trim().split('\n').pop()

    const mine = await httpClient()
    const other = await httpClient(otherKey)
    try {
      const created = await mine.callTool({ name: 'create_sandbox', arguments: { timeout_seconds: 120 } })
      const id = created.structuredContent.sandbox_id
      track(server, { sandboxId: id, kill: () => Sandbox.kill(id) })
      const reached = await other.callTool({ name: 'run_command', arguments: { sandbox_id: id, command: 'echo in' } })
      assert.equal(reached.isError, true, "the other team's session reached the sandbox")
      assert.match(text(reached), /no sandbox/)
      const killed = await other.callTool({ name: 'kill_sandbox', arguments: { sandbox_id: id } })
      assert.equal(killed.isError, true)
      assert.ok(await Sandbox.getInfo(id), 'the sandbox lives on')

      // The other key on this session's ID is refused.
      const res = await fetch(`${server.url}/mcp`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Accept: 'application/json, text/event-stream',
          Authorization: `Bearer ${otherKey}`,
          'Mcp-Session-Id': mine.transport.sessionId,
          'Mcp-Protocol-Version': mine.transport.protocolVersion ?? '2025-06-18',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'kill_sandbox', arguments: { sandbox_id: id } } }),
      })
      const body = await res.text()
      assert.equal(res.status, 403, body)
      assert.ok(await Sandbox.getInfo(id), 'the sandbox lives on')
      await mine.callTool({ name: 'kill_sandbox', arguments: { sandbox_id: id } })
    } finally {
      await mine.close()
      await other.close()
    }
  })

  test('X-API-Key works as well as a bearer token', async () => {
    const res = await initialize({ 'X-API-Key': server.apiKey })
    const body = await res.text()
    assert.equal(res.status, 200, body)
    assert.match(body, /"serverInfo"/)
    const sid = res.headers.get('mcp-session-id')
    assert.ok(sid)
    const del = await fetch(`${server.url}/mcp`, { method: 'DELETE', headers: { 'X-API-Key': server.apiKey, 'Mcp-Session-Id': sid } })
    await del.arrayBuffer()
  })
})
