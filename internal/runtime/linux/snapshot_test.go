package linux_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
)

// createWith creates a sandbox from spec as createSpec does, but over the
// mounts spec names.
func (e *env) createWith(t *testing.T, spec runtime.Spec) *runtime.Sandbox {
	t.Helper()
	mounts := spec.Mounts
	tmpl := *e.tmpl
	tmpl.Mounts = mounts
	e2 := *e
	e2.tmpl = &tmpl
	return e2.createSpec(t, spec)
}

// TestSnapshot: a running sandbox's writes are copied into a layer another
// sandbox starts from, owners as the sandbox saw them, deletions and hard
// links kept, holes left holes, while the first sandbox runs on untouched,
// with or without a disk of its own.
func TestSnapshot(t *testing.T) {
	for _, disk := range []bool{false, true} {
		name := "plain"
		if disk {
			name = "disk"
		}
		t.Run(name, func(t *testing.T) {
			if _, err := os.Stat("/dev/loop-control"); disk && err != nil {
				t.Skipf("sandbox disks need loop devices, which the kernel lacks: %v", err)
			}
			e := newEnv(t, func(c *linux.Config) { c.DiskQuota = disk })
			if disk {
				// The parent's disk is then most likely a spare, bound
				// to its loop device under another name.
				e.createSpec(t, runtime.Spec{ID: "snap-first-" + name, Resources: runtime.Resources{DiskMB: 128}})
				time.Sleep(500 * time.Millisecond)
			}
			parent := e.createSpec(t, runtime.Spec{ID: "snap-parent-" + name, Resources: runtime.Resources{DiskMB: 128}})
			out := run(t, parent, `set -e
				echo hello > /home/user/mine; mkdir -p /home/user/d/e; echo deep > /home/user/d/e/f
				ln /home/user/mine /home/user/hard; ln -s mine /home/user/link
				truncate -s 1G /home/user/sparse; echo tail >> /home/user/sparse
				echo ok`, true)
			if strings.TrimSpace(out) != "ok" {
				t.Fatalf("writing in the sandbox: %q", out)
			}
			out = run(t, parent, `set -e; test -e /etc/passwd; cp /etc/passwd /etc/passwd.bak; rm /etc/passwd.bak
				rm /etc/group && cp /etc/passwd /etc/group.copy
				mkdir -p /opt/x && echo x > /opt/x/y && rm -rf /opt/x && mkdir /opt/x && echo ok`, false)
			if strings.TrimSpace(out) != "ok" {
				t.Fatalf("writing in the sandbox as root: %q", out)
			}
			dir := filepath.Join(e.stateDir, "..", "snap-"+name)
			st, err := e.rt.Snapshot(t.Context(), parent.ID, dir, runtime.SnapshotOptions{Durable: true})
			if err != nil {
				t.Fatal(err)
			}
			if st.Bytes > 1<<20 || st.Files < 5 {
				t.Errorf("copied %d bytes in %d files: want the written files, holes not filled", st.Bytes, st.Files)
			}
			// The parent runs on, and what it writes now is its own.
			if out := run(t, parent, "echo later > /home/user/later && cat /home/user/mine", true); strings.TrimSpace(out) != "hello" {
				t.Fatalf("the parent after its snapshot: %q", out)
			}
			mounts := []runtime.Mount{{Target: "/", Layers: append([]string{filepath.Join(dir, "0")}, e.tmpl.Mounts[0].Layers...)}}
			mounts = append(mounts, e.tmpl.Mounts[1:]...)
			child := e.createWith(t, runtime.Spec{ID: "snap-child-" + name, Mounts: mounts})
			got := run(t, child, `cat /home/user/mine /home/user/d/e/f; stat -c '%U %h' /home/user/mine /home/user/d; readlink /home/user/link
				tail -c 5 /home/user/sparse; du -k /home/user/sparse | cut -f1
				test -e /etc/group && echo group; test -e /etc/passwd.bak && echo bak; ls -A /opt/x | wc -l; test -e /home/user/later && echo later; echo end`, true)
			fields := strings.Fields(got)
			want := "hello deep user 2 user 3 mine tail"
			if len(fields) < 9 || strings.Join(fields[:8], " ") != want {
				t.Fatalf("the child sees %q, want it to start %q", got, want)
			}
			rest := strings.Join(fields[9:], " ")
			if rest != "0 end" {
				t.Errorf("the child sees %q after the sparse file's size (%s KiB): want the deleted file and dir contents gone, the parent's later write absent", rest, fields[8])
			}
			// The snapshot's second mount of the parent's disk is gone:
			// killing the parent lets go of its loop device.
			if disk {
				pdir := filepath.Join(e.stateDir, parent.ID)
				if err := e.rt.Kill(t.Context(), parent.ID); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Second)
				for loopsBacking(t, pdir) != 0 {
					if time.Now().After(deadline) {
						t.Fatalf("a loop device still holds the disk of a snapshotted, killed sandbox")
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
}

// TestSnapshotPaused: a paused sandbox is snapshotted as it stands and
// stays paused; a running one runs again after its snapshot; a stopped
// one (filesystem-only pause) is snapshotted from its kept files.
func TestSnapshotPaused(t *testing.T) {
	e := newEnv(t)
	sb := e.createSpec(t, runtime.Spec{ID: "snap-paused"})
	if out := run(t, sb, "echo x > /home/user/x && echo ok", true); strings.TrimSpace(out) != "ok" {
		t.Fatalf("writing: %q", out)
	}
	// frozen reads the freezer of the sandbox's cgroup: v1's freezer.state
	// or v2's cgroup.events.
	frozen := func() bool {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(sb.Pid) + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if p, ok := strings.CutPrefix(line, "0::"); ok {
				if ev, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", p, "cgroup.events")); err == nil {
					return strings.Contains(string(ev), "frozen 1")
				}
			}
			if i := strings.Index(line, ":freezer:"); i >= 0 {
				st, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/freezer", line[i+len(":freezer:"):], "freezer.state"))
				if err == nil {
					return strings.TrimSpace(string(st)) == "FROZEN"
				}
			}
		}
		t.Skip("no cgroup freezer state to tell a frozen sandbox")
		return false
	}
	dir := t.TempDir()
	if _, err := e.rt.Snapshot(t.Context(), sb.ID, filepath.Join(dir, "running"), runtime.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if frozen() {
		t.Fatal("a running sandbox stayed frozen after its snapshot")
	}
	if err := e.rt.Pause(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Snapshot(t.Context(), sb.ID, filepath.Join(dir, "paused"), runtime.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if !frozen() {
		t.Fatal("a paused sandbox was thawed by its snapshot")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "paused", "0", "home", "user", "x")); err != nil || string(b) != "x\n" {
		t.Errorf("the paused sandbox's file in its snapshot: %q %v", b, err)
	}
	if err := e.rt.Resume(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
	if out := run(t, sb, "echo back", true); strings.TrimSpace(out) != "back" {
		t.Errorf("after resume: %q", out)
	}
	// Stopped (a filesystem-only pause): its files are all there is.
	if err := e.rt.Stop(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Snapshot(t.Context(), sb.ID, filepath.Join(dir, "stopped"), runtime.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "stopped", "0", "home", "user", "x")); err != nil || string(b) != "x\n" {
		t.Errorf("the stopped sandbox's file in its snapshot: %q %v", b, err)
	}
	if _, err := e.rt.Snapshot(t.Context(), "no-such-sandbox", filepath.Join(dir, "none"), runtime.SnapshotOptions{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("an unknown sandbox: %v", err)
	}
}
