// sandpit's JavaScript/TypeScript kernel. The Go side (node.go) sends one
// JSON request per line on stdin and reads one JSON event per line from
// fd 3. Cells run in this process's global context, so top-level
// declarations (var, let, const, function, class) persist between cells.
//
// A cell is compiled as a script first. Only when that fails does the kernel
// rewrite it, as E2B's JavaScript kernel (ijavascript) does: import
// declarations become awaited import() calls bound with var (so the names
// persist and the cell can run again), TypeScript syntax is stripped, and a
// cell with a top-level await runs in an async wrapper whose declarations
// are hoisted to the global scope. The last expression's value is the
// result.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const util = require('node:util');
const vm = require('node:vm');
const { createRequire, isBuiltin } = require('node:module');
const { pathToFileURL } = require('node:url');

const EVENTS_FD = 3;
// SANDPIT_TYPESCRIPT is the typescript package's directory, when there is
// one; SANDPIT_LANGUAGE=typescript strips types from every cell, otherwise
// only from a cell that is not valid JavaScript.
const tsDir = process.env.SANDPIT_TYPESCRIPT || '';
const alwaysTypeScript = process.env.SANDPIT_LANGUAGE === 'typescript';
delete process.env.SANDPIT_TYPESCRIPT;
delete process.env.SANDPIT_LANGUAGE;

let ts; // the typescript module: undefined until needed, null if unavailable
function typescript() {
  if (ts === undefined) {
    ts = null;
    if (tsDir) ts = require(tsDir);
  }
  return ts;
}
if (alwaysTypeScript) typescript(); // a TypeScript kernel without it fails to start

// Node's own REPL rewriter for top-level await (hoists declarations and
// returns the last expression's value), and the parser it uses. They are
// internal, so guard their use.
let processTopLevelAwait = null;
try {
  ({ processTopLevelAwait } = require('internal/repl/await'));
} catch {
  processTopLevelAwait = null;
}
let acorn = null;
try {
  acorn = require('internal/deps/acorn/acorn/dist/acorn');
} catch {
  acorn = null;
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

// stripTypes turns TypeScript into JavaScript. Imports stay as written
// (the next cell may use a name this one does not), and module syntax is
// left for rewriteModuleSyntax.
function stripTypes(ts, code) {
  const out = ts.transpileModule(code, {
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      sourceMap: false,
      isolatedModules: true,
      preserveValueImports: true,
      importsNotUsedAsValues: ts.ImportsNotUsedAsValues.Preserve,
    },
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

// importModule is what rewritten import declarations call: import() with
// the specifier resolved from the working directory, as require() in a
// cell resolves it.
async function importModule(specifier, options) {
  let target = specifier;
  if (typeof specifier === 'string' && !isBuiltin(specifier) && !/^[a-z][a-z0-9+.-]*:/i.test(specifier)) {
    try {
      target = pathToFileURL(globalThis.require.resolve(specifier)).href;
    } catch {
      // An ESM-only package or a file require() cannot resolve: let
      // import() try, from the working directory for a path.
      if (specifier.startsWith('.') || specifier.startsWith('/')) {
        target = pathToFileURL(path.resolve(process.cwd(), specifier)).href;
      }
    }
  }
  return options === undefined ? import(target) : import(target, options);
}
Object.defineProperty(globalThis, '__sandpit_import', { value: importModule });

function parseModule(code) {
  if (!acorn) return null;
  try {
    return acorn.parse(code, { ecmaVersion: 'latest', sourceType: 'module', allowAwaitOutsideFunction: true, allowHashBang: true });
  } catch {
    return null;
  }
}

// rewriteModuleSyntax replaces the top-level import and export
// declarations of a parsed cell with statements a script can run.
function rewriteModuleSyntax(code, ast) {
  const edits = [];
  const src = (n) => code.slice(n.start, n.end);
  const load = (n) => {
    const attrs = n.attributes && n.attributes.length > 0 ? `, { with: { ${n.attributes.map(src).join(', ')} } }` : '';
    return `await __sandpit_import(${src(n.source)}${attrs})`;
  };
  for (const n of ast.body) {
    switch (n.type) {
      case 'ImportDeclaration': {
        const ns = n.specifiers.find((x) => x.type === 'ImportNamespaceSpecifier');
        const props = n.specifiers
          .filter((x) => x.type !== 'ImportNamespaceSpecifier')
          .map((x) => {
            if (x.type === 'ImportDefaultSpecifier') return `default: ${x.local.name}`;
            const key = x.imported.type === 'Identifier' ? x.imported.name : src(x.imported);
            return `${key}: ${x.local.name}`;
          });
        let text;
        if (n.specifiers.length === 0) {
          text = `${load(n)};`;
        } else if (ns) {
          text = `var ${ns.local.name} = ${load(n)};`;
          if (props.length > 0) text += ` var { ${props.join(', ')} } = ${ns.local.name};`;
        } else {
          text = `var { ${props.join(', ')} } = ${load(n)};`;
        }
        edits.push([n.start, n.end, text]);
        break;
      }
      case 'ExportNamedDeclaration':
        // A cell exports to nobody: keep what it declares.
        if (n.declaration) edits.push([n.start, n.end, src(n.declaration)]);
        else if (n.source) edits.push([n.start, n.end, `${load(n)};`]);
        else edits.push([n.start, n.end, ';']);
        break;
      case 'ExportDefaultDeclaration': {
        const d = n.declaration;
        const named = (d.type === 'FunctionDeclaration' || d.type === 'ClassDeclaration') && d.id;
        edits.push([n.start, n.end, named ? src(d) : `(${src(d)});`]);
        break;
      }
      case 'ExportAllDeclaration':
        edits.push([n.start, n.end, `${load(n)};`]);
        break;
    }
  }
  for (let i = edits.length - 1; i >= 0; i--) {
    const [start, end, text] = edits[i];
    code = code.slice(0, start) + text + code.slice(end);
  }
  return code;
}

// asScript rewrites a cell that did not compile as a script: module syntax
// and, where the typescript package is installed, TypeScript syntax. It
// returns the code unchanged when it cannot help.
function asScript(code) {
  let ast = parseModule(code);
  if (!ast && !alwaysTypeScript) {
    try {
      const t = typescript();
      const stripped = t ? stripTypes(t, code) : null;
      ast = stripped === null ? null : parseModule(stripped);
      if (ast) code = stripped;
    } catch {
      ast = null;
    }
  }
  return ast ? rewriteModuleSyntax(code, ast) : code;
}

// compile compiles a cell as a script, or as a script wrapped for its
// top-level await.
function compile(code, filename) {
  try {
    return { script: new vm.Script(code, { filename, ...scriptOptions }), wrapped: false };
  } catch (e) {
    const rewritten = e instanceof SyntaxError && processTopLevelAwait ? processTopLevelAwait(code) : null;
    if (!rewritten) throw e;
    return { script: new vm.Script(rewritten, { filename, ...scriptOptions }), wrapped: true };
  }
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
  if (alwaysTypeScript) code = stripTypes(ts, code);
  let compiled;
  try {
    compiled = compile(code, filename);
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    const again = asScript(code);
    if (again === code) throw e;
    compiled = compile(again, filename);
  }
  const { script, wrapped } = compiled;
  if (wrapped) {
    const out = await interruptible(script.runInThisContext({ breakOnSigint: true }));
    return out ? out.value : undefined;
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
