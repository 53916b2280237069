package linux_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/cgroup"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// BenchmarkResume times bringing a paused sandbox back, by pause kind:
// memory (thaw the cgroup) and filesystem (boot a new init on the kept
// writable layer, with its own disk, up to the agent's "ready"). The pause
// itself is not timed. The agent here is the test binary's stand-in, so
// the filesystem figure leaves out the real agent's start and the
// template's start command.
func BenchmarkResume(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the Linux runtime needs root")
	}
	dir := b.TempDir()
	tmpl, err := template.BuildBase(b.Context(), dir+"/templates")
	if err != nil {
		b.Fatal(err)
	}
	cg, err := cgroup.New("sandpit-bench/" + filepath.Base(filepath.Dir(dir)))
	if err != nil {
		b.Fatal(err)
	}
	if cg.Kind() == "none" {
		b.Skip("pausing needs cgroups")
	}
	exe, _ := os.Executable()
	_, loopErr := os.Stat("/dev/loop-control")
	rt, err := linux.New(linux.Config{StateDir: dir + "/sandboxes", Exe: exe, Cgroups: cg, DiskQuota: loopErr == nil})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	spec := runtime.Spec{ID: "bench", Hostname: "bench", Mounts: tmpl.Mounts,
		Resources: runtime.Resources{CPUCount: 1, MemoryMB: 256, PidsMax: 256, DiskMB: 256}}
	if _, err := rt.Create(b.Context(), spec); err != nil {
		b.Fatal(err)
	}
	defer rt.Kill(context.Background(), "bench")

	b.Run("memory", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			if err := rt.Pause(b.Context(), "bench"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := rt.Resume(b.Context(), "bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("filesystem", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			if err := rt.Stop(b.Context(), "bench"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := rt.Start(b.Context(), spec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
