package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeTemplateAPI answers the calls of `sandpit template build` as a
// server whose builds succeed at once, and records the PATCHes; patch is
// the status it answers them with.
type fakeTemplateAPI struct {
	patch int

	mu      sync.Mutex
	patches []string // "PATH BODY"
}

func (f *fakeTemplateAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/templates/aliases/"):
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"code": 404, "message": "not found"}`)
	case r.Method == "POST" && r.URL.Path == "/v3/templates":
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"templateID": "tid", "buildID": "bid"}`)
	case r.Method == "POST" && r.URL.Path == "/v2/templates/tid/builds/bid":
		w.WriteHeader(http.StatusAccepted)
	case r.Method == "GET" && r.URL.Path == "/templates/tid/builds/bid/status":
		io.WriteString(w, `{"status": "ready", "logEntries": []}`)
	case r.Method == "PATCH":
		f.mu.Lock()
		f.patches = append(f.patches, r.URL.Path+" "+string(body))
		f.mu.Unlock()
		w.WriteHeader(f.patch)
		if f.patch != http.StatusOK {
			json.NewEncoder(w).Encode(map[string]any{"code": f.patch, "message": "only admin keys may make a template public or private"})
			return
		}
		io.WriteString(w, `{"names": ["python"]}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"code": 404, "message": "no such endpoint"}`)
	}
}

// TestTemplateBuildReadyMadeIsPublic: `sandpit template build NAME` makes
// a ready-made template public after its build and says so; with a key
// that may not, it warns and the template stays private; a template of
// the user's own Dockerfile, or a ready-made one under another name, is
// not made public.
func TestTemplateBuildReadyMadeIsPublic(t *testing.T) {
	df := filepath.Join(t.TempDir(), "Dockerfile")
	if err := os.WriteFile(df, []byte("FROM base\nENV A=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args   []string
		patch  int
		public bool
		out    string
	}{
		{[]string{"python"}, http.StatusOK, true, "==> python is public: every team can start it"},
		{[]string{"python"}, http.StatusForbidden, true, "warning: python stays private to this key's team: only admin keys"},
		{[]string{"python", "--name", "mine"}, http.StatusOK, false, "==> mine is ready"},
		{[]string{"-f", df, "--name", "own"}, http.StatusOK, false, "==> own is ready"},
	} {
		api := &fakeTemplateAPI{patch: c.patch}
		srv := httptest.NewServer(api)
		t.Setenv("SANDPIT_URL", srv.URL)
		t.Setenv("SANDPIT_API_KEY", "e2b_"+strings.Repeat("cd", 20))
		var out, errOut strings.Builder
		err := templateBuild(t.Context(), c.args, &out, &errOut)
		srv.Close()
		if err != nil {
			t.Fatalf("template build %v: %v\n%s%s", c.args, err, out.String(), errOut.String())
		}
		if !strings.Contains(out.String(), c.out) {
			t.Errorf("template build %v said:\n%s\nwant %q", c.args, out.String(), c.out)
		}
		want := []string(nil)
		if c.public {
			want = []string{`/v2/templates/tid {"public":true}`}
		}
		if strings.Join(api.patches, "\n") != strings.Join(want, "\n") {
			t.Errorf("template build %v patched %q, want %q", c.args, api.patches, want)
		}
		if !c.public && strings.Contains(out.String(), "public") {
			t.Errorf("template build %v speaks of public:\n%s", c.args, out.String())
		}
	}
}
