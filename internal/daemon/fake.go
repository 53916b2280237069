package daemon

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// newFakeRuntime stands an in-memory runtime (runtime/fake) in for the
// Linux one, for scale tests of a cluster's control plane (serve --role
// node --runtime fake): the node serves its REST API, proxy, Lease and
// SandboxNode as ever, but a sandbox is a map entry and a Unix socket
// answering envd's health check, so tens of nodes fit on one machine
// without namespaces, cgroups or nftables. Nothing is isolated and
// nothing runs: never for production.
func (d *Daemon) newFakeRuntime(ctx context.Context, builtin []*template.Template) error {
	d.log.Warn("--runtime fake: sandboxes are in memory and run nothing; for control-plane tests only, never in production")
	d.runtime = fake.New(fake.Options{Handler: fakeEnvd()})
	// Builds get a runtime of their own, as with Linux; one that runs
	// nothing fails every build step that runs a command.
	d.builds = fakeCommitter{fake.New(fake.Options{})}
	return d.newRegistry(ctx, builtin)
}

// fakeCommitter is a fake runtime whose sandboxes commit to empty layers,
// which the template builder requires of its runtime.
type fakeCommitter struct{ *fake.Fake }

// Commit implements runtime.Committer: one empty layer, the sandbox gone.
func (f fakeCommitter) Commit(ctx context.Context, id, dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "0"), 0o755); err != nil {
		return fmt.Errorf("committing fake sandbox %s: %w", id, err)
	}
	return f.Kill(ctx, id)
}

// fakeEnvd is what a fake sandbox's agent answers: its health check, so
// sandbox traffic through the node's proxy has something to reach, and
// 501 to the rest.
func fakeEnvd() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "fake runtime: this sandbox runs no agent", http.StatusNotImplemented)
	})
	return mux
}
