package filesystem

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
	"github.com/sandpit-dev/sandpit/gen/proto/filesystem/filesystemconnect"
	"github.com/sandpit-dev/sandpit/internal/agent/settings"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

type harness struct {
	root    string
	svc     *Service
	srv     *httptest.Server
	client  filesystemconnect.FilesystemClient
	userUID int
}

// newHarness serves a Service over a temporary root holding its own
// /etc/passwd and /etc/group: root (0) and user (1000, or the test's own
// uid when not running as root, so files can be given to it).
func newHarness(t testing.TB) *harness {
	t.Helper()
	dir := t.TempDir()
	uid := 1000
	if os.Getuid() != 0 {
		uid = os.Getuid()
	}
	for _, d := range []string{"etc", "home/user", "root", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nuser:x:" + itoa(uid) + ":" + itoa(uid) + "::/home/user:/bin/bash\n"
	group := "root:x:0:\nuser:x:" + itoa(uid) + ":\n"
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte(passwd), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte(group), 0o644)
	// As in a sandbox: the user owns its home, /tmp is for everyone.
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	if os.Getuid() == 0 {
		os.Chown(filepath.Join(dir, "home/user"), uid, uid)
	}
	root, err := safepath.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	svc, err := New(Config{Root: root, Settings: settings.New(settings.Values{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	mux := http.NewServeMux()
	mux.Handle(svc.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &harness{
		root: dir, svc: svc, srv: srv, userUID: uid,
		client: filesystemconnect.NewFilesystemClient(srv.Client(), srv.URL, connect.WithProtoJSON()),
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func fmtInt(n int) string { return strconv.Itoa(n) }

func (h *harness) write(t *testing.T, rel, data string) {
	t.Helper()
	p := filepath.Join(h.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func asUser[T any](msg *T, user string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if user != "" {
		req.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":")))
	}
	return req
}

func code(err error) connect.Code { return connect.CodeOf(err) }

func TestStat(t *testing.T) {
	h := newHarness(t)
	h.write(t, "home/user/a.txt", "abc")
	os.Symlink("/home/user/a.txt", filepath.Join(h.root, "home/user/link"))
	os.Symlink("sub", filepath.Join(h.root, "home/user/dirlink"))
	os.Symlink("/nowhere", filepath.Join(h.root, "home/user/dangling"))
	os.Mkdir(filepath.Join(h.root, "home/user/sub"), 0o750)
	ctx := t.Context()

	res, err := h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "a.txt"}, ""))
	if err != nil {
		t.Fatal(err)
	}
	e := res.Msg.Entry
	if e.Name != "a.txt" || e.Path != "/home/user/a.txt" || e.Type != pb.FileType_FILE_TYPE_FILE || e.Size != 3 ||
		e.Mode != 0o644 || e.Permissions != "-rw-r--r--" || e.Owner != "root" || e.Group != "root" || e.ModifiedTime == nil || e.SymlinkTarget != nil {
		t.Errorf("Stat file = %v", e)
	}
	res, err = h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "~/link"}, "user"))
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Msg.Entry; e.Type != pb.FileType_FILE_TYPE_FILE || e.GetSymlinkTarget() != "/home/user/a.txt" || e.Name != "link" {
		t.Errorf("Stat link = %v", e)
	}
	res, _ = h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "/home/user/dirlink"}, ""))
	if e := res.Msg.Entry; e.Type != pb.FileType_FILE_TYPE_DIRECTORY || e.GetSymlinkTarget() != "/home/user/sub" {
		t.Errorf("Stat dir link = %v", e)
	}
	res, _ = h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "/home/user/dangling"}, ""))
	if e := res.Msg.Entry; e.Type != pb.FileType_FILE_TYPE_SYMLINK || e.GetSymlinkTarget() != "/nowhere" {
		t.Errorf("Stat dangling link = %v", e)
	}
	res, _ = h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "/home/user/sub"}, ""))
	if e := res.Msg.Entry; e.Type != pb.FileType_FILE_TYPE_DIRECTORY || e.Mode != 0o750 || e.Permissions != "drwxr-x---" {
		t.Errorf("Stat dir = %v", e)
	}
	res, _ = h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "/"}, ""))
	if e := res.Msg.Entry; e.Path != "/" || e.Type != pb.FileType_FILE_TYPE_DIRECTORY {
		t.Errorf("Stat / = %v", e)
	}
	if _, err := h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "/missing"}, "")); code(err) != connect.CodeNotFound {
		t.Errorf("Stat missing: %v", err)
	}
	if _, err := h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "/"}, "nobody")); code(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "error looking up user 'nobody'") {
		t.Errorf("Stat unknown user: %v", err)
	}
	if _, err := h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "~root/x"}, "")); code(err) != connect.CodeInvalidArgument {
		t.Errorf("Stat ~root: %v", err)
	}
	// The default user follows the settings (POST /init).
	u := "nobody"
	h.svc.settings.Apply(settings.Update{DefaultUser: &u})
	if _, err := h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "/"}, "")); code(err) != connect.CodeUnauthenticated {
		t.Errorf("Stat as unknown default user: %v", err)
	}
}

func TestMakeDir(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	res, err := h.client.MakeDir(ctx, asUser(&pb.MakeDirRequest{Path: "a/b/c"}, "user"))
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Msg.Entry; e.Path != "/home/user/a/b/c" || e.Type != pb.FileType_FILE_TYPE_DIRECTORY || e.Owner != "user" || e.Group != "user" {
		t.Errorf("MakeDir = %v", e)
	}
	if _, err := h.client.MakeDir(ctx, asUser(&pb.MakeDirRequest{Path: "a/b/c"}, "user")); code(err) != connect.CodeAlreadyExists {
		t.Errorf("MakeDir again: %v", err)
	}
	h.write(t, "home/user/f", "x")
	if _, err := h.client.MakeDir(ctx, asUser(&pb.MakeDirRequest{Path: "f"}, "user")); code(err) != connect.CodeInvalidArgument {
		t.Errorf("MakeDir over file: %v", err)
	}
	if _, err := h.client.MakeDir(ctx, asUser(&pb.MakeDirRequest{Path: "f/g"}, "user")); code(err) != connect.CodeInvalidArgument {
		t.Errorf("MakeDir below file: %v", err)
	}
	// Intermediate directories belong to the user too.
	st2, _ := h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "a"}, ""))
	if st2.Msg.Entry.Owner != "user" {
		t.Errorf("parent owner = %q", st2.Msg.Entry.Owner)
	}
}

func TestListDir(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	h.write(t, "home/user/d/b.txt", "b")
	h.write(t, "home/user/d/a/x.txt", "x")
	h.write(t, "home/user/d/a/deeper/y.txt", "y")
	os.Symlink("/home", filepath.Join(h.root, "home/user/d/link"))
	names := func(entries []*pb.EntryInfo) string {
		var s []string
		for _, e := range entries {
			s = append(s, e.Path)
		}
		return strings.Join(s, ",")
	}
	for _, c := range []struct {
		depth uint32
		want  string
	}{
		{0, "/home/user/d/a,/home/user/d/b.txt,/home/user/d/link"},
		{1, "/home/user/d/a,/home/user/d/b.txt,/home/user/d/link"},
		{2, "/home/user/d/a,/home/user/d/a/deeper,/home/user/d/a/x.txt,/home/user/d/b.txt,/home/user/d/link"},
		{9, "/home/user/d/a,/home/user/d/a/deeper,/home/user/d/a/deeper/y.txt,/home/user/d/a/x.txt,/home/user/d/b.txt,/home/user/d/link"},
	} {
		res, err := h.client.ListDir(ctx, asUser(&pb.ListDirRequest{Path: "~/d", Depth: c.depth}, ""))
		if err != nil {
			t.Fatal(err)
		}
		if got := names(res.Msg.Entries); got != c.want {
			t.Errorf("depth %d: %s, want %s", c.depth, got, c.want)
		}
	}
	res, _ := h.client.ListDir(ctx, asUser(&pb.ListDirRequest{Path: "/home/user/d"}, ""))
	link := res.Msg.Entries[2]
	if link.Type != pb.FileType_FILE_TYPE_DIRECTORY || link.GetSymlinkTarget() != "/home" {
		t.Errorf("link entry = %v", link)
	}
	// Listing through a symlink to a directory works.
	if res, err := h.client.ListDir(ctx, asUser(&pb.ListDirRequest{Path: "/home/user/d/link"}, "")); err != nil || len(res.Msg.Entries) != 1 {
		t.Errorf("list through link: %v %v", res, err)
	}
	if _, err := h.client.ListDir(ctx, asUser(&pb.ListDirRequest{Path: "/home/user/d/b.txt"}, "")); code(err) != connect.CodeInvalidArgument {
		t.Errorf("list file: %v", err)
	}
	if _, err := h.client.ListDir(ctx, asUser(&pb.ListDirRequest{Path: "/nope"}, "")); code(err) != connect.CodeNotFound {
		t.Errorf("list missing: %v", err)
	}
}

func TestMoveRemove(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	h.write(t, "home/user/a.txt", "a")
	res, err := h.client.Move(ctx, asUser(&pb.MoveRequest{Source: "a.txt", Destination: "new/dir/b.txt"}, "user"))
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Msg.Entry; e.Path != "/home/user/new/dir/b.txt" || e.Type != pb.FileType_FILE_TYPE_FILE {
		t.Errorf("Move = %v", e)
	}
	if _, err := h.client.Move(ctx, asUser(&pb.MoveRequest{Source: "a.txt", Destination: "c.txt"}, "user")); code(err) != connect.CodeNotFound {
		t.Errorf("Move missing: %v", err)
	}
	if _, err := h.client.Remove(ctx, asUser(&pb.RemoveRequest{Path: "new"}, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.root, "home/user/new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Remove left %v", err)
	}
	if _, err := h.client.Remove(ctx, asUser(&pb.RemoveRequest{Path: "new"}, "")); err != nil {
		t.Errorf("Remove missing: %v", err)
	}
}

// TestRawJSON sends what the JS SDK sends and checks the JSON it gets.
func TestRawJSON(t *testing.T) {
	h := newHarness(t)
	h.write(t, "home/user/a.txt", "abc")
	os.Chmod(filepath.Join(h.root, "home/user/a.txt"), 0o644)
	req, _ := http.NewRequest("POST", h.srv.URL+"/filesystem.Filesystem/ListDir", strings.NewReader(`{"path":"/home/user","depth":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	req.Header.Set("Accept-Encoding", "gzip, deflate") // what fetch adds
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var got struct {
		Entries []map[string]any `json:"entries"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	e := got.Entries[0]
	if e["name"] != "a.txt" || e["type"] != "FILE_TYPE_FILE" || e["size"] != "3" || e["mode"] != float64(420) ||
		e["permissions"] != "-rw-r--r--" || e["owner"] != "root" || e["modifiedTime"] == nil {
		t.Errorf("entry JSON = %s", body)
	}
	// Errors are Connect JSON with the right status.
	req, _ = http.NewRequest("POST", h.srv.URL+"/filesystem.Filesystem/Stat", strings.NewReader(`{"path":"/nope"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(body), `"code":"not_found"`) {
		t.Errorf("Stat missing: %d %s", resp.StatusCode, body)
	}
}

// envelope frames a Connect streaming message.
func envelope(flags byte, msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// TestWatchDirRaw drives WatchDir as the JS SDK does: connect+json
// envelopes, Keepalive-Ping-Interval and Connect-Timeout-Ms.
func TestWatchDirRaw(t *testing.T) {
	h := newHarness(t)
	body := envelope(0, []byte(`{"path":"/home/user","recursive":true}`))
	req, _ := http.NewRequestWithContext(t.Context(), "POST", h.srv.URL+"/filesystem.Filesystem/WatchDir", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/connect+json")
	req.Header.Set("Connect-Protocol-Version", "1")
	req.Header.Set("Keepalive-Ping-Interval", "1")
	req.Header.Set("Connect-Timeout-Ms", "2500")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/connect+json" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	read := func() (byte, string) {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(resp.Body, hdr); err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(resp.Body, msg); err != nil {
			t.Fatal(err)
		}
		return hdr[0], string(msg)
	}
	if f, m := read(); f != 0 || m != `{"start":{}}` {
		t.Fatalf("first message %d %s", f, m)
	}
	h.write(t, "home/user/sub/new.txt", "hi")
	var msgs []string
	keepalives := 0
	type event struct {
		Filesystem struct{ Name, Type string }
	}
	for {
		f, m := read()
		if f == 2 {
			if m != "{}" {
				t.Errorf("end of stream %s", m)
			}
			break
		}
		if m == `{"keepalive":{}}` {
			keepalives++
			continue
		}
		var ev event
		if err := json.Unmarshal([]byte(m), &ev); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, ev.Filesystem.Type+":"+ev.Filesystem.Name)
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"EVENT_TYPE_CREATE:sub", "EVENT_TYPE_CREATE:sub/new.txt"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %s in\n%s", want, all)
		}
	}
	if keepalives < 1 {
		t.Errorf("%d keepalives", keepalives)
	}
}

// collect reads stream events until pred is satisfied or the deadline.
func collect(t *testing.T, stream *connect.ServerStreamForClient[pb.WatchDirResponse], until func([]*pb.FilesystemEvent) bool) []*pb.FilesystemEvent {
	t.Helper()
	var evs []*pb.FilesystemEvent
	for stream.Receive() {
		if fe := stream.Msg().GetFilesystem(); fe != nil {
			evs = append(evs, fe)
			if until(evs) {
				return evs
			}
		}
	}
	t.Fatalf("stream ended (%v) with %v", stream.Err(), evs)
	return nil
}

func TestWatchDirEvents(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, err := h.client.WatchDir(ctx, asUser(&pb.WatchDirRequest{Path: "~", IncludeEntry: true}, "user"))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() || stream.Msg().GetStart() == nil {
		t.Fatalf("no start event: %v", stream.Err())
	}
	p := filepath.Join(h.root, "home/user/f.txt")
	os.WriteFile(p, []byte("1"), 0o644)
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("2")
	f.Close()
	os.Chmod(p, 0o600)
	os.Rename(p, p+".moved")
	os.Remove(p + ".moved")
	evs := collect(t, stream, func(evs []*pb.FilesystemEvent) bool {
		last := evs[len(evs)-1]
		return last.Name == "f.txt.moved" && last.Type == pb.EventType_EVENT_TYPE_REMOVE
	})
	var got []string
	for _, e := range evs {
		s := e.Type.String() + ":" + e.Name
		if len(got) == 0 || got[len(got)-1] != s { // writes may coalesce
			got = append(got, s)
		}
	}
	want := "EVENT_TYPE_CREATE:f.txt,EVENT_TYPE_WRITE:f.txt,EVENT_TYPE_CHMOD:f.txt,EVENT_TYPE_RENAME:f.txt,EVENT_TYPE_CREATE:f.txt.moved,EVENT_TYPE_REMOVE:f.txt.moved"
	if strings.Join(got, ",") != want {
		t.Errorf("events:\n%s\nwant\n%s", strings.Join(got, ","), want)
	}
	// Not recursive: nothing from a subdirectory's contents.
	os.Mkdir(filepath.Join(h.root, "home/user/sub"), 0o755)
	os.WriteFile(filepath.Join(h.root, "home/user/sub/x"), nil, 0o644)
	os.WriteFile(filepath.Join(h.root, "home/user/after"), nil, 0o644)
	evs = collect(t, stream, func(evs []*pb.FilesystemEvent) bool { return evs[len(evs)-1].Name == "after" })
	for _, e := range evs {
		if strings.HasPrefix(e.Name, "sub/") {
			t.Errorf("non-recursive watch saw %v", e)
		}
	}
	if e := evs[len(evs)-1].Entry; e == nil || e.Path != "/home/user/after" || e.Type != pb.FileType_FILE_TYPE_FILE {
		t.Errorf("includeEntry: %v", e)
	}
	cancel()
	for stream.Receive() {
	}
	stream.Close()
}

func TestWatchDirErrorsAndDeadline(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	before := runtime.NumGoroutine()
	h.write(t, "home/user/file", "x")
	for _, c := range []struct {
		path string
		code connect.Code
	}{{"/nope", connect.CodeNotFound}, {"/home/user/file", connect.CodeInvalidArgument}} {
		stream, err := h.client.WatchDir(ctx, asUser(&pb.WatchDirRequest{Path: c.path}, ""))
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		if code(err) != c.code {
			t.Errorf("WatchDir(%s): %v", c.path, err)
		}
	}
	// The deadline ends the stream.
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	stream, err := h.client.WatchDir(dctx, asUser(&pb.WatchDirRequest{Path: "/home/user"}, ""))
	if err != nil {
		t.Fatal(err)
	}
	for stream.Receive() {
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("stream outlived its deadline")
	}
	// Removing the watched directory ends the stream.
	os.Mkdir(filepath.Join(h.root, "tmp/w"), 0o755)
	stream, err = h.client.WatchDir(ctx, asUser(&pb.WatchDirRequest{Path: "/tmp/w"}, ""))
	if err != nil {
		t.Fatal(err)
	}
	stream.Receive()
	os.RemoveAll(filepath.Join(h.root, "tmp/w"))
	done := make(chan struct{})
	go func() {
		for stream.Receive() {
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("stream did not end when its directory was removed")
	}
	// Every watch's reader has stopped with its stream.
	h.srv.CloseClientConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines, %d before the watches", n, before)
	}
}

func TestPolledWatcher(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	before := runtime.NumGoroutine()
	res, err := h.client.CreateWatcher(ctx, asUser(&pb.CreateWatcherRequest{Path: "/home/user", Recursive: true}, ""))
	if err != nil {
		t.Fatal(err)
	}
	wid := res.Msg.WatcherId
	os.MkdirAll(filepath.Join(h.root, "home/user/a"), 0o755)
	var names []string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		// Files made in a directory after it was created are seen once
		// the watch has followed it.
		os.WriteFile(filepath.Join(h.root, "home/user/a/b"), []byte("x"), 0o644)
		ev, err := h.client.GetWatcherEvents(ctx, connect.NewRequest(&pb.GetWatcherEventsRequest{WatcherId: wid}))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ev.Msg.Events {
			names = append(names, e.Name)
		}
		if strings.Contains(strings.Join(names, ","), "a/b") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(strings.Join(names, ","), "a/b") || names[0] != "a" {
		t.Errorf("events %v", names)
	}
	if _, err := h.client.RemoveWatcher(ctx, connect.NewRequest(&pb.RemoveWatcherRequest{WatcherId: wid})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.GetWatcherEvents(ctx, connect.NewRequest(&pb.GetWatcherEventsRequest{WatcherId: wid})); code(err) != connect.CodeNotFound {
		t.Errorf("events of removed watcher: %v", err)
	}
	if _, err := h.client.RemoveWatcher(ctx, connect.NewRequest(&pb.RemoveWatcherRequest{WatcherId: wid})); code(err) != connect.CodeNotFound {
		t.Errorf("remove twice: %v", err)
	}
	// Close stops the rest; no goroutine stays behind.
	for range 3 {
		if _, err := h.client.CreateWatcher(ctx, asUser(&pb.CreateWatcherRequest{Path: "/tmp"}, "")); err != nil {
			t.Fatal(err)
		}
	}
	h.svc.Close()
	h.svc.Close()
	if _, err := h.client.CreateWatcher(ctx, asUser(&pb.CreateWatcherRequest{Path: "/tmp"}, "")); code(err) != connect.CodeUnavailable {
		t.Errorf("create after close: %v", err)
	}
	h.srv.CloseClientConnections()
	deadline = time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines, %d before", n, before)
	}
}

func TestPolledWatcherQueueBound(t *testing.T) {
	h := newHarness(t)
	h.svc.maxQueued = 5
	ctx := t.Context()
	res, err := h.client.CreateWatcher(ctx, asUser(&pb.CreateWatcherRequest{Path: "/tmp"}, ""))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		os.WriteFile(filepath.Join(h.root, "tmp", fmtInt(i)), nil, 0o644)
	}
	var got []*pb.FilesystemEvent
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ev, _ := h.client.GetWatcherEvents(ctx, connect.NewRequest(&pb.GetWatcherEventsRequest{WatcherId: res.Msg.WatcherId}))
		got = ev.Msg.Events
		if len(got) > 0 && got[len(got)-1].Name == "19" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) > 5 {
		t.Errorf("%d events queued, bound 5", len(got))
	}
}

// TestActsAsUser checks that RPCs are allowed only what their user is.
func TestActsAsUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("switching identities needs root")
	}
	h := newHarness(t)
	ctx := t.Context()
	os.Chmod(filepath.Join(h.root, "root"), 0o700)
	h.write(t, "root/secret", "s")
	if _, err := h.client.MakeDir(ctx, asUser(&pb.MakeDirRequest{Path: "/root/d"}, "")); code(err) != connect.CodePermissionDenied {
		t.Errorf("user made a dir in /root: %v", err)
	}
	if _, err := h.client.ListDir(ctx, asUser(&pb.ListDirRequest{Path: "/root"}, "")); code(err) != connect.CodePermissionDenied {
		t.Errorf("user listed /root: %v", err)
	}
	if _, err := h.client.Stat(ctx, asUser(&pb.StatRequest{Path: "/root/secret"}, "")); code(err) != connect.CodePermissionDenied {
		t.Errorf("user stat'ed into /root: %v", err)
	}
	if _, err := h.client.Remove(ctx, asUser(&pb.RemoveRequest{Path: "/root/secret"}, "")); code(err) != connect.CodePermissionDenied {
		t.Errorf("user removed from /root: %v", err)
	}
	if stream, err := h.client.WatchDir(ctx, asUser(&pb.WatchDirRequest{Path: "/root"}, "")); err == nil {
		for stream.Receive() {
		}
		if code(stream.Err()) != connect.CodePermissionDenied {
			t.Errorf("user watched /root: %v", stream.Err())
		}
	}
	if _, err := h.client.MakeDir(ctx, asUser(&pb.MakeDirRequest{Path: "/root/d"}, "root")); err != nil {
		t.Errorf("root could not make a dir in /root: %v", err)
	}
	res, err := h.client.ListDir(ctx, asUser(&pb.ListDirRequest{Path: "/root"}, "root"))
	if err != nil || len(res.Msg.Entries) != 2 {
		t.Errorf("root listing /root: %v %v", res, err)
	}
}

// TestMakeDirMakesParentsForTheUser: as on E2B, makeDir as the default
// user makes missing directories even where only root may create them, and
// they are the user's.
func TestMakeDirMakesParentsForTheUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("switching identities needs root")
	}
	h := newHarness(t)
	res, err := h.client.MakeDir(t.Context(), asUser(&pb.MakeDirRequest{Path: "/0/deep"}, ""))
	if err != nil {
		t.Fatalf("makeDir /0/deep: %v", err)
	}
	if res.Msg.Entry.GetOwner() != "user" || res.Msg.Entry.GetPath() != "/0/deep" {
		t.Errorf("entry %v", res.Msg.Entry)
	}
	for _, p := range []string{"0", "0/deep"} {
		st, err := os.Stat(filepath.Join(h.root, p))
		if err != nil || st.Sys().(*syscall.Stat_t).Uid != 1000 {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestOversizedMessage: a request message over MaxMessageBytes is
// resource_exhausted, and the service goes on serving.
func TestOversizedMessage(t *testing.T) {
	h := newHarness(t)
	_, err := h.client.MakeDir(t.Context(), asUser(&pb.MakeDirRequest{Path: strings.Repeat("x", MaxMessageBytes)}, ""))
	if code(err) != connect.CodeResourceExhausted {
		t.Errorf("an oversized MakeDir: %v", err)
	}
	if _, err := h.client.MakeDir(t.Context(), asUser(&pb.MakeDirRequest{Path: "/tmp/after"}, "")); err != nil {
		t.Errorf("after an oversized message: %v", err)
	}
}

// TestListHidesUploadsInProgress: the temporary file of an upload not yet
// committed is not listed.
func TestListHidesUploadsInProgress(t *testing.T) {
	h := newHarness(t)
	root, err := safepath.Open(h.root)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	w, err := root.Create("/tmp/up.txt", safepath.Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	w.WriteString("half")
	if ents, _ := os.ReadDir(filepath.Join(h.root, "tmp")); len(ents) != 1 {
		t.Fatalf("want the temporary file on disk, got %v", ents)
	}
	res, err := h.client.ListDir(t.Context(), asUser(&pb.ListDirRequest{Path: "/tmp"}, ""))
	if err != nil || len(res.Msg.Entries) != 0 {
		t.Errorf("listing /tmp during an upload: %v %v", res, err)
	}
}
