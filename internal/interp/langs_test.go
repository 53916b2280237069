package interp

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestJavaScriptState(t *testing.T) {
	e := newTestEnv(t, nil)
	mustOK(t, e.exec(code("let a = 40; const b = 2; function add(x, y) { return x + y }", `"language":"javascript"`)))
	x := e.exec(code("console.log('hi', a); add(a, b)", `"language":"js"`))
	mustOK(t, x)
	if got := x.stdout(); got != "hi 40\n" {
		t.Errorf("stdout %q", got)
	}
	if got := x.mainText(); got != "42" {
		t.Errorf("result %q, lines %v", got, x.lines)
	}
	x = e.exec(code("const r = await Promise.resolve(5); r * 2", `"language":"javascript"`))
	mustOK(t, x)
	if got := x.mainText(); got != "10" {
		t.Errorf("top-level await result %q", got)
	}
	x = e.exec(code("r + 1", `"language":"javascript"`))
	if got := x.mainText(); got != "6" {
		t.Errorf("after top-level await %q, %v", got, x.lines)
	}
	x = e.exec(code("const os = require('node:os'); const { sep } = await import('node:path'); os.platform() + sep", `"language":"javascript"`))
	if got := x.mainText(); got != "linux/" || len(x.of("stderr")) > 0 {
		t.Errorf("require and import(): %q %v", got, x.lines)
	}
	x = e.exec(code("null.foo", `"language":"javascript"`))
	er := x.errorLine()
	if er == nil || er["name"] != "TypeError" || !strings.Contains(str(er["traceback"]), "TypeError") {
		t.Errorf("error line %v", er)
	}
	x = e.exec(code("process.env.SANDPIT_GLOBAL + ' ' + process.env.ONLY_NOW", `"language":"javascript"`, `"env_vars":{"ONLY_NOW":"now"}`))
	if got := x.mainText(); got != "yes now" {
		t.Errorf("env %q", got)
	}
	x = e.exec(code("String(process.env.ONLY_NOW)", `"language":"javascript"`))
	if got := x.mainText(); got != "undefined" {
		t.Errorf("env after execution %q", got)
	}
}

func TestTypeScript(t *testing.T) {
	if _, err := os.Stat("/usr/share/nodejs/typescript"); err != nil {
		t.Skip("needs Debian's node-typescript")
	}
	e := newTestEnv(t, nil)
	x := e.exec(code("interface P { n: number }\nconst p: P = { n: 3 };\np.n * 2", `"language":"typescript"`))
	mustOK(t, x)
	if got := x.mainText(); got != "6" {
		t.Errorf("ts result %q %v", got, x.lines)
	}
	x = e.exec(code("const later: number = await Promise.resolve(p.n + 1);\nlater", `"language":"ts"`))
	if got := x.mainText(); got != "4" {
		t.Errorf("ts top-level await %q %v", got, x.lines)
	}
	x = e.exec(code("import type { Stats } from 'fs'\nimport { sep, join } from 'node:path'\nconst st: Stats | null = null\nsep", `"language":"ts"`))
	if got := x.mainText(); got != "/" {
		t.Errorf("ts imports %q %v", got, x.lines)
	}
	// An import the cell itself does not use is kept for later cells.
	if got := e.exec(code("join('a', 'b')", `"language":"ts"`)).mainText(); got != "a/b" {
		t.Errorf("ts import used in a later cell %q", got)
	}
}

func TestBash(t *testing.T) {
	e := newTestEnv(t, nil)
	mustOK(t, e.exec(code("cd /tmp && FOO=bar; mkdir -p sandpit-bash-test", `"language":"bash"`)))
	x := e.exec(code("echo $FOO $PWD; echo oops >&2", `"language":"bash"`))
	mustOK(t, x)
	if got := x.stdout(); got != "bar /tmp\n" {
		t.Errorf("stdout %q", got)
	}
	if got := x.of("stderr"); len(got) != 1 || str(got[0].m["text"]) != "oops\n" {
		t.Errorf("stderr %v", got)
	}
	x = e.exec(code("echo before; false", `"language":"bash"`))
	if er := x.errorLine(); er == nil || er["value"] != "1" {
		t.Errorf("exit status error: %v", x.lines)
	}
	x = e.exec(code("echo $ONLY_NOW", `"language":"bash"`, `"env_vars":{"ONLY_NOW":"now"}`))
	if got := x.stdout(); got != "now\n" {
		t.Errorf("env_vars: %q", got)
	}
	x = e.exec(code("echo ${ONLY_NOW:-unset}", `"language":"bash"`))
	if got := x.stdout(); got != "unset\n" {
		t.Errorf("env_vars after the execution: %q", got)
	}
	x = e.exec(code("echo \"it's $SANDPIT_GLOBAL\" '\\\\'", `"language":"bash"`))
	if got := x.stdout(); got != "it's yes \\\\\n" {
		t.Errorf("quoting %q", got)
	}
}

func TestContexts(t *testing.T) {
	e := newTestEnv(t, nil)
	dir := t.TempDir()
	py := e.createContext(`{"language":"python","cwd":"` + dir + `"}`)
	js := e.createContext(`{"language":"javascript"}`)
	sh := e.createContext(`{"language":"bash","cwd":"/tmp"}`)

	mustOK(t, e.exec(code("v = 'py'", `"context_id":"`+py+`"`)))
	mustOK(t, e.exec(code("var v = 'js'", `"context_id":"`+js+`"`)))
	mustOK(t, e.exec(code("v=sh", `"context_id":"`+sh+`"`)))

	if got := e.exec(code("import os; (v, os.getcwd())", `"context_id":"`+py+`"`)).mainText(); got != "('py', '"+dir+"')" {
		t.Errorf("python context: %q", got)
	}
	if got := e.exec(code("v", `"context_id":"`+js+`"`)).mainText(); got != "js" {
		t.Errorf("js context: %q", got)
	}
	if got := e.exec(code("echo $v $PWD", `"context_id":"`+sh+`"`)).stdout(); got != "sh /tmp\n" {
		t.Errorf("bash context: %q", got)
	}
	// The default python context does not see the other one's state.
	if er := e.exec(pyCode("v")).errorLine(); er == nil || er["name"] != "NameError" {
		t.Errorf("default context sees v: %v", er)
	}

	st, body := e.do(http.MethodGet, "/contexts", "")
	if st != 200 || !strings.Contains(body, py) || !strings.Contains(body, `"language":"python"`) {
		t.Errorf("list: %d %s", st, body)
	}

	// Restart clears state and keeps the id.
	if st, body := e.do(http.MethodPost, "/contexts/"+py+"/restart", ""); st != 200 {
		t.Fatalf("restart: %d %s", st, body)
	}
	if er := e.exec(code("v", `"context_id":"`+py+`"`)).errorLine(); er == nil || er["name"] != "NameError" {
		t.Errorf("state survived restart: %v", er)
	}
	if got := e.exec(code("import os; os.getcwd()", `"context_id":"`+py+`"`)).mainText(); got != dir {
		t.Errorf("cwd after restart: %q %v", got, e.exec(code("import os; os.getcwd()", `"context_id":"`+py+`"`)).lines)
	}

	// Delete frees it; then 404s.
	if st, _ := e.do(http.MethodDelete, "/contexts/"+js, ""); st != 200 {
		t.Fatalf("delete: %d", st)
	}
	x := e.exec(code("1", `"context_id":"`+js+`"`))
	if x.status != 404 || x.body != "Context "+js+" not found\n" && x.body != "Context "+js+" not found" {
		t.Errorf("after delete: %d %q", x.status, x.body)
	}
	if st, body := e.do(http.MethodDelete, "/contexts/nope", ""); st != 404 || !strings.HasPrefix(body, "Context nope not found") {
		t.Errorf("delete unknown: %d %q", st, body)
	}
	if st, _ := e.do(http.MethodPost, "/contexts/nope/restart", ""); st != 404 {
		t.Errorf("restart unknown: %d", st)
	}
	x = e.exec(code("1", `"context_id":"`+py+`"`, `"language":"python"`))
	if x.status != 400 {
		t.Errorf("context_id and language: %d", x.status)
	}
}

// TestDefaultContexts checks that a new server lists a Python and a
// JavaScript context, as E2B's template starts both, and that executions
// naming only a language run in them.
func TestDefaultContexts(t *testing.T) {
	if _, err := exec.LookPath("/usr/bin/node"); err != nil {
		t.Skip("needs /usr/bin/node")
	}
	e := newTestEnv(t, nil)
	st, body := e.do(http.MethodGet, "/contexts", "")
	if st != http.StatusOK {
		t.Fatalf("GET /contexts: %d %s", st, body)
	}
	var list []contextJSON
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	byLang := map[string]contextJSON{}
	for _, c := range list {
		byLang[c.Language] = c
	}
	if len(list) != 2 || byLang[langPython].ID == "" || byLang[langJavaScript].ID == "" {
		t.Fatalf("default contexts: %s", body)
	}
	for _, c := range list {
		if c.Cwd != e.srv.cfg.Workdir {
			t.Errorf("%s context cwd %q, want %q", c.Language, c.Cwd, e.srv.cfg.Workdir)
		}
	}
	mustOK(t, e.exec(code("globalThis.mark = 7", `"language":"js"`)))
	if got := e.exec(code("mark", `"context_id":"`+byLang[langJavaScript].ID+`"`)).mainText(); got != "7" {
		t.Errorf("the listed javascript context is not the default one: %q", got)
	}
}

// TestJavaScriptModules checks ESM import and export declarations in
// JavaScript cells, rewritten as E2B's JavaScript kernel does: bindings
// persist across cells and an import cell can run again.
func TestJavaScriptModules(t *testing.T) {
	e := newTestEnv(t, nil)
	dir := e.srv.cfg.Workdir
	files := map[string]string{
		"lib.mjs":                       "export const x = 40;\nexport default function two() { return 2 }\n",
		"data.json":                     `{"n": 5}`,
		"node_modules/cjs/package.json": `{"name": "cjs", "main": "index.js"}`,
		"node_modules/cjs/index.js":     "module.exports = { y: 7 };\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	js := func(src string) execution { return e.exec(code(src, `"language":"javascript"`)) }
	cases := []struct{ src, want string }{
		{"import fs from 'fs'\nimport { join as joinPath, sep } from 'node:path'\nimport * as os from 'os'\nimport 'node:util'\n[typeof fs.readFileSync, joinPath('a', 'b'), sep, typeof os.cpus]", "[ 'function', 'a/b', '/', 'function' ]"},
		// The bindings persist and the import cell runs again.
		{"typeof fs.existsSync + ' ' + typeof joinPath", "function function"},
		{"import fs from 'fs'\ntypeof fs.statSync", "function"},
		{"import two, { x } from './lib.mjs'\nx + two()", "42"},
		{"import cjs from 'cjs'\ncjs.y", "7"},
		{"import data from './data.json' with { type: 'json' }\ndata.n", "5"},
		{"import { readFile } from 'node:fs/promises'\nconst s = await readFile('lib.mjs', 'utf8')\ns.length > 0", "true"},
		{"export const z = 3\nexport function f() { return z * 2 }\nf()", "6"},
		{"z + f()", "9"},
		// TypeScript syntax in a JavaScript cell.
		{"import type { Stats } from 'fs'\nlet st: Stats | null = null\nconst n: number = 21\nn * 2", "42"},
	}
	for _, tc := range cases {
		x := js(tc.src)
		mustOK(t, x)
		if got := x.mainText(); got != tc.want {
			t.Errorf("%q: got %q, want %q (%v)", tc.src, got, tc.want, x.lines)
		}
		if s := x.of("stderr"); len(s) > 0 {
			t.Errorf("%q: stderr %v", tc.src, s)
		}
	}
	for _, src := range []string{"let = ;", "import { nope from 'fs'"} {
		if er := js(src).errorLine(); er == nil || er["name"] != "SyntaxError" {
			t.Errorf("%q: error %v, want a SyntaxError", src, er)
		}
	}
	if er := js("import nothing from 'no-such-package'").errorLine(); er == nil || !strings.Contains(str(er["value"]), "no-such-package") {
		t.Errorf("missing package: error %v", er)
	}
}
