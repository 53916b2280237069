package files

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzUpload feeds arbitrary multipart bodies, boundaries and path queries
// to POST /files. It must never panic or fail as the agent's fault (500),
// every written path must be clean and absolute, and nothing outside the
// root may change.
func FuzzUpload(f *testing.F) {
	x := newHarness(f, "")
	seed := func(q string, parts ...[2]string) {
		ctype, body := multipartBody(f, parts...)
		_, params, _ := strings.Cut(ctype, "boundary=")
		f.Add(body.Bytes(), params, q)
	}
	seed("", [2]string{"/home/user/a.txt", "a"})
	seed("/tmp/q", [2]string{"ignored", "q"})
	seed("", [2]string{"a", "1"}, [2]string{"b/c", "2"}, [2]string{"~/d", "3"})
	seed("", [2]string{"../../../outside/secret.txt", "pwn"})
	seed("", [2]string{`/tmp/we"ird`, "w"})
	seed("", [2]string{"/home/user", "dir"})
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/tmp/x\"\r\n\r\nx\r\n--b--\r\n"), "b", "")
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=file; filename*=UTF-8''%2Ftmp%2Fy\r\n\r\ny\r\n--b--\r\n"), "b", "")
	f.Add([]byte("--b\r\nContent-Disposition: form-data\r\n\r\n\r\n--b--"), "b", "")
	f.Add([]byte("garbage"), "", "/tmp/g")
	before := snapshotOutside(f, x)
	f.Fuzz(func(t *testing.T, body []byte, boundary, pathQuery string) {
		q := url.Values{}
		if pathQuery != "" {
			q.Set("path", pathQuery)
		}
		req := httptest.NewRequest("POST", "/files?"+q.Encode(), bytes.NewReader(body))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=\""+strings.ReplaceAll(boundary, `"`, "")+"\"")
		rec := httptest.NewRecorder()
		x.h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			var entries []uploadEntry
			if err := json.Unmarshal(rec.Body.Bytes(), &entries); err != nil || len(entries) == 0 {
				t.Fatalf("200 with body %q", rec.Body.Bytes())
			}
			for _, e := range entries {
				if !path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || e.Type != "file" {
					t.Fatalf("entry %+v", e)
				}
			}
		case http.StatusBadRequest, http.StatusNotFound, http.StatusForbidden:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
		if after := snapshotOutside(t, x); after != before {
			t.Fatalf("outside changed:\n%s", after)
		}
	})
}

func snapshotOutside(t testing.TB, x *harness) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(x.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == x.root {
			return filepath.SkipDir
		}
		b.WriteString(p)
		if d.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			b.Write(data)
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}
