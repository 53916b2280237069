package sandpit_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// TestWire checks the requests themselves against what the official JS SDK
// sends (spec/e2b-wire.md §1.3, §2.1, §4.1, §4.4), with a stand-in server.
func TestWire(t *testing.T) {
	var mu sync.Mutex
	got := map[string]*http.Request{}
	bodies := map[string][]byte{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path] = r
		bodies[r.URL.Path] = body
		mu.Unlock()
		switch r.URL.Path {
		case "/v2/sandboxes":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"sandboxID":"isb1","templateID":"base","clientID":"6532622b","envdVersion":"0.6.13","envdAccessToken":"tok","trafficAccessToken":null,"domain":null}`)
		case "/process.Process/Start":
			w.Header().Set("Content-Type", "application/connect+json")
			for _, m := range []string{
				`{"event":{"start":{"pid":7}}}`,
				`{"event":{"data":{"stdout":"aGkK"}}}`,
				`{"event":{"keepalive":{}}}`,
				`{"event":{"end":{"exited":true,"status":"exit status 0"}}}`,
			} {
				w.Write(envelope(0, m))
			}
			w.Write(envelope(2, `{}`))
		case "/filesystem.Filesystem/ListDir":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"entries":[{"name":"a.txt","type":"FILE_TYPE_FILE","path":"/home/user/a.txt","size":"3","mode":420,"permissions":"-rw-r--r--","owner":"user","group":"user","modifiedTime":"2025-01-01T00:00:00Z"},{"name":"odd","type":"FILE_TYPE_UNSPECIFIED","path":"/home/user/odd"}]}`)
		case "/files":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `[{"path":"/home/user/x","name":"x","type":"file"}]`)
		case "/process.Process/SendSignal":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"code":"not_found","message":"process with pid 9 not found"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	c, err := sandpit.NewClient(sandpit.WithURL(srv.URL), sandpit.WithAPIKey("e2b_abc"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	sb, err := c.Create(ctx, sandpit.WithTimeout(1500*time.Millisecond), sandpit.WithMetadata(map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	r := got["/v2/sandboxes"]
	if r.Header.Get("X-API-KEY") != "e2b_abc" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("create headers: %v", r.Header)
	}
	var create map[string]any
	json.Unmarshal(bodies["/v2/sandboxes"], &create)
	if create["templateID"] != "base" || create["timeout"] != 2.0 || create["metadata"].(map[string]any)["k"] != "v" {
		t.Errorf("create body: %s", bodies["/v2/sandboxes"])
	}

	res, err := sb.Commands.Run(ctx, "echo hi", sandpit.WithUser("root"), sandpit.WithEnvs(map[string]string{"A": "1"}))
	if err != nil || res.Stdout != "hi\n" || res.ExitCode != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	r = got["/process.Process/Start"]
	for k, want := range map[string]string{
		"Content-Type":             "application/connect+json",
		"E2b-Sandbox-Id":           "isb1",
		"E2b-Sandbox-Port":         "49983",
		"X-Access-Token":           "tok",
		"Authorization":            "Basic cm9vdDo=", // "root:"
		"Keepalive-Ping-Interval":  "50",
		"Connect-Protocol-Version": "1",
	} {
		if r.Header.Get(k) != want {
			t.Errorf("Start header %s = %q, want %q", k, r.Header.Get(k), want)
		}
	}
	if ms, _ := strconv.Atoi(r.Header.Get("Connect-Timeout-Ms")); ms < 59000 || ms > 60000 {
		t.Errorf("Connect-Timeout-Ms = %d, want about 60000", ms)
	}
	if r.ProtoMajor != 1 {
		t.Errorf("HTTP/%d, want HTTP/1.1", r.ProtoMajor)
	}
	b := bodies["/process.Process/Start"]
	if len(b) < 5 || b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != len(b)-5 {
		t.Fatalf("Start body is not one Connect envelope: %q", b)
	}
	var start map[string]any
	if err := json.Unmarshal(b[5:], &start); err != nil {
		t.Fatal(err)
	}
	proc := start["process"].(map[string]any)
	if proc["cmd"] != "/bin/bash" || strings.Join(toStrings(proc["args"]), " ") != "-l -c echo hi" || start["stdin"] != false || proc["envs"].(map[string]any)["A"] != "1" {
		t.Errorf("Start body: %s", b[5:])
	}

	// Unary: JSON, enum names, FILE_TYPE_UNSPECIFIED dropped.
	es, err := sb.Files.List(ctx, "/home/user")
	if err != nil || len(es) != 1 || es[0].Size != 3 || es[0].Mode != 0o644 || es[0].Type != sandpit.TypeFile {
		t.Errorf("List = %+v, %v", es, err)
	}
	if !sameJSON(bodies["/filesystem.Filesystem/ListDir"], `{"path":"/home/user","depth":1}`) {
		t.Errorf("ListDir body: %s", bodies["/filesystem.Filesystem/ListDir"])
	}
	if err := sb.Commands.Kill(ctx, 9); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Kill = %v", err)
	}
	if !sameJSON(bodies["/process.Process/SendSignal"], `{"process":{"pid":9},"signal":"SIGNAL_SIGKILL"}`) {
		t.Errorf("SendSignal body: %s", bodies["/process.Process/SendSignal"])
	}

	// Uploads: octet-stream, path in the query, metadata headers.
	if _, err := sb.Files.Write(ctx, "x", []byte("data"), sandpit.WithUser("user"), sandpit.WithMetadata(map[string]string{"tag": "t"})); err != nil {
		t.Fatal(err)
	}
	r = got["/files"]
	if r.Method != http.MethodPost || r.URL.Query().Get("path") != "x" || r.URL.Query().Get("username") != "user" ||
		r.Header.Get("Content-Type") != "application/octet-stream" || r.Header.Get("X-Metadata-Tag") != "t" ||
		r.Header.Get("X-Access-Token") != "tok" || string(bodies["/files"]) != "data" {
		t.Errorf("upload: %s %s %v %q", r.Method, r.URL, r.Header, bodies["/files"])
	}
}

func envelope(flags byte, msg string) []byte {
	var b bytes.Buffer
	b.WriteByte(flags)
	binary.Write(&b, binary.BigEndian, uint32(len(msg)))
	b.WriteString(msg)
	return b.Bytes()
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// sameJSON compares JSON by value (protojson varies its spacing on purpose).
func sameJSON(got []byte, want string) bool {
	var a, b any
	return json.Unmarshal(got, &a) == nil && json.Unmarshal([]byte(want), &b) == nil && reflect.DeepEqual(a, b)
}
