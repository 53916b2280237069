package files

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/agent/settings"
)

// TestRelativePathsOfAnotherUser: the default workdir is the default
// user's; a request (a signed URL included) for another user resolves a
// relative path against that user's home, as on E2B.
func TestRelativePathsOfAnotherUser(t *testing.T) {
	const token = "tok"
	x := newHarness(t, token)
	wd := "/home/user"
	x.set.Apply(settings.Update{DefaultWorkdir: &wd})
	os.Mkdir(filepath.Join(x.root, "root"), 0o700)
	q := url.Values{"path": {"hello.txt"}, "username": {"root"}, "signature": {Sign("hello.txt", "write", "root", token, "")}}
	resp, body := x.postRaw(t, q, strings.NewReader("for root"), nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"path":"/root/hello.txt"`) {
		t.Fatalf("signed upload for root: %d %s", resp.StatusCode, body)
	}
	if x.read(t, "root/hello.txt") != "for root" {
		t.Error("content")
	}
	q = url.Values{"path": {"hello.txt"}, "username": {"root"}, "signature": {Sign("hello.txt", "read", "root", token, "")}}
	if resp, body := x.get(t, q, nil); resp.StatusCode != 200 || string(body) != "for root" {
		t.Errorf("signed download for root: %d %s", resp.StatusCode, body)
	}
	// The default user, named or not, still starts from the workdir.
	for _, user := range []string{"", "user"} {
		q := url.Values{"path": {"mine.txt"}}
		if user != "" {
			q.Set("username", user)
		}
		resp, body := x.postRaw(t, q, strings.NewReader("mine"), map[string]string{"X-Access-Token": token})
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"path":"/home/user/mine.txt"`) {
			t.Errorf("upload as %q: %d %s", user, resp.StatusCode, body)
		}
	}
}
