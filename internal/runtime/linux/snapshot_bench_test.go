package linux_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/cgroup"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// BenchmarkSnapshot: how long a snapshot of a sandbox that wrote N MiB
// takes and how long the sandbox stands still for it, on its own disk (the
// default), durable (snapshots) and not (forks).
//
//	go test -run '^$' -bench Snapshot -benchtime 10x ./internal/runtime/linux/
func BenchmarkSnapshot(b *testing.B) {
	for _, mib := range []int{1, 10, 100} {
		for _, durable := range []bool{true, false} {
			b.Run(fmt.Sprintf("%dMiB/durable=%t", mib, durable), func(b *testing.B) {
				if os.Geteuid() != 0 {
					b.Skip("needs root")
				}
				e := newEnvB(b, func(c *linux.Config) { c.DiskQuota = true })
				sb := e.createB(b, fmt.Sprintf("bench-snap-%d-%t", mib, durable))
				out := runB(b, sb, fmt.Sprintf("head -c %d /dev/urandom > /home/user/data && sync && echo ok", mib<<20))
				if strings.TrimSpace(out) != "ok" {
					b.Fatalf("writing: %q", out)
				}
				dir := b.TempDir()
				var frozen, total time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					d := filepath.Join(dir, fmt.Sprint(i))
					st, err := e.rt.Snapshot(b.Context(), sb.ID, d, runtime.SnapshotOptions{Durable: durable})
					if err != nil {
						b.Fatal(err)
					}
					frozen += st.Frozen
					total += st.Total
					b.StopTimer()
					_ = os.RemoveAll(d)
					b.StartTimer()
				}
				b.ReportMetric(float64(frozen.Microseconds())/1000/float64(b.N), "frozen-ms/op")
				b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "total-ms/op")
			})
		}
	}
}

// newEnvB, createB and runB are newEnv, create and run for benchmarks.
func newEnvB(b *testing.B, configure func(*linux.Config)) *env {
	b.Helper()
	dir := b.TempDir()
	tmpl, err := template.BuildBase(b.Context(), dir+"/templates")
	if err != nil {
		b.Fatalf("building base template: %v", err)
	}
	cg, err := cgroup.New("sandpit-test/" + filepath.Base(filepath.Dir(dir)))
	if err != nil {
		b.Fatalf("cgroups: %v", err)
	}
	exe, _ := os.Executable()
	cfg := linux.Config{StateDir: dir + "/sandboxes", Exe: exe, Cgroups: cg}
	configure(&cfg)
	rt, err := linux.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rt.Close() })
	return &env{rt: rt, tmpl: tmpl, stateDir: dir + "/sandboxes", exe: exe, cg: cg}
}

func (e *env) createB(b *testing.B, id string) *runtime.Sandbox {
	b.Helper()
	spec := runtime.Spec{ID: id, Hostname: id, Mounts: e.tmpl.Mounts, Resources: runtime.Resources{CPUCount: 1, MemoryMB: 512, PidsMax: 256, DiskMB: 1024}}
	sb, err := e.rt.Create(b.Context(), spec)
	if err != nil {
		b.Fatalf("create %s: %v", id, err)
	}
	b.Cleanup(func() { _ = e.rt.Kill(context.Background(), id) })
	return sb
}

func runB(b *testing.B, sb *runtime.Sandbox, cmd string) string {
	b.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sb.EnvdSocket)
	}}}
	resp, err := c.Post("http://sandbox/run", "text/plain", strings.NewReader(cmd))
	if err != nil {
		b.Fatalf("running %q: %v", cmd, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return string(out)
}
