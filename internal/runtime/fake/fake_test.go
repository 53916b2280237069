package fake

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"slices"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/runtime"
)

func TestLifecycle(t *testing.T) {
	f := New(Options{})
	defer f.Close()
	ctx := t.Context()
	sb, err := f.Create(ctx, runtime.Spec{ID: "a", Env: map[string]string{"A": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if sb.ID != "a" || sb.Pid == 0 || sb.EnvdSocket != "" || len(sb.Stages) == 0 {
		t.Errorf("Create = %+v", sb)
	}
	if _, err := f.Create(ctx, runtime.Spec{ID: "a"}); err == nil {
		t.Error("duplicate id accepted")
	}
	spec, ok := f.Spec("a")
	if !ok || spec.Env["A"] != "1" {
		t.Errorf("Spec = %+v, %v", spec, ok)
	}
	f.Leave("old")
	ids, _ := f.List(ctx)
	if !slices.Equal(ids, []string{"a", "old"}) {
		t.Errorf("List = %v", ids)
	}
	for range 2 {
		if err := f.Kill(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Kill(ctx, "unknown"); err != nil {
		t.Errorf("Kill(unknown) = %v", err)
	}
	if f.Kills("a") != 2 {
		t.Errorf("Kills = %d", f.Kills("a"))
	}
	ids, _ = f.List(ctx)
	if !slices.Equal(ids, []string{"old"}) {
		t.Errorf("List after kill = %v", ids)
	}

	injected := errors.New("boom")
	f.FailCreate(injected)
	if _, err := f.Create(ctx, runtime.Spec{ID: "b"}); !errors.Is(err, injected) {
		t.Errorf("Create after FailCreate = %v", err)
	}
	if _, err := f.Create(ctx, runtime.Spec{ID: "b"}); err != nil {
		t.Errorf("FailCreate should fail once: %v", err)
	}

	f.Exit("b")
	if got := <-f.Exited(); got != "b" {
		t.Errorf("Exited = %q", got)
	}
}

func TestSocketServesHandler(t *testing.T) {
	f := New(Options{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from envd")
	})})
	sb, err := f.Create(t.Context(), runtime.Spec{ID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sb.EnvdSocket)
		},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://envd/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from envd" {
		t.Errorf("body = %q", body)
	}
	if err := f.Kill(t.Context(), "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sb.EnvdSocket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket remains after Kill: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := f.Create(t.Context(), runtime.Spec{ID: "late"}); err == nil {
		t.Error("Create after Close succeeded")
	}
}

func TestCloseStopsSocketServers(t *testing.T) {
	before := goruntime.NumGoroutine()
	f := New(Options{Handler: http.NotFoundHandler()})
	for _, id := range []string{"a", "b", "c"} {
		if _, err := f.Create(t.Context(), runtime.Spec{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Kill(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for goruntime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines remain, had %d", goruntime.NumGoroutine(), before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
