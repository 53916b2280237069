package linux_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/cgroup"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
)

// TestBootWeight: a sandbox boots at ten times the CPU weight of its
// running siblings and runs at the default weight once it is up, after a
// Stop and Start too. The weights are read from the kernel's files.
func TestBootWeight(t *testing.T) {
	var mu sync.Mutex
	var booted []int // the weight each init found when it joined its group
	e := newEnv(t, func(c *linux.Config) {
		c.Cgroups = weighed{Manager: c.Cgroups, joined: func(w int) {
			mu.Lock()
			booted = append(booted, w)
			mu.Unlock()
		}}
	})
	spec := runtime.Spec{ID: "weight", Hostname: "weight", Mounts: e.tmpl.Mounts,
		Resources: runtime.Resources{CPUCount: 1, MemoryMB: 256, PidsMax: 256}}
	sb := e.createSpec(t, spec)
	if w := cpuWeight(t, sb.Pid); w != cgroup.DefaultWeight {
		t.Errorf("a running sandbox's cpu weight is %d, want %d", w, cgroup.DefaultWeight)
	}
	if err := e.rt.Stop(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
	again, err := e.rt.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if w := cpuWeight(t, again.Pid); w != cgroup.DefaultWeight {
		t.Errorf("a started sandbox's cpu weight is %d, want %d", w, cgroup.DefaultWeight)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(booted) != 2 || booted[0] != 10*cgroup.DefaultWeight || booted[1] != 10*cgroup.DefaultWeight {
		t.Errorf("boots ran at cpu weights %v, want two at %d", booted, 10*cgroup.DefaultWeight)
	}
}

// weighed reports the weight of each group as a process joins it.
type weighed struct {
	cgroup.Manager
	joined func(weight int)
}

func (w weighed) Create(name string, l cgroup.Limits) (cgroup.Group, error) {
	g, err := w.Manager.Create(name, l)
	if err != nil {
		return nil, err
	}
	return weighedGroup{Group: g, joined: w.joined}, nil
}

type weighedGroup struct {
	cgroup.Group
	joined func(weight int)
}

func (g weighedGroup) Add(pid int) error {
	if err := g.Group.Add(pid); err != nil {
		return err
	}
	g.joined(cpuWeightOf(pid))
	return nil
}

func cpuWeight(t *testing.T, pid int) int {
	t.Helper()
	w := cpuWeightOf(pid)
	if w < 0 {
		t.Fatalf("no cpu weight found for process %d", pid)
	}
	return w
}

// cpuWeightOf reads the CPU weight of pid's cgroup in cgroup v2 units:
// cpu.weight, or the legacy hierarchy's cpu.shares scaled; -1 when there is
// none to read.
func cpuWeightOf(pid int) int {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		var file string
		scale := 1.0
		switch {
		case f[0] == "0" && f[1] == "":
			file = filepath.Join("/sys/fs/cgroup", f[2], "cpu.weight")
		case containsField(f[1], "cpu"):
			file = filepath.Join("/sys/fs/cgroup", f[1], f[2], "cpu.shares")
			scale = float64(cgroup.DefaultWeight) / 1024
		default:
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			continue // v2's line on a hybrid host, where cpu is v1's
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return -1
		}
		return int(float64(n)*scale + 0.5)
	}
	return -1
}

func containsField(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}
