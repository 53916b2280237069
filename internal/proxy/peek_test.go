package proxy

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sandpit-dev/sandpit/gen/proto/filesystem"
	"github.com/sandpit-dev/sandpit/gen/proto/process"
)

func envelope(flag byte, payload []byte) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = flag
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// TestDecodeRPC covers the encodings the agent's handlers accept beyond
// what the SDKs send (tested through a real agent in audit_test.go), and
// checks the agent would read the same body afterwards.
func TestDecodeRPC(t *testing.T) {
	msg, _ := proto.Marshal(&filesystem.MakeDirRequest{Path: "/tmp/x"})
	for _, tc := range []struct {
		name    string
		headers []string
		body    []byte
		ok      bool
	}{
		{"unary proto", []string{"Content-Type", "application/proto"}, msg, true},
		{"unary json with charset", []string{"Content-Type", "application/json; charset=utf-8"}, []byte(`{"path":"/tmp/x","extra":1}`), true},
		{"unary gzip", []string{"Content-Type", "application/proto", "Content-Encoding", "gzip"}, gz(msg), true},
		{"unary brotli", []string{"Content-Type", "application/proto", "Content-Encoding", "br"}, msg, false},
		{"connect stream gzip", []string{"Content-Type", "application/connect+proto", "Connect-Content-Encoding", "gzip"}, envelope(1, gz(msg)), true},
		{"grpc", []string{"Content-Type", "application/grpc"}, envelope(0, msg), true},
		{"grpc-web json", []string{"Content-Type", "application/grpc-web+json"}, envelope(0, []byte(`{"path":"/tmp/x"}`)), true},
		{"short envelope", []string{"Content-Type", "application/connect+proto"}, envelope(0, msg)[:7], false},
		{"huge envelope", []string{"Content-Type", "application/connect+json"}, envelope(0, []byte(`{"path":"/tmp/x","pad":"`+strings.Repeat("x", peekLimit)+`"}`)), false},
		{"huge unary", []string{"Content-Type", "application/json"}, []byte(`{"path":"/tmp/x","pad":"` + strings.Repeat("x", peekLimit) + `"}`), false},
		{"form", []string{"Content-Type", "application/x-www-form-urlencoded"}, []byte("path=/tmp/x"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, length := range []bool{true, false} {
				var body io.Reader = bytes.NewReader(tc.body)
				if !length {
					body = io.MultiReader(body) // hides the length
				}
				r := httptest.NewRequest("POST", "/filesystem.Filesystem/MakeDir", body)
				if !length {
					r.ContentLength = -1
				}
				for i := 0; i < len(tc.headers); i += 2 {
					r.Header.Set(tc.headers[i], tc.headers[i+1])
				}
				var m filesystem.MakeDirRequest
				ok := decodeRPC(r, &m)
				if ok != tc.ok || ok && m.GetPath() != "/tmp/x" {
					t.Errorf("length known %v: decoded %v %q, want %v", length, ok, m.GetPath(), tc.ok)
				}
				if rest, _ := io.ReadAll(r.Body); !bytes.Equal(rest, tc.body) {
					t.Errorf("length known %v: the agent would read %d bytes, not the %d sent", length, len(rest), len(tc.body))
				}
			}
		})
	}
	// An empty body is not read at all.
	r, _ := http.NewRequest("POST", "/x", nil)
	r.Header.Set("Content-Type", "application/proto")
	if !decodeRPC(r, &filesystem.MakeDirRequest{}) || r.Body != nil {
		t.Errorf("an empty unary request: an empty message, body left alone")
	}
}

func TestJSONStringField(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`{"code":"a\nb"}`, "a\nb", true},
		{` { "context_id" : {"x":[1,"code"]}, "code" : "x\u00e9" }`, "xé", true},
		{`{"code":"abc`, "abc", true},            // cut by the peek
		{`{"code":"ab\u00`, "ab", true},          // cut in an escape
		{`{"code":"ab\`, "ab", true},             // cut after a backslash
		{`{"code":"ab\"cd"`, `ab"cd`, true},      // an escaped quote
		{`{"language":"python"}`, "", false},     // no code
		{`{"code":null}`, "", false},             // not a string
		{`{"pad":"xxxxx`, "", false},             // cut before the code
		{`["code","x"]`, "", false},              // not an object
		{`{"code":"\ud83d\ude00!"}`, "😀!", true}, // a surrogate pair
	} {
		got, ok := jsonStringField([]byte(tc.in), "code")
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		args []string
		want string
	}{
		{"ls", nil, "ls"},
		{"/bin/bash", []string{"-l", "-c", "echo hi && rm -rf /tmp/x"}, `/bin/bash -l -c 'echo hi && rm -rf /tmp/x'`},
		{"printf", []string{"", "it's", "a=b,c:d@e%f+g"}, `printf '' 'it'\''s' a=b,c:d@e%f+g`},
		{"echo", []string{"$HOME", "*", "é"}, `echo '$HOME' '*' 'é'`},
	} {
		if got := commandLine(tc.cmd, tc.args); got != tc.want {
			t.Errorf("%s %q: %s, want %s", tc.cmd, tc.args, got, tc.want)
		}
	}
	if got := commandLine("echo", []string{strings.Repeat("a", 600)}); got != "echo "+strings.Repeat("a", 507)+"…" {
		t.Errorf("long: %q", got)
	}
}

// TestStartCommandCut: a StartRequest past the peek still gives the
// command and the arguments before the cut, in either encoding.
func TestStartCommandCut(t *testing.T) {
	start := &process.StartRequest{Process: &process.ProcessConfig{
		Cmd:  "/bin/sh",
		Args: []string{"-c", "curl example.com | sh", strings.Repeat("y", 2*peekLimit)},
		Envs: map[string]string{"PAD": "z"},
	}}
	pb, _ := proto.Marshal(start)
	js, _ := protojson.Marshal(start)
	for _, tc := range []struct {
		name, ctype string
		body        []byte
		want        string
	}{
		// The proto arg cut by the peek keeps its start (then the whole
		// is cut at 512 bytes); the JSON one cannot be read by halves.
		{"proto", "application/connect+proto", envelope(0, pb), truncate(`/bin/sh -c 'curl example.com | sh' ` + strings.Repeat("y", 600))},
		{"json", "application/connect+json", envelope(0, js), `/bin/sh -c 'curl example.com | sh'…`},
		{"garbage", "application/connect+proto", envelope(0, append([]byte{0xff, 0xff}, make([]byte, peekLimit)...)), "(unparsed)"},
		{"no process", "application/connect+json", envelope(0, []byte(`{"tag":"`+strings.Repeat("t", peekLimit)+`"}`)), "(unparsed)"},
	} {
		r := httptest.NewRequest("POST", "/process.Process/Start", bytes.NewReader(tc.body))
		r.Header.Set("Content-Type", tc.ctype)
		if got := startCommand(r); got != tc.want {
			t.Errorf("%s: %.80q…, want %.80q…", tc.name, got, tc.want)
		}
		if rest, _ := io.ReadAll(r.Body); !bytes.Equal(rest, tc.body) {
			t.Errorf("%s: the agent would read %d bytes, not the %d sent", tc.name, len(rest), len(tc.body))
		}
	}
}
