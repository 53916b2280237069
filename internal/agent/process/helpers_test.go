package process

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os/user"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
	"github.com/sandpit-dev/sandpit/internal/agent/settings"
)

// env is a Service behind a real HTTP server and a Connect+JSON client.
type env struct {
	svc      *Service
	client   processconnect.ProcessClient
	settings *settings.Settings
	url      string
	close    func() // idempotent; also run by Cleanup
}

func currentUser(t testing.TB) *user.User {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatalf("current user: %v", err)
	}
	return u
}

func newEnv(t testing.TB, vals settings.Values) *env {
	t.Helper()
	if vals.DefaultUser == "" {
		vals.DefaultUser = currentUser(t).Username
	}
	reaper := NewReaper(nil)
	st := settings.New(vals)
	svc := New(Config{Settings: st, Reaper: reaper, RetainExited: 2 * time.Second})
	mux := http.NewServeMux()
	mux.Handle(svc.Handler())
	srv := httptest.NewServer(mux)
	var once sync.Once
	closeAll := func() {
		once.Do(func() {
			srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := svc.Close(ctx); err != nil {
				t.Errorf("closing service: %v", err)
			}
			reaper.Close()
		})
	}
	t.Cleanup(closeAll)
	return &env{
		close:    closeAll,
		svc:      svc,
		client:   processconnect.NewProcessClient(srv.Client(), srv.URL, connect.WithProtoJSON()),
		settings: st,
		url:      srv.URL,
	}
}

func shell(cmd string) *pb.ProcessConfig {
	return &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", cmd}}
}

// result is a whole stream, collected.
type result struct {
	pid    uint32
	stdout string
	stderr string
	pty    string
	end    *pb.ProcessEvent_EndEvent
	events int
}

// collect reads a Start or Connect stream to its end.
func collect[T any, PT interface {
	*T
	GetEvent() *pb.ProcessEvent
}](t testing.TB, s *connect.ServerStreamForClient[T]) (result, error) {
	t.Helper()
	var r result
	for s.Receive() {
		ev := PT(s.Msg()).GetEvent()
		r.events++
		switch e := ev.GetEvent().(type) {
		case *pb.ProcessEvent_Start:
			if r.events != 1 {
				t.Errorf("start event at position %d", r.events)
			}
			r.pid = e.Start.GetPid()
		case *pb.ProcessEvent_Data:
			r.stdout += string(e.Data.GetStdout())
			r.stderr += string(e.Data.GetStderr())
			r.pty += string(e.Data.GetPty())
		case *pb.ProcessEvent_End:
			r.end = e.End
		}
	}
	return r, s.Err()
}

func run(t testing.TB, e *env, req *pb.StartRequest, hdr ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	creq := connect.NewRequest(req)
	for i := 0; i+1 < len(hdr); i += 2 {
		creq.Header().Set(hdr[i], hdr[i+1])
	}
	s, err := e.client.Start(ctx, creq)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	r, err := collect(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if r.end == nil {
		t.Fatalf("no end event; got %+v", r)
	}
	return r
}

// runErr starts req and returns the error of the stream (nil if none).
func runErr(t testing.TB, e *env, req *pb.StartRequest, hdr ...string) error {
	t.Helper()
	creq := connect.NewRequest(req)
	for i := 0; i+1 < len(hdr); i += 2 {
		creq.Header().Set(hdr[i], hdr[i+1])
	}
	s, err := e.client.Start(t.Context(), creq)
	if err != nil {
		return err
	}
	_, err = collect(t, s)
	return err
}

func basic(name string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"))
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

func hasPrefixLine(s, prefix string) bool {
	for l := range strings.Lines(s) {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// statState returns the state letter of a /proc/PID/stat line.
func statState(b []byte) byte {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

func runtimeGoroutines() int { return runtime.NumGoroutine() }

// checkGoroutines waits until no more goroutines run than before.
func checkGoroutines(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
