// Issue 15: the console in a real headless Chromium (Debian's `chromium`,
// driven by puppeteer-core; no browser download). Signs in (a wrong key is
// refused), sees a sandbox the SDK made, kills it from the dashboard, runs
// code in the playground (42, a matplotlib PNG, a loop that streams, state
// kept between runs), uploads a file and reads it back through the SDK, and
// types into the terminal. Every page must log no JavaScript error and ask
// nothing of another origin. Screenshots of each page go to
// .work/screenshots/ (CONSOLE_SCREENSHOTS overrides).
//
// CHROMIUM names the browser (default /usr/bin/chromium); without one the
// file is skipped, saying so. As root, Chromium runs in a network namespace
// of its own (chromium-netns.sh says why), reaching the daemon through a
// Unix socket this file serves.
import assert from 'node:assert/strict'
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { AuthenticationError, Sandbox, Template } from 'e2b'
import { newApiKey, repoRoot, track, useServer, waitFor } from './harness.mjs'

const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium'
let noBrowser = null
try {
  accessSync(chromium, constants.X_OK)
} catch {
  noBrowser = `no Chromium at ${chromium} (apt-get install chromium, or set CHROMIUM)`
}

const shots = resolve(process.env.CONSOLE_SCREENSHOTS ?? join(repoRoot, 'test', 'compat', '.work', 'screenshots'))
const server = useServer()

describe('console', { skip: noBrowser ?? false }, () => {
  /** @type {import('puppeteer-core').Browser} */
  let browser
  /** @type {import('puppeteer-core').Page} */
  let page
  /** Console errors, page exceptions and failed loads, as they come. */
  let problems = []
  /** Requests the page made to anything but the daemon's own origin. */
  const foreign = []

  /** Fails on any problem not matched by one of the expected patterns, then forgets them. */
  function assertClean(expected = []) {
    const left = problems.filter((p) => !expected.some((re) => re.test(p)))
    problems = []
    assert.deepEqual(left, [], 'the page logged errors')
    assert.deepEqual(foreign, [], 'the page made requests to other origins')
  }

  async function shot(name) {
    // Toasts of earlier steps would hide part of the page.
    await page.evaluate(() => document.querySelector('.toasts')?.replaceChildren())
    await page.screenshot({ path: join(shots, `${name}.png`) })
  }

  /** Clicks what sel finds at that moment: the dashboard redraws its rows every few seconds. */
  async function clickNow(sel, timeout = 30_000) {
    await page.waitForFunction((s) => {
      const el = document.querySelector(s)
      if (!el) return false
      el.click()
      return true
    }, { timeout }, sel)
  }

  /** Replaces the editor's code and runs it with Ctrl+Enter; returns the run's cell. */
  async function runCode(code) {
    const before = await page.$$eval('#pg-output .cell', (c) => c.length)
    await page.click('#pg-editor .cm-content')
    await page.keyboard.down('Control')
    await page.keyboard.press('KeyA')
    await page.keyboard.up('Control')
    await page.keyboard.press('Backspace')
    await page.keyboard.type(code)
    await page.keyboard.down('Control')
    await page.keyboard.press('Enter')
    await page.keyboard.up('Control')
    await page.waitForFunction((n) => document.querySelectorAll('#pg-output .cell').length > n, {}, before)
    return `#pg-output .cell:nth-of-type(${before + 1})`
  }

  async function cellDone(sel, timeout = 60_000) {
    await page.waitForFunction((s) => /(done|failed) in/.test(document.querySelector(s)?.textContent ?? ''), { timeout }, sel)
    return page.$eval(sel, (c) => c.textContent)
  }

  let bridge = null
  let bridgeDir = ''

  /** Serves a Unix socket that passes each connection on to the daemon. */
  async function startBridge() {
    bridgeDir = mkdtempSync(join(tmpdir(), 'sandpit-console-'))
    const sock = join(bridgeDir, 'bridge.sock')
    const { port } = new URL(server.url)
    bridge = createServer((c) => {
      const out = connect(Number(port), '127.0.0.1')
      c.pipe(out).pipe(c)
      const end = () => (c.destroy(), out.destroy())
      for (const s of [c, out]) s.on('error', end).on('close', end)
    })
    await new Promise((r) => bridge.listen(sock, r))
    return { sock, port }
  }

  before(async () => {
    mkdirSync(shots, { recursive: true })
    const { default: puppeteer } = await import('puppeteer-core')
    // root (as in CI) cannot use Chromium's own sandbox.
    const args = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
    if (process.getuid?.() === 0) {
      const { sock, port } = await startBridge()
      browser = await puppeteer.launch({
        executablePath: join(repoRoot, 'test', 'compat', 'chromium-netns.sh'),
        pipe: true,
        headless: true,
        args,
        env: { ...process.env, SANDPIT_BRIDGE_SOCK: sock, SANDPIT_BRIDGE_PORT: port, SANDPIT_BRIDGE_CHROMIUM: chromium },
      })
    } else {
      browser = await puppeteer.launch({ executablePath: chromium, headless: true, args })
    }
    page = await browser.newPage()
    await page.setViewport({ width: 1280, height: 800 })
    page.setDefaultTimeout(30_000)
    const origin = new URL(server.url).origin
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()} (${m.location()?.url ?? ''})`)
    })
    page.on('pageerror', (e) => problems.push(`exception: ${e.message}`))
    page.on('request', (r) => {
      const u = r.url()
      if (u.startsWith('data:') || u.startsWith('blob:') || u === 'about:blank' || u === 'about:srcdoc') return
      if (new URL(u).origin !== origin) foreign.push(u)
    })
    page.on('dialog', (d) => d.accept())
  })

  after(async () => {
    await browser?.close()
    bridge?.close()
    if (bridgeDir) rmSync(bridgeDir, { recursive: true, force: true })
  })

  test('a wrong key is refused', async () => {
    await page.goto(server.url + '/', { waitUntil: 'load' })
    await page.waitForSelector('#api-key')
    await shot('signin')
    await page.type('#api-key', newApiKey())
    await page.keyboard.press('Enter')
    await page.waitForFunction(() => /not valid/.test(document.querySelector('#signin-error')?.textContent ?? ''))
    assert.equal(await page.$('#content'), null, 'signed in with a wrong key')
    // The refused key's 401 is the one error Chromium logs here.
    assertClean([/401/])
  })

  test('sign in with the key', async () => {
    await page.$eval('#api-key', (el) => (el.value = ''))
    await page.type('#api-key', server.apiKey)
    await page.keyboard.press('Enter')
    await page.waitForSelector('#content h1')
    assert.equal(await page.$eval('#content h1', (e) => e.textContent), 'Sandboxes')
    assert.equal(await page.evaluate(() => sessionStorage.getItem('sandpit.apiKey')), server.apiKey)
    assert.equal(await page.evaluate(() => localStorage.length), 0, 'the key went to localStorage')
    assertClean()
  })

  test('a sandbox the SDK made appears; extend, pause, resume, then kill from the dashboard and the API has it gone', async () => {
    const sbx = track(server, await Sandbox.create({ metadata: { purpose: 'console-test' } }))
    const row = `tr[data-sandbox="${sbx.sandboxId}"]`
    await page.waitForSelector(row, { timeout: 15_000 })
    const text = await page.$eval(row, (r) => r.textContent)
    assert.match(text, /purpose=console-test/)
    assert.match(text, /running/)
    // The metrics endpoint fills CPU and memory in.
    await page.waitForFunction((s) => /% of/.test(document.querySelector(s)?.textContent ?? ''), { timeout: 15_000 }, row)
    await shot('dashboard')

    const before = Date.parse((await Sandbox.getInfo(sbx.sandboxId)).endAt)
    await clickNow(`${row} [data-action=extend]`)
    await waitFor(async () => Date.parse((await Sandbox.getInfo(sbx.sandboxId)).endAt) > before + 200_000, { what: 'a timeout five minutes later' })
    await clickNow(`${row} [data-action=pause]`)
    await page.waitForSelector(`${row} [data-action=resume]`, { timeout: 60_000 })
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')
    await clickNow(`${row} [data-action=resume]`)
    await page.waitForSelector(`${row} [data-action=pause]`, { timeout: 60_000 })
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running')

    await clickNow(`${row} [data-action=kill]`)
    await page.waitForSelector(row, { hidden: true, timeout: 15_000 })
    const live = await Sandbox.list().nextItems()
    assert.ok(!live.some((s) => s.sandboxId === sbx.sandboxId), 'the killed sandbox is still listed')
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId))
    assertClean()
  })

  let playgroundSandbox = ''
  test('playground: print(6*7) prints 42', async () => {
    await page.goto(server.url + '/#/playground', { waitUntil: 'load' })
    await page.waitForSelector('#pg-editor .cm-content')
    const cell = await runCode('print(6*7)')
    const out = await cellDone(cell, 120_000)
    assert.match(await page.$eval(`${cell} .stream.stdout`, (e) => e.textContent), /^42\n?$/, out)
    playgroundSandbox = await page.$eval('#pg-sandbox a.mono', (a) => a.textContent)
    track(server, { sandboxId: playgroundSandbox, kill: () => Sandbox.kill(playgroundSandbox) })
    // The link reopens this very sandbox.
    assert.ok(page.url().includes(`sandbox=${playgroundSandbox}`), page.url())
    assertClean()
  })

  test('playground: state carries over, a new context starts afresh', async () => {
    await cellDone(await runCode('y = 7'))
    let cell = await runCode('print(y * 6)')
    await cellDone(cell)
    assert.match(await page.$eval(`${cell} .stream.stdout`, (e) => e.textContent), /42/)
    await page.click('#pg-new-context')
    await page.waitForFunction(() => /New python context/.test(document.querySelector('#pg-output')?.textContent ?? ''))
    cell = await runCode('print(y)')
    await cellDone(cell)
    const err = await page.$eval(`${cell} .run-error`, (e) => e.textContent)
    assert.match(err, /NameError/)
    assert.match(err, /Traceback|line 1/, 'no traceback shown')
    assertClean()
  })

  test('playground: a matplotlib plot shows as an image', async () => {
    const cell = await runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()')
    await cellDone(cell, 120_000)
    const img = await page.waitForSelector(`${cell} img.result-img`)
    const { src, w } = await img.evaluate((i) => ({ src: i.src.slice(0, 22), w: i.naturalWidth }))
    assert.equal(src, 'data:image/png;base64,')
    assert.ok(w > 100, `image ${w} px wide`)
    await page.$eval(cell, (c) => c.scrollIntoView({ block: 'start' }))
    await shot('playground')
    assertClean()
  })

  test('playground: a long loop streams its lines before it ends', async () => {
    const cell = await runCode('import time\nfor i in range(6): print(f"line {i}", flush=True); time.sleep(0.7)')
    const early = await page.waitForFunction(
      (s) => {
        const c = document.querySelector(s)
        const out = c?.querySelector('.stream.stdout')?.textContent ?? ''
        return out.includes('line 1') ? { out, done: /(done|failed) in/.test(c.textContent) } : false
      },
      { timeout: 60_000, polling: 50 },
      cell,
    )
    const seen = await early.jsonValue()
    assert.equal(seen.done, false, `the run had ended when line 1 showed: ${seen.out}`)
    assert.ok(!seen.out.includes('line 5'), `all lines came at once: ${seen.out}`)
    await cellDone(cell)
    assert.match(await page.$eval(`${cell} .stream.stdout`, (e) => e.textContent), /line 5/)
    assertClean()
  })

  test('playground: Bash, JavaScript, TypeScript and R too', async () => {
    for (const [lang, code] of [
      ['bash', 'echo $((6*7))'],
      ['javascript', 'console.log(6*7)'],
      ['typescript', 'const answer: number = 6 * 7\nconsole.log(answer)'],
      ['r', 'cat(paste0(6*7, "\\n"))'],
    ]) {
      await page.select('#pg-language', lang)
      assert.ok(page.url().includes(`lang=${lang}`), page.url())
      const cell = await runCode(code)
      await cellDone(cell, 120_000)
      assert.match(await page.$eval(`${cell} .stream.stdout`, (e) => e.textContent), /^42\n?$/, `${lang}: ${await page.$eval(cell, (c) => c.textContent)}`)
    }
    await page.select('#pg-language', 'python')
    assertClean()
  })

  test('upload a file in the playground; the SDK reads it', async () => {
    const local = join(shots, 'upload-me.txt')
    const content = `uploaded from the console ${Date.now()}\n`
    writeFileSync(local, content)
    const input = await page.waitForSelector('input[data-testid=upload-input]')
    await input.uploadFile(local)
    await page.waitForSelector('.files [data-name="upload-me.txt"]', { timeout: 15_000 })
    const sbx = await Sandbox.connect(playgroundSandbox)
    assert.equal(await sbx.files.read('/home/user/upload-me.txt'), content)
    assertClean()
  })

  test('the terminal echoes a command', async () => {
    await page.goto(`${server.url}/#/sandboxes/${playgroundSandbox}?tab=terminal`, { waitUntil: 'load' })
    await page.waitForSelector('[data-testid=terminal][data-pid]')
    await page.click('[data-testid=terminal]')
    await page.keyboard.type('echo sandpit-$((6*7))\n')
    await page.waitForFunction(() => /sandpit-42/.test(document.querySelector('[data-testid=terminal] .xterm-rows')?.textContent ?? ''), { timeout: 20_000 }).catch(async (err) => {
      await shot('terminal-failed')
      const screen = await page.$eval('[data-testid=terminal] .xterm-rows', (t) => t.textContent).catch(() => '(no rows)')
      throw new Error(`${err.message}; the terminal shows: ${screen}`)
    })
    await shot('terminal')
    await page.click('[data-tab=files]')
    await page.waitForSelector('.files [data-name="upload-me.txt"]')
    await shot('sandbox-files')
    await page.click('[data-tab=logs]')
    await page.waitForSelector('.build-log span')
    const sbx = await Sandbox.connect(playgroundSandbox)
    const sleeper = await sbx.commands.run('sleep 300', { background: true })
    await page.click('[data-tab=processes]')
    await page.waitForFunction(() => /sleep 300/.test(document.querySelector('.tab-panel table')?.textContent ?? ''))
    await shot('sandbox-processes')
    await page.click(`tr[data-pid="${sleeper.pid}"] button`)
    await page.waitForFunction((pid) => !document.querySelector(`tr[data-pid="${pid}"]`), {}, sleeper.pid)
    assert.ok(!(await sbx.commands.list()).some((p) => p.pid === sleeper.pid), 'the killed process is still listed')
    assertClean()
  })

  test("a template build's log is followed live", async () => {
    const tpl = Template()
      .fromTemplate('base')
      .runCmd('echo build-step-one')
      .runCmd('sleep 4 && echo build-step-two')
    const info = await Template.buildInBackground(tpl, `console-${Date.now()}`)
    // The list shows it building (the API names no build while one runs);
    // the build's own page, as the CLI and SDK name it, follows its log.
    await page.goto(`${server.url}/#/templates`, { waitUntil: 'load' })
    await page.waitForFunction((id) => /building/.test(document.querySelector(`tr[data-template="${id}"]`)?.textContent ?? ''), {}, info.templateId)
    await page.goto(`${server.url}/#/templates/${info.templateId}/builds/${info.buildId}`, { waitUntil: 'load' })
    const early = await page.waitForFunction(
      () => {
        const log = document.querySelector('.build-log')?.textContent ?? ''
        return log.includes('build-step-one') ? { log, status: document.querySelector('#content .badge')?.textContent } : false
      },
      { timeout: 120_000, polling: 100 },
    )
    const seen = await early.jsonValue()
    assert.equal(seen.status, 'building', `the build had ended when its first step's output showed: ${seen.log}`)
    await page.waitForFunction(() => document.querySelector('#content .badge')?.textContent === 'ready', { timeout: 120_000 })
    assert.match(await page.$eval('.build-log', (e) => e.textContent), /build-step-two/)
    await shot('template-build')
    // The list links the finished build.
    await page.goto(`${server.url}/#/templates`, { waitUntil: 'load' })
    await page.waitForSelector(`a[href="#/templates/${info.templateId}/builds/${info.buildId}"]`)
    assertClean()
  })

  test('start a sandbox from the dashboard, snapshot it from its page, delete the snapshot from the list', async () => {
    // Started from the dashboard, which then opens its page.
    await page.goto(`${server.url}/#/sandboxes`, { waitUntil: 'load' })
    await page.waitForSelector('#new-template option[value=base]')
    await page.select('#new-template', 'base')
    await page.click('#new-sandbox')
    await page.waitForFunction(() => /^#\/sandboxes\/[^/?]+/.test(window.location.hash), { timeout: 60_000 })
    const id = decodeURIComponent(new URL(page.url()).hash.split('/')[2].split('?')[0])
    track(server, { sandboxId: id, kill: () => Sandbox.kill(id) })
    const info = await Sandbox.getInfo(id)
    assert.equal(info.metadata['sandpit.console'], 'dashboard')
    await (await page.waitForSelector('[data-action=snapshot]')).click()
    const toastText = await (await page.waitForFunction(() => document.querySelector('.toast')?.textContent.match(/Snapshot (\S+) taken/)?.[1], { timeout: 60_000 })).jsonValue()
    const listed = async () => (await (await fetch(`${server.url}/snapshots`, { headers: { 'X-API-Key': server.apiKey } })).json()).map((s) => s.snapshotID)
    assert.ok((await listed()).includes(toastText), `${toastText} not in ${await listed()}`)
    await page.goto(`${server.url}/#/snapshots`, { waitUntil: 'load' })
    const row = `tr[data-snapshot="${toastText}"]`
    await page.waitForSelector(row)
    await shot('snapshots')
    await page.click(`${row} [data-action=delete]`)
    await page.waitForSelector(row, { hidden: true })
    assert.ok(!(await listed()).includes(toastText), 'the deleted snapshot is still listed')
    assertClean()
  })

  test('templates, snapshots and audit pages render', async () => {
    for (const [hash, name, heading] of [
      ['#/templates', 'templates', 'Templates'],
      ['#/audit', 'audit', 'Audit log'],
    ]) {
      await page.goto(`${server.url}/${hash}`, { waitUntil: 'load' })
      await page.waitForFunction((h) => document.querySelector('#content h1')?.textContent === h && !document.querySelector('#content p.muted:only-of-type')?.textContent.startsWith('Loading'), {}, heading)
      await page.waitForFunction(() => !/Loading/.test(document.querySelector('#content')?.textContent ?? ''))
      await shot(name)
    }
    assert.match(await page.$eval('#content', (e) => e.textContent), /sandbox\.create|admin key/)
    assertClean()
  })

  test('keys: made in the console, used by the SDK, revoked in the console, then refused; the team page shows the team', async () => {
    await page.goto(`${server.url}/#/keys`, { waitUntil: 'load' })
    await page.waitForSelector('#new-key-name')
    await page.waitForFunction(() => !/Loading/.test(document.querySelector('#content')?.textContent ?? ''))
    await page.type('#new-key-name', 'console-made')
    await page.click('#new-key')
    const secret = await (await page.waitForSelector('#new-key-value')).evaluate((e) => e.textContent)
    assert.match(secret, /^e2b_[0-9a-f]{40}$/)
    assert.match(await page.$eval('#new-key-secret', (e) => e.textContent), /shown only this once/)
    await page.click('#copy-key')
    await page.waitForFunction(() => /Key copied|Ctrl\+C/.test(document.querySelector('.toasts')?.textContent ?? ''))

    // The official SDK works with the key the console showed.
    const live = await Sandbox.list({ apiKey: secret }).nextItems()
    assert.ok(Array.isArray(live))
    const listed = await (await fetch(`${server.url}/sandpit/v1/keys`, { headers: { 'X-API-Key': server.apiKey } })).json()
    const made = listed.find((k) => k.name === 'console-made')
    assert.ok(made, JSON.stringify(listed))
    assert.ok(!JSON.stringify(listed).includes(secret.slice(12)), 'the key list shows the secret')
    const row = `tr[data-key="${made.id}"]`
    await page.waitForSelector(row)
    assert.match(await page.$eval(row, (r) => r.textContent), /console-made.*active/)
    await shot('keys')

    // Revoked (the confirmation is accepted), the SDK is refused.
    await page.click(`${row} [data-action=revoke]`)
    await page.waitForFunction((s) => /revoked/.test(document.querySelector(s)?.textContent ?? ''), {}, row)
    assert.equal(await page.$(`${row} [data-action=revoke]`), null, 'a revoked key can be revoked again')
    await assert.rejects(Sandbox.list({ apiKey: secret }).nextItems(), AuthenticationError)
    const refused = await fetch(`${server.url}/v2/sandboxes`, { headers: { 'X-API-Key': secret } })
    assert.equal(refused.status, 401)

    await page.goto(`${server.url}/#/team`, { waitUntil: 'load' })
    await page.waitForSelector('[data-team="default"]')
    assert.match(await page.$eval('#content h1', (e) => e.textContent), /^Teams?$/)
    await shot('team')
    assertClean()
  })

  test('keys: signed in with a stored key, it is marked as yours; revoking it signs you out', async () => {
    await page.goto(`${server.url}/#/keys`, { waitUntil: 'load' })
    await page.waitForSelector('#new-key-name')
    await page.type('#new-key-name', 'console-self')
    await page.click('#new-key')
    const secret = await (await page.waitForSelector('#new-key-value')).evaluate((e) => e.textContent)
    await page.evaluate((k) => sessionStorage.setItem('sandpit.apiKey', k), secret)
    await page.reload({ waitUntil: 'load' })
    const mine = await page.waitForFunction(() => [...document.querySelectorAll('tr[data-key]')].find((r) => /this key/.test(r.textContent))?.dataset.key)
    const listed = await (await fetch(`${server.url}/sandpit/v1/keys`, { headers: { 'X-API-Key': server.apiKey } })).json()
    const selfID = listed.find((k) => k.name === 'console-self')?.id
    assert.equal(await mine.jsonValue(), selfID)
    await page.goto(`${server.url}/#/team`, { waitUntil: 'load' })
    await page.waitForSelector('#team-facts[data-team="default"]')
    assert.equal(await page.$eval('#content h1', (e) => e.textContent), 'Team')

    await page.goto(`${server.url}/#/keys`, { waitUntil: 'load' })
    await clickNow(`tr[data-key="${selfID}"] button[data-action=revoke]`)
    await page.waitForFunction(() => /stopped working/.test(document.querySelector('#signin-error')?.textContent ?? ''))
    assert.equal(await page.evaluate(() => sessionStorage.getItem('sandpit.apiKey')), null)
    await page.type('#api-key', server.apiKey)
    await page.keyboard.press('Enter')
    await page.waitForSelector('#content h1')
    // The revoked key's 401 is logged once by Chromium.
    assertClean([/401/])
  })

  test('dark theme from the system setting', async () => {
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }])
    await page.goto(`${server.url}/#/playground?sandbox=${playgroundSandbox}`, { waitUntil: 'load' })
    await page.waitForSelector('.files [data-name="upload-me.txt"]')
    await cellDone(await runCode('import pandas as pd\npd.DataFrame({"x": [1, 2], "y": [3, 4]})'))
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor)
    const [r, g, b] = bg.match(/\d+/g).map(Number)
    assert.ok(r + g + b < 150, `the background is ${bg} in dark mode`)
    await shot('playground-dark')
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }])
    assertClean()
  })

  test('a run that cannot start says why', async () => {
    await page.goto(`${server.url}/#/playground?template=no-such-template`, { waitUntil: 'load' })
    await page.waitForSelector('#pg-editor .cm-content')
    const cell = await runCode('print(1)')
    await page.waitForSelector(`${cell} .run-error`)
    const text = await page.$eval(`${cell} .run-error`, (e) => e.textContent)
    assert.match(await page.$eval(cell, (e) => e.textContent), /did not run/)
    await shot('playground-error')
    assert.match(text, /starting a sandbox from no-such-template/)
    assert.match(text, /no-such-template/)
    assert.match(await page.$eval('#pg-sandbox', (e) => e.textContent), /No sandbox yet/)
    // Chromium logs the API's refusal as a failed load.
    assertClean([/status of 4\d\d/])
  })

  test('usable at a phone width', async () => {
    await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true })
    await page.goto(`${server.url}/#/playground?sandbox=${playgroundSandbox}`, { waitUntil: 'load' })
    await page.waitForSelector('.files [data-name="upload-me.txt"]')
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than the phone`)
    await shot('playground-phone')
    await page.goto(`${server.url}/#/sandboxes`, { waitUntil: 'load' })
    await page.waitForSelector(`tr[data-sandbox="${playgroundSandbox}"]`)
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert.ok(wide <= 0, `the dashboard is ${wide} px wider than the phone`)
    await shot('dashboard-phone')
    await page.goto(`${server.url}/#/keys`, { waitUntil: 'load' })
    await page.waitForSelector('tr[data-key]')
    const keysWide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert.ok(keysWide <= 0, `the keys page is ${keysWide} px wider than the phone`)
    await shot('keys-phone')
    assertClean()
  })
})
