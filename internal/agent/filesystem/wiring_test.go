package filesystem_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/agent"
	"github.com/sandpit-dev/sandpit/internal/agent/files"
	"github.com/sandpit-dev/sandpit/internal/agent/filesystem"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

// TestMountedInAgent wires both services into the agent as cmd does and
// drives them as the JS SDK would: files.write (multipart), files.list
// (ListDir), files.read (GET), with and without the access token.
func TestMountedInAgent(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.MkdirAll(filepath.Join(dir, "home/user"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nuser:x:0:0::/home/user:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\n"), 0o644)
	root, err := safepath.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var fsSvc *filesystem.Service
	a := agent.New(agent.Config{
		AccessToken: "tok",
		DefaultUser: "user",
		Mounts: []agent.Mount{func(d agent.Deps) []agent.Route {
			svc, err := filesystem.New(filesystem.Config{Root: root, Settings: d.Settings, Logger: d.Logger})
			if err != nil {
				t.Fatal(err)
			}
			fsSvc = svc
			fh, err := files.New(files.Config{Root: root, Settings: d.Settings, Logger: d.Logger})
			if err != nil {
				t.Fatal(err)
			}
			pattern, h := svc.Handler()
			return []agent.Route{
				{Pattern: pattern, Handler: h},
				{Pattern: files.Pattern, Handler: fh, OwnAuth: true},
			}
		}},
	})
	srv := httptest.NewServer(a)
	defer func() {
		srv.Close()
		fsSvc.Close()
		a.Close()
	}()

	send := func(method, path, ctype string, body io.Reader, token string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, body)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if token != "" {
			req.Header.Set("X-Access-Token", token)
		}
		req.Header.Set("E2b-Sandbox-Id", "sbx")
		req.Header.Set("E2b-Sandbox-Port", "49983")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "/home/user/notes/a.txt")
	fw.Write([]byte("hello"))
	mw.Close()
	if code, body := send("POST", "/files?path=%2Fhome%2Fuser%2Fnotes%2Fa.txt", mw.FormDataContentType(), &buf, "tok"); code != 200 || !strings.Contains(body, `"path":"/home/user/notes/a.txt"`) {
		t.Fatalf("upload: %d %s", code, body)
	}
	if code, _ := send("POST", "/files?path=x", "application/octet-stream", strings.NewReader("x"), ""); code != 401 {
		t.Errorf("upload without token: %d", code)
	}
	code, body := send("POST", "/filesystem.Filesystem/ListDir", "application/json", strings.NewReader(`{"path":"notes","depth":1}`), "tok")
	var list struct{ Entries []map[string]any }
	json.Unmarshal([]byte(body), &list)
	if code != 200 || len(list.Entries) != 1 || list.Entries[0]["path"] != "/home/user/notes/a.txt" {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, _ := send("POST", "/filesystem.Filesystem/ListDir", "application/json", strings.NewReader(`{"path":"notes"}`), ""); code != 401 {
		t.Errorf("list without token: %d", code)
	}
	if code, body := send("GET", "/files?path=notes%2Fa.txt", "", nil, "tok"); code != 200 || body != "hello" {
		t.Errorf("read: %d %s", code, body)
	}
	sig := files.Sign("notes/a.txt", "read", "", "tok", "")
	if code, body := send("GET", "/files?path=notes%2Fa.txt&signature="+strings.ReplaceAll(sig, "+", "%2B"), "", nil, ""); code != 200 || body != "hello" {
		t.Errorf("signed read: %d %s", code, body)
	}
}
