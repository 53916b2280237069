package files

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/agent/settings"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

type harness struct {
	dir     string // parent of root and outside
	root    string
	srv     *httptest.Server
	h       *Handler
	set     *settings.Settings
	userUID int
	now     time.Time
	// served counts the requests the handler has finished.
	served atomic.Int64
}

func newHarness(t testing.TB, token string) *harness {
	t.Helper()
	dir := t.TempDir()
	x := &harness{dir: dir, root: filepath.Join(dir, "root"), userUID: 1000, now: time.Unix(1_800_000_000, 0)}
	if os.Getuid() != 0 {
		x.userUID = os.Getuid()
	}
	for _, d := range []string{"root/etc", "root/home/user", "root/tmp", "outside"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	u := strconv.Itoa(x.userUID)
	os.WriteFile(filepath.Join(x.root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:"+u+":"+u+"::/home/user:/bin/bash\n"), 0o644)
	os.WriteFile(filepath.Join(x.root, "etc/group"), []byte("root:x:0:\nuser:x:"+u+":\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "outside/secret.txt"), []byte("SECRET"), 0o644)
	// As in a sandbox: the user owns its home, /tmp is for everyone.
	os.Chmod(filepath.Join(x.root, "tmp"), 0o1777)
	os.Chown(filepath.Join(x.root, "home/user"), x.userUID, x.userUID)
	root, err := safepath.Open(x.root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	x.set = settings.New(settings.Values{AccessToken: token})
	x.h, err = New(Config{Root: root, Settings: x.set, Now: func() time.Time { return x.now }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(Pattern, x.h)
	x.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer x.served.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(x.srv.Close)
	return x
}

func (x *harness) url(q url.Values) string { return x.srv.URL + "/files?" + q.Encode() }

func do(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := plainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func (x *harness) get(t testing.TB, q url.Values, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", x.url(q), nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func (x *harness) postRaw(t testing.TB, q url.Values, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", x.url(q), body)
	req.Header.Set("Content-Type", "application/octet-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

// multipartBody builds a body like fetch's FormData: one "file" part per
// (filename, content) pair, filename carrying the full path.
func multipartBody(t testing.TB, parts ...[2]string) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		hdr := textproto.MIMEHeader{}
		hdr.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, strings.ReplaceAll(p[0], `"`, "%22")))
		hdr.Set("Content-Type", "application/octet-stream")
		w, err := mw.CreatePart(hdr)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(p[1]))
	}
	mw.Close()
	return mw.FormDataContentType(), &buf
}

func (x *harness) postMultipart(t testing.TB, q url.Values, hdr map[string]string, parts ...[2]string) (*http.Response, []byte) {
	t.Helper()
	ctype, body := multipartBody(t, parts...)
	req, _ := http.NewRequest("POST", x.url(q), body)
	req.Header.Set("Content-Type", ctype)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func (x *harness) read(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(x.root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func owner(t testing.TB, p string) int {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return int(st.Sys().(*syscall.Stat_t).Uid)
}

func TestUploadOctetStream(t *testing.T) {
	x := newHarness(t, "")
	resp, body := x.postRaw(t, url.Values{"path": {"dir/a.txt"}}, strings.NewReader("hello"), nil)
	if resp.StatusCode != 200 || string(body) != `[{"path":"/home/user/dir/a.txt","name":"a.txt","type":"file"}]`+"\n" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if x.read(t, "home/user/dir/a.txt") != "hello" {
		t.Fatal("content")
	}
	if os.Getuid() == 0 {
		for _, p := range []string{"home/user/dir", "home/user/dir/a.txt"} {
			if uid := owner(t, filepath.Join(x.root, p)); uid != x.userUID {
				t.Errorf("%s owned by %d", p, uid)
			}
		}
		resp, _ = x.postRaw(t, url.Values{"path": {"/tmp/r.txt"}, "username": {"root"}}, strings.NewReader("r"), nil)
		if resp.StatusCode != 200 || owner(t, filepath.Join(x.root, "tmp/r.txt")) != 0 {
			t.Errorf("root upload: %d", resp.StatusCode)
		}
	}
	// Overwrite replaces the whole file.
	x.postRaw(t, url.Values{"path": {"~/dir/a.txt"}}, strings.NewReader("hi"), nil)
	if x.read(t, "home/user/dir/a.txt") != "hi" {
		t.Fatal("overwrite")
	}
	// gzip body.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(strings.Repeat("z", 100000)))
	zw.Close()
	resp, body = x.postRaw(t, url.Values{"path": {"/tmp/z"}}, &gz, map[string]string{"Content-Encoding": "gzip"})
	if resp.StatusCode != 200 || x.read(t, "tmp/z") != strings.Repeat("z", 100000) {
		t.Fatalf("gzip upload %d %s", resp.StatusCode, body)
	}
	resp, body = x.postRaw(t, url.Values{"path": {"/tmp/bad"}}, strings.NewReader("not gzip"), map[string]string{"Content-Encoding": "gzip"})
	if resp.StatusCode != 400 {
		t.Errorf("bad gzip: %d %s", resp.StatusCode, body)
	}
	resp, body = x.postRaw(t, nil, strings.NewReader("x"), nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"code":400`) {
		t.Errorf("no path: %d %s", resp.StatusCode, body)
	}
	resp, body = x.postRaw(t, url.Values{"path": {"x"}}, strings.NewReader("x"), map[string]string{"Content-Type": "text/plain"})
	if resp.StatusCode != 400 {
		t.Errorf("bad content type: %d %s", resp.StatusCode, body)
	}
	resp, body = x.postRaw(t, url.Values{"path": {"/home/user"}}, strings.NewReader("x"), nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "is a directory") {
		t.Errorf("upload onto a directory: %d %s", resp.StatusCode, body)
	}
	resp, body = x.postRaw(t, url.Values{"path": {"x"}, "username": {"ghost"}}, strings.NewReader("x"), nil)
	if resp.StatusCode != 401 || !strings.Contains(string(body), "error looking up user 'ghost'") {
		t.Errorf("unknown user: %d %s", resp.StatusCode, body)
	}
}

func TestUploadMultipart(t *testing.T) {
	x := newHarness(t, "")
	// Single file: the path query wins over the filename.
	resp, body := x.postMultipart(t, url.Values{"path": {"/tmp/q.txt"}}, nil, [2]string{"/tmp/ignored.txt", "query"})
	if resp.StatusCode != 200 || string(body) != `[{"path":"/tmp/q.txt","name":"q.txt","type":"file"}]`+"\n" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(x.root, "tmp/ignored.txt")); err == nil {
		t.Error("filename used despite path query")
	}
	// Many files, filenames as full paths, nested and relative.
	resp, body = x.postMultipart(t, nil, nil,
		[2]string{"/home/user/a/b/one.txt", "1"},
		[2]string{"two.txt", "2"},
		[2]string{`/tmp/we"ird name.txt`, "3"},
	)
	var got []map[string]any
	json.Unmarshal(body, &got)
	if resp.StatusCode != 200 || len(got) != 3 || got[0]["path"] != "/home/user/a/b/one.txt" || got[1]["path"] != "/home/user/two.txt" || got[2]["path"] != `/tmp/we"ird name.txt` {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if x.read(t, "home/user/a/b/one.txt") != "1" || x.read(t, "home/user/two.txt") != "2" || x.read(t, `tmp/we"ird name.txt`) != "3" {
		t.Fatal("contents")
	}
	// Two parts for one path.
	resp, _ = x.postMultipart(t, url.Values{"path": {"/tmp/same"}}, nil, [2]string{"a", "1"}, [2]string{"b", "2"})
	if resp.StatusCode != 400 {
		t.Errorf("duplicate target: %d", resp.StatusCode)
	}
	// Parts with other names are ignored; none named file is an error.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("other", "x")
	fw, _ := mw.CreateFormFile("file", "/tmp/f.txt")
	fw.Write([]byte("f"))
	mw.Close()
	req, _ := http.NewRequest("POST", x.url(nil), &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if resp, body := do(t, req); resp.StatusCode != 200 || !strings.Contains(string(body), `"/tmp/f.txt"`) {
		t.Errorf("mixed parts: %d %s", resp.StatusCode, body)
	}
	buf.Reset()
	mw = multipart.NewWriter(&buf)
	mw.WriteField("other", "x")
	mw.Close()
	req, _ = http.NewRequest("POST", x.url(nil), &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if resp, _ := do(t, req); resp.StatusCode != 400 {
		t.Errorf("no file part: %d", resp.StatusCode)
	}
}

func TestMetadata(t *testing.T) {
	x := newHarness(t, "")
	resp, body := x.postRaw(t, url.Values{"path": {"/tmp/m"}}, strings.NewReader("m"), map[string]string{"X-Metadata-Owner-Team": "infra", "X-Metadata-k": "v 1"})
	if resp.StatusCode != 200 || string(body) != `[{"path":"/tmp/m","name":"m","type":"file","metadata":{"k":"v 1","owner-team":"infra"}}]`+"\n" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	md, err := x.h.root.Metadata("/tmp/m")
	if err != nil || md["owner-team"] != "infra" || md["k"] != "v 1" {
		t.Fatalf("stored metadata %v %v", md, err)
	}
	x.postRaw(t, url.Values{"path": {"/tmp/m"}}, strings.NewReader("m"), nil)
	if md, _ := x.h.root.Metadata("/tmp/m"); len(md) != 0 {
		t.Errorf("metadata not cleared: %v", md)
	}
	resp, _ = x.postRaw(t, url.Values{"path": {"/tmp/m"}}, strings.NewReader("m"), map[string]string{"X-Metadata-k": "caf\xc3\xa9"})
	if resp.StatusCode != 400 {
		t.Errorf("non-ASCII metadata: %d", resp.StatusCode)
	}
}

func TestDownload(t *testing.T) {
	x := newHarness(t, "")
	content := strings.Repeat("0123456789", 10000)
	os.WriteFile(filepath.Join(x.root, "home/user/d.txt"), []byte(content), 0o644)
	resp, body := x.get(t, url.Values{"path": {"d.txt"}}, nil)
	if resp.StatusCode != 200 || string(body) != content || resp.Header.Get("Content-Length") != strconv.Itoa(len(content)) ||
		resp.Header.Get("Content-Disposition") != "inline; filename=d.txt" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	// Range.
	resp, body = x.get(t, url.Values{"path": {"/home/user/d.txt"}}, map[string]string{"Range": "bytes=10-19"})
	if resp.StatusCode != 206 || string(body) != "0123456789" {
		t.Errorf("range: %d %q", resp.StatusCode, body)
	}
	// gzip when asked for by name.
	req, _ := http.NewRequest("GET", x.url(url.Values{"path": {"~/d.txt"}}), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, body = do(t, req)
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip: %v", resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if string(plain) != content {
		t.Error("gzip content")
	}
	// A generic list (fetch's default) gets identity.
	req, _ = http.NewRequest("GET", x.url(url.Values{"path": {"~/d.txt"}}), nil)
	req.Header.Set("Accept-Encoding", "gzip, deflate")
	if resp, body := do(t, req); resp.Header.Get("Content-Encoding") != "" || string(body) != content {
		t.Errorf("identity for a generic list: %v", resp.Header)
	}
	req.Header.Set("Accept-Encoding", "br, identity;q=0")
	if resp, _ := do(t, req); resp.StatusCode != 406 {
		t.Errorf("unacceptable encoding: %d", resp.StatusCode)
	}
	// Empty file.
	os.WriteFile(filepath.Join(x.root, "tmp/empty"), nil, 0o644)
	resp, body = x.get(t, url.Values{"path": {"/tmp/empty"}}, map[string]string{"Accept-Encoding": "gzip"})
	if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != "0" {
		t.Errorf("empty: %d %v", resp.StatusCode, resp.Header)
	}
	// A file whose size stat does not know: procfs.
	if os.Getuid() == 0 {
		proc := filepath.Join(x.root, "proc")
		os.Mkdir(proc, 0o755)
		if err := unix.Mount("proc", proc, "proc", 0, ""); err == nil {
			t.Cleanup(func() { unix.Unmount(proc, unix.MNT_DETACH) })
			resp, body = x.get(t, url.Values{"path": {"/proc/self/status"}}, nil)
			if resp.StatusCode != 200 || !strings.Contains(string(body), "Name:") {
				t.Errorf("procfs file: %d %q", resp.StatusCode, body)
			}
			resp, body = x.get(t, url.Values{"path": {"/proc/self/status"}}, map[string]string{"Accept-Encoding": "gzip"})
			if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || len(body) < 20 {
				t.Errorf("gzipped procfs file: %d %v", resp.StatusCode, resp.Header)
			}
		}
	}
	// Errors.
	resp, body = x.get(t, url.Values{"path": {"/x"}}, nil)
	if resp.StatusCode != 404 || string(body) != `{"code":404,"message":"path '/x' does not exist"}`+"\n" || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("missing: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = x.get(t, url.Values{"path": {"/home"}}, nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "is a directory") {
		t.Errorf("dir: %d %s", resp.StatusCode, body)
	}
	resp, _ = x.get(t, url.Values{"path": {"/x"}, "username": {"nobody"}}, nil)
	if resp.StatusCode != 401 {
		t.Errorf("unknown user: %d", resp.StatusCode)
	}
	unix.Mkfifo(filepath.Join(x.root, "tmp/fifo"), 0o644)
	resp, _ = x.get(t, url.Values{"path": {"/tmp/fifo"}}, nil)
	if resp.StatusCode != 400 {
		t.Errorf("fifo: %d", resp.StatusCode)
	}
	// Traversal stays inside the root.
	for _, p := range []string{"../../../outside/secret.txt", "/../outside/secret.txt", filepath.Join(x.dir, "outside/secret.txt")} {
		if resp, body := x.get(t, url.Values{"path": {p}}, nil); resp.StatusCode != 404 || strings.Contains(string(body), "SECRET") {
			t.Errorf("traversal %q: %d %s", p, resp.StatusCode, body)
		}
	}
	os.Symlink(filepath.Join(x.dir, "outside"), filepath.Join(x.root, "home/user/out"))
	if resp, _ := x.get(t, url.Values{"path": {"~/out/secret.txt"}}, nil); resp.StatusCode != 404 {
		t.Errorf("symlink escape: %d", resp.StatusCode)
	}
	// The link's target does not exist inside the root: not found.
	if resp, _ := x.postRaw(t, url.Values{"path": {"~/out/new.txt"}}, strings.NewReader("x"), nil); resp.StatusCode != 404 {
		t.Errorf("write through symlink: %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(x.dir, "outside/new.txt")); err == nil {
		t.Error("wrote outside the root")
	}
}

func TestAuth(t *testing.T) {
	const token = "tok"
	x := newHarness(t, token)
	os.WriteFile(filepath.Join(x.root, "tmp/f"), []byte("f"), 0o644)
	exp := strconv.FormatInt(x.now.Unix()+60, 10)
	past := strconv.FormatInt(x.now.Unix()-1, 10)
	cases := []struct {
		name   string
		q      url.Values
		header string
		want   int
		msg    string
	}{
		{"nothing", url.Values{"path": {"/tmp/f"}}, "", 401, unauthorizedMessage},
		{"bad header", url.Values{"path": {"/tmp/f"}}, "nope", 401, unauthorizedMessage},
		{"header", url.Values{"path": {"/tmp/f"}}, token, 200, ""},
		{"signature", url.Values{"path": {"/tmp/f"}, "signature": {Sign("/tmp/f", "read", "", token, "")}}, "", 200, ""},
		{"signature with user", url.Values{"path": {"/tmp/f"}, "username": {"root"}, "signature": {Sign("/tmp/f", "read", "root", token, "")}}, "", 200, ""},
		{"signature wrong user", url.Values{"path": {"/tmp/f"}, "username": {"root"}, "signature": {Sign("/tmp/f", "read", "", token, "")}}, "", 401, "invalid signature"},
		{"signature for write", url.Values{"path": {"/tmp/f"}, "signature": {Sign("/tmp/f", "write", "", token, "")}}, "", 401, "invalid signature"},
		{"signature expiring", url.Values{"path": {"/tmp/f"}, "signature": {Sign("/tmp/f", "read", "", token, exp)}, "signature_expiration": {exp}}, "", 200, ""},
		{"signature expired", url.Values{"path": {"/tmp/f"}, "signature": {Sign("/tmp/f", "read", "", token, past)}, "signature_expiration": {past}}, "", 401, "signature is already expired"},
		{"expiration not signed", url.Values{"path": {"/tmp/f"}, "signature": {Sign("/tmp/f", "read", "", token, "")}, "signature_expiration": {exp}}, "", 401, "invalid signature"},
		{"header wins over a bad signature", url.Values{"path": {"/tmp/f"}, "signature": {"v1_bad"}}, token, 200, ""},
		{"bad header loses to a good signature", url.Values{"path": {"/tmp/f"}, "signature": {Sign("/tmp/f", "read", "", token, "")}}, "nope", 401, unauthorizedMessage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{}
			if c.header != "" {
				hdr["X-Access-Token"] = c.header
			}
			resp, body := x.get(t, c.q, hdr)
			if resp.StatusCode != c.want || (c.msg != "" && !strings.Contains(string(body), c.msg)) {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
		})
	}
	q := url.Values{"path": {"/tmp/up"}, "signature": {Sign("/tmp/up", "write", "", token, "")}}
	if resp, body := x.postRaw(t, q, strings.NewReader("u"), nil); resp.StatusCode != 200 {
		t.Errorf("signed upload: %d %s", resp.StatusCode, body)
	}
}

// TestSignKnownAnswer pins the signature format against values computed
// outside Go (Python's hashlib and base64) from the spec's formula.
func TestSignKnownAnswer(t *testing.T) {
	if got := Sign("/home/user/a.txt", "read", "user", "secret", "1700000000"); got != "v1_mzn+1R74JH2wtsTk6gTeInu24ZlQ7BBVUOs7jGA8Xwc" {
		t.Errorf("Sign = %s", got)
	}
	sum := sha256.Sum256([]byte("x:::"))
	if got := Sign("x", "", "", "", ""); got != "v1_"+strings.TrimRight(base64Std(sum[:]), "=") {
		t.Errorf("Sign empty fields = %s", got)
	}
}

// TestDiskFull fills a small tmpfs mounted inside the root.
func TestDiskFull(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	x := newHarness(t, "")
	mnt := filepath.Join(x.root, "tmp/small")
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	resp, body := x.postRaw(t, url.Values{"path": {"/tmp/small/big"}}, bytes.NewReader(make([]byte, 4<<20)), nil)
	if resp.StatusCode != 507 || !strings.Contains(string(body), "not enough disk space available to write '/tmp/small/big'") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(mnt, "big")); err == nil {
		t.Error("partial file left behind")
	}
	// Multipart too.
	resp, body = x.postMultipart(t, nil, nil, [2]string{"/tmp/small/m", strings.Repeat("x", 4<<20)})
	if resp.StatusCode != 507 {
		t.Fatalf("multipart: %d %s", resp.StatusCode, body)
	}
}

// TestStreamingMemory uploads and downloads 256 MiB and checks the heap
// stays flat.
func TestStreamingMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 512 MiB")
	}
	x := newHarness(t, "")
	const size = 256 << 20
	peak := watchHeap(t)
	resp, body := x.postRaw(t, url.Values{"path": {"/tmp/big"}}, io.LimitReader(zeros{}, size), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", x.url(url.Values{"path": {"/tmp/big"}}), nil)
	r2, err := plainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, r2.Body)
	r2.Body.Close()
	if n != size {
		t.Fatalf("downloaded %d", n)
	}
	if p := peak(); p > 64<<20 {
		t.Errorf("heap peaked at %d MiB", p>>20)
	}
}

// TestTruncatedUpload cuts a chunked body short: the upload fails and
// leaves no partial file.
func TestTruncatedUpload(t *testing.T) {
	x := newHarness(t, "")
	conn, err := net.Dial("tcp", x.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /files?path=/tmp/cut HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	conn.(*net.TCPConn).CloseWrite()
	io.ReadAll(conn)
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(x.root, "tmp/cut")); os.IsNotExist(err) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Error("a truncated upload left a file behind")
}

// TestActsAsUser checks that a request is allowed only what its user is:
// the default user cannot write or read root's files; root can.
func TestActsAsUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("switching identities needs root")
	}
	x := newHarness(t, "")
	os.Mkdir(filepath.Join(x.root, "root"), 0o700)
	resp, body := x.postRaw(t, url.Values{"path": {"/root/nope.txt"}}, strings.NewReader("x"), nil)
	if resp.StatusCode != 403 {
		t.Errorf("user wrote into /root: %d %s", resp.StatusCode, body)
	}
	resp, _ = x.postRaw(t, url.Values{"path": {"/root/yes.txt"}, "username": {"root"}}, strings.NewReader("x"), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("root could not write into /root: %d", resp.StatusCode)
	}
	if resp, _ := x.get(t, url.Values{"path": {"/root/yes.txt"}}, nil); resp.StatusCode != 403 {
		t.Errorf("user read /root/yes.txt: %d", resp.StatusCode)
	}
	if resp, body := x.get(t, url.Values{"path": {"/root/yes.txt"}, "username": {"root"}}, nil); resp.StatusCode != 200 || string(body) != "x" {
		t.Errorf("root read: %d %s", resp.StatusCode, body)
	}
	// A group-writable file of another user: the user may write it, and
	// it keeps its owner.
	shared := filepath.Join(x.root, "tmp/shared")
	os.WriteFile(shared, []byte("old"), 0o666)
	os.Chmod(shared, 0o666)
	if resp, body := x.postRaw(t, url.Values{"path": {"/tmp/shared"}}, strings.NewReader("new"), nil); resp.StatusCode != 200 {
		t.Fatalf("writing a shared file: %d %s", resp.StatusCode, body)
	}
	if owner(t, shared) != 0 || x.read(t, "tmp/shared") != "new" {
		t.Errorf("shared file: owner %d content %q", owner(t, shared), x.read(t, "tmp/shared"))
	}
}
