// sandpit's JavaScript/TypeScript kernel. The Go side (node.go) sends one
// JSON request per line on stdin and reads one JSON event per line from
// fd 3. Cells run in this process's global context, so top-level
// declarations (var, let, const, function, class) persist between cells.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const util = require('node:util');
const vm = require('node:vm');
const { createRequire } = require('node:module');

const EVENTS_FD = 3;
const tsDir = process.env.SANDPIT_TYPESCRIPT || '';
delete process.env.SANDPIT_TYPESCRIPT;

let ts = null;
if (tsDir) {
  ts = require(tsDir);
}

// Node's own REPL rewriter for top-level await (hoists declarations and
// returns the last expression's value). It is internal, so guard its use.
let processTopLevelAwait = null;
try {
  ({ processTopLevelAwait } = require('internal/repl/await'));
} catch {
  processTopLevelAwait = null;
}

function send(ev) {
  const buf = Buffer.from(JSON.stringify(ev) + '\n');
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(EVENTS_FD, buf, off);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
    }
  }
}

// The id of the running request; output written between cells goes to the
// last one and the Go side drops it.
let current = '';

function capture(stream, type) {
  stream.write = function (chunk, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString(encoding || 'utf8');
    send({ id: current, type, text });
    if (cb) process.nextTick(cb);
    return true;
  };
}
capture(process.stdout, 'stdout');
capture(process.stderr, 'stderr');

function setRequire() {
  globalThis.require = createRequire(path.join(process.cwd(), '__sandpit_cell__.js'));
}
setRequire();
globalThis.module = { exports: {} };
globalThis.exports = globalThis.module.exports;

let count = 0;

// Dynamic import() in cells, where this Node has the loader for it (it is
// flagged experimental: keep its warning out of cells' stderr).
const scriptOptions = {};
if (vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER) {
  scriptOptions.importModuleDynamically = vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;
}
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name === 'ExperimentalWarning') return;
  process.stderr.write(`${w.name}: ${w.message}\n`);
});

function transpile(code) {
  if (!ts) return code;
  const out = ts.transpileModule(code, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.None, sourceMap: false },
    reportDiagnostics: true,
  });
  const diags = (out.diagnostics || []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (diags.length > 0) {
    const msg = ts.flattenDiagnosticMessageText(diags[0].messageText, '\n');
    const err = new SyntaxError(msg);
    err.stack = 'SyntaxError: ' + msg;
    throw err;
  }
  return out.outputText;
}

// interrupted rejects the awaited value of the running cell on SIGINT, so
// that a cell waiting on a promise that never settles can be interrupted.
let interrupt = null;
function interruptible(value) {
  return Promise.race([
    value,
    new Promise((_, reject) => {
      interrupt = () => reject(new Error('Script execution interrupted.'));
    }),
  ]).finally(() => {
    interrupt = null;
  });
}

async function evaluate(code, filename) {
  code = transpile(code);
  let script;
  try {
    script = new vm.Script(code, { filename, ...scriptOptions });
  } catch (e) {
    // A top-level await: rewrite as Node's REPL does.
    const rewritten = e instanceof SyntaxError && processTopLevelAwait ? processTopLevelAwait(code) : null;
    if (!rewritten) throw e;
    const wrapped = await interruptible(new vm.Script(rewritten, { filename, ...scriptOptions }).runInThisContext({ breakOnSigint: true }));
    return wrapped ? wrapped.value : undefined;
  }
  let value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
  if (value && typeof value.then === 'function') {
    value = await interruptible(value);
  }
  return value;
}

function errorEvent(e) {
  if (e instanceof Error || (e && typeof e === 'object' && 'stack' in e)) {
    return { type: 'error', name: String(e.name || 'Error'), value: String(e.message ?? ''), traceback: String(e.stack || '') };
  }
  return { type: 'error', name: 'Error', value: util.inspect(e), traceback: '' };
}

async function handle(req) {
  current = req.id;
  try {
    switch (req.op) {
      case 'exec': {
        count++;
        send({ id: req.id, type: 'count', count });
        try {
          const value = await evaluate(req.code, `cell-${count}`);
          if (value !== undefined) {
            send({ id: req.id, type: 'result', text: typeof value === 'string' ? value : util.inspect(value, { depth: 4 }) });
          }
        } catch (e) {
          send({ id: req.id, ...errorEvent(e) });
        }
        break;
      }
      case 'env':
        Object.assign(process.env, req.set || {});
        for (const k of req.unset || []) delete process.env[k];
        break;
      case 'chdir':
        process.chdir(req.dir);
        setRequire();
        break;
    }
  } catch (e) {
    send({ id: req.id, ...errorEvent(e) });
  }
  send({ id: req.id, type: 'done' });
}

// Requests are handled one at a time, in order.
let queue = Promise.resolve();
const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on('line', (l) => {
  if (!l) return;
  const req = JSON.parse(l);
  queue = queue.then(() => handle(req));
});
rl.on('close', () => process.exit(0));

// A rejected promise or an exception outside a cell must not kill the
// kernel: report it on stderr.
process.on('unhandledRejection', (e) => {
  send({ id: current, type: 'stderr', text: 'Unhandled rejection: ' + (e && e.stack ? e.stack : util.inspect(e)) + '\n' });
});
process.on('uncaughtException', (e) => {
  send({ id: current, type: 'stderr', text: 'Uncaught exception: ' + (e && e.stack ? e.stack : util.inspect(e)) + '\n' });
});
// SIGINT interrupts a synchronous cell (breakOnSigint) or an awaiting one.
process.on('SIGINT', () => {
  if (interrupt) interrupt();
});

send({ id: '', type: 'ready' });
