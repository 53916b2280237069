package restapi_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// uploadLink asks for the upload link of hash with key and returns
// whether the server has the files and the link's path and query.
func (e *env) uploadLink(t *testing.T, key, hash string) (bool, string) {
	t.Helper()
	r := e.doKey(t, "GET", "/templates/tpl1/files/"+hash, "", map[string]string{"X-API-KEY": key})
	if r.status != http.StatusCreated {
		t.Fatalf("upload link of %s: %d %s", hash, r.status, r.body)
	}
	var out struct {
		Present bool   `json:"present"`
		URL     string `json:"url"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(out.URL)
	if err != nil {
		t.Fatal(err)
	}
	return out.Present, u.RequestURI()
}

// startCopy requests a build of "app" with key whose one step copies the
// files named hash, and returns the build's id and the response.
func (e *env) startCopy(t *testing.T, key, hash string) (string, response) {
	t.Helper()
	return e.startCopyOf(t, key, "app", hash)
}

// startCopyOf is startCopy for the template called name.
func (e *env) startCopyOf(t *testing.T, key, name, hash string) (string, response) {
	t.Helper()
	hk := map[string]string{"X-API-KEY": key}
	r := e.doKey(t, "POST", "/v3/templates", `{"name": "`+name+`"}`, hk)
	if r.status != http.StatusAccepted {
		t.Fatalf("requesting a build: %d %s", r.status, r.body)
	}
	bid, _ := r.json(t)["buildID"].(string)
	tid, _ := r.json(t)["templateID"].(string)
	body := `{"fromTemplate": "base", "steps": [{"type": "COPY", "args": ["f", "/f"], "filesHash": "` + hash + `"}]}`
	return bid, e.doKey(t, "POST", "/v2/templates/"+tid+"/builds/"+bid, body, hk)
}

// builtDigest returns the digest of the files build bid copies.
func (e *env) builtDigest(t *testing.T, bid string) string {
	t.Helper()
	b, err := e.st.GetBuild(t.Context(), bid)
	if err != nil {
		t.Fatal(err)
	}
	var req struct {
		Spec struct {
			Steps []template.Step `json:"steps"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(b.Request, &req); err != nil || len(req.Spec.Steps) != 1 {
		t.Fatalf("build %s request %s: %v", bid, b.Request, err)
	}
	return req.Spec.Steps[0].Digest
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func contentDigest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

// TestTemplateUploadsAreHashedAndNeverReplaced: the server hashes what
// arrives; a body that does not match its Content-Digest is refused; a
// second upload under a hash never replaces the first with other content;
// one team's uploads are not another's; builds copy by the digest of what
// was uploaded.
func TestTemplateUploadsAreHashedAndNeverReplaced(t *testing.T) {
	e, dir := newTeamsEnv(t, nil, store.Limits{}, store.Limits{})
	key2 := keyB
	first, other := "the first archive", "other content"
	hash := sha("the client's name for its files") // E2B's SDK hashes its own way
	present, link := e.uploadLink(t, e.key, hash)
	if present {
		t.Fatal("files present before any upload")
	}
	wantError(t, e.doKey(t, "PUT", link, first, map[string]string{"Content-Digest": contentDigest("something else")}), 400, hash)
	if present, _ := e.uploadLink(t, e.key, hash); present {
		t.Fatal("a refused upload was kept")
	}
	wantError(t, e.doKey(t, "PUT", link, first, map[string]string{"Content-Digest": "sha-256=:bm90IGEgaGFzaA==:"}), 400, "Content-Digest")
	if r := e.doKey(t, "PUT", link, first, map[string]string{"Content-Digest": contentDigest(first)}); r.status != http.StatusOK {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	if present, _ := e.uploadLink(t, e.key, hash); !present {
		t.Fatal("files missing after the upload")
	}
	// The same again is fine; other content under the same hash is not.
	if r := e.doKey(t, "PUT", link, first, nil); r.status != http.StatusOK {
		t.Fatalf("the same upload again: %d %s", r.status, r.body)
	}
	wantError(t, e.doKey(t, "PUT", link, other, nil), 409, hash)
	if blobs, _ := os.ReadDir(filepath.Join(dir, "uploads", "blobs")); len(blobs) != 1 {
		t.Fatalf("%d archives stored, want only the first: a refused upload leaves nothing", len(blobs))
	}
	bid, r := e.startCopy(t, e.key, hash)
	if r.status != http.StatusAccepted {
		t.Fatalf("starting the build: %d %s", r.status, r.body)
	}
	if d := e.builtDigest(t, bid); d != sha(first) {
		t.Fatalf("the build copies %s, want the first upload's %s", d, sha(first))
	}

	// Another team does not see the first team's upload, and its own
	// under the same hash is its own; another key of the first team sees
	// the team's.
	if present, _ := e.uploadLink(t, keyA2, hash); !present {
		t.Fatal("another key of the team does not see the team's upload")
	}
	present, link2 := e.uploadLink(t, key2, hash)
	if present {
		t.Fatal("another team's upload is present for this one")
	}
	if _, r := e.startCopyOf(t, key2, "beta-app", hash); r.status != 400 {
		t.Fatalf("a build copying files its team never uploaded: %d %s", r.status, r.body)
	}
	if r := e.doKey(t, "PUT", link2, other, nil); r.status != http.StatusOK {
		t.Fatalf("upload by the second team: %d %s", r.status, r.body)
	}
	bid2, r := e.startCopyOf(t, key2, "beta-app", hash)
	if r.status != http.StatusAccepted {
		t.Fatalf("starting the second team's build: %d %s", r.status, r.body)
	}
	if d := e.builtDigest(t, bid2); d != sha(other) {
		t.Fatalf("the second team's build copies %s, want %s", d, sha(other))
	}
	if present, _ := e.uploadLink(t, e.key, hash); !present {
		t.Fatal("the first team's upload went")
	}
	// Each team's names are in its own directory.
	for _, team := range []string{teamAID, teamBID} {
		if _, err := os.Stat(filepath.Join(dir, "uploads", "names", team, hash)); err != nil {
			t.Errorf("the upload of team %s: %v", team, err)
		}
	}

	// A link is for the team it was given to: its owner and its storage
	// limit cannot be changed.
	u, _ := url.Parse(link)
	for i, forge := range []string{teamBID, "1048576"} {
		tok := strings.Split(u.Query().Get("token"), ".")
		tok[i+1] = forge
		forged := u.Path + "?token=" + url.QueryEscape(strings.Join(tok, "."))
		wantError(t, e.doKey(t, "PUT", forged, other, nil), 401, "upload link")
	}
}

// TestTemplateUploadQuota: each team's uploads are bounded in bytes and
// in number, with an error naming the limit; uploads no build refers to are
// collected once old, those a build refers to stay.
func TestTemplateUploadQuota(t *testing.T) {
	e, dir := newTemplateEnvWith(t, func(c *template.RegistryConfig) {
		c.UploadQuota = template.UploadQuota{Bytes: 100, Files: 2}
	})
	put := func(hash, body string) response {
		t.Helper()
		_, link := e.uploadLink(t, e.key, hash)
		return e.doKey(t, "PUT", link, body, nil)
	}
	h1, h2, h3 := sha("one"), sha("two"), sha("three")
	if r := put(h1, strings.Repeat("a", 60)); r.status != http.StatusOK {
		t.Fatalf("first upload: %d %s", r.status, r.body)
	}
	wantError(t, put(h2, strings.Repeat("b", 60)), 429, "limit of 100 bytes")
	if present, _ := e.uploadLink(t, e.key, h2); present {
		t.Fatal("an upload over the quota was kept")
	}
	if r := put(h2, strings.Repeat("b", 10)); r.status != http.StatusOK {
		t.Fatalf("second upload: %d %s", r.status, r.body)
	}
	wantError(t, put(h3, "c"), 429, "limit of 2 files")

	// h1 is used by a build, h2 by none; once both are old, h2 goes to
	// make room and h1 stays.
	if _, r := e.startCopy(t, e.key, h1); r.status != http.StatusAccepted {
		t.Fatalf("starting a build: %d %s", r.status, r.body)
	}
	// An upload kept by the client's hash alone, as before digests.
	legacy := filepath.Join(dir, "uploads", sha("legacy"))
	if err := os.WriteFile(legacy, []byte("old layout"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-3 * time.Hour)
	err := filepath.WalkDir(filepath.Join(dir, "uploads"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			err = os.Chtimes(p, old, old)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := put(h3, "c"); r.status != http.StatusOK {
		t.Fatalf("upload once unused uploads can be collected: %d %s", r.status, r.body)
	}
	for _, c := range []struct {
		hash string
		want bool
	}{{h1, true}, {h2, false}, {h3, true}} {
		if present, _ := e.uploadLink(t, e.key, c.hash); present != c.want {
			t.Errorf("upload %s present = %v, want %v", c.hash[:8], present, c.want)
		}
	}
	if _, err := os.Stat(legacy); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an upload of the old layout was kept: %v", err)
	}
	blobs, _ := os.ReadDir(filepath.Join(dir, "uploads", "blobs"))
	if len(blobs) != 2 {
		t.Errorf("%d archives kept, want 2 (h1's and h3's)", len(blobs))
	}
}
