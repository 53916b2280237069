// Package cgroup puts each sandbox in its own control group with memory,
// CPU and task limits. It hides the difference between the legacy (v1) and
// unified (v2) hierarchies behind one small interface, using containerd's
// cgroups library for both.
package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Limits are one group's resource limits. Zero means unlimited.
type Limits struct {
	CPUCount    int   // whole CPUs of quota per 100 ms period
	MemoryBytes int64 // the OOM killer acts inside the group past this
	PidsMax     int64 // fork bombs stop here
	// CPUWeight is the group's share of CPU time against its siblings
	// when they compete, in cgroup v2 units: 1 to 10000, DefaultWeight
	// for a group made without one (zero). The legacy hierarchy's
	// cpu.shares are 10.24 times that.
	CPUWeight int
}

// DefaultWeight is the CPU weight the kernel gives a new group.
const DefaultWeight = 100

// Manager creates groups below one parent group (e.g. "sandpit").
//
// Create places nothing in the group; Group.Add does. Delete on a group that
// still has tasks fails; callers kill the tasks first.
type Manager interface {
	Create(name string, l Limits) (Group, error)
	// Load opens an existing group, e.g. one left by an earlier daemon run.
	Load(name string) (Group, error)
	// List returns the names of the groups below the parent.
	List() ([]string, error)
	// Kind says which implementation this is, for logs.
	Kind() string
	// Prune removes the parent group if no group is left below it.
	Prune() error
}

// Group is one sandbox's control group.
type Group interface {
	Add(pid int) error
	// Pids returns the processes in the group.
	Pids() ([]int, error)
	// Stats reads the group's resource use.
	Stats() (Stats, error)
	// Freeze stops every task of the group where it is; Thaw lets them
	// go on.
	Freeze() error
	Thaw() error
	// SetCPUWeight changes the group's weight (Limits.CPUWeight).
	SetCPUWeight(weight int) error
	Delete() error
}

// Stats is a group's resource use.
type Stats struct {
	CPU      time.Duration // CPU time used since the group was made
	Memory   uint64        // bytes in use, page cache included
	Cache    uint64        // of which page cache
	MemLimit uint64        // the memory limit in bytes (0: none)
}

// New picks the implementation for this host: the unified hierarchy when the
// host runs it, else the legacy one.
func New(parent string) (Manager, error) {
	switch cgroups.Mode() {
	case cgroups.Unified:
		return &v2{parent: parent}, nil
	case cgroups.Legacy, cgroups.Hybrid:
		hs, err := v1Hierarchy()
		if err != nil {
			return nil, fmt.Errorf("finding the cgroup v1 hierarchies: %w", err)
		}
		return &v1{parent: parent, subsystems: hs}, nil
	default:
		return nil, errors.New("no cgroup hierarchy is mounted")
	}
}

// Noop is a Manager that limits nothing: for laptops and tests where cgroups
// cannot be written. Its use is an isolation warning.
type Noop struct{}

func (Noop) Create(string, Limits) (Group, error) { return noopGroup{}, nil }
func (Noop) Load(string) (Group, error)           { return noopGroup{}, nil }
func (Noop) List() ([]string, error)              { return nil, nil }
func (Noop) Kind() string                         { return "none" }
func (Noop) Prune() error                         { return nil }

type noopGroup struct{}

func (noopGroup) Add(int) error          { return nil }
func (noopGroup) Pids() ([]int, error)   { return nil, nil }
func (noopGroup) Stats() (Stats, error)  { return Stats{}, nil }
func (noopGroup) Freeze() error          { return errors.New("cgroups are off: sandboxes cannot be paused") }
func (noopGroup) Thaw() error            { return nil }
func (noopGroup) SetCPUWeight(int) error { return nil }
func (noopGroup) Delete() error          { return nil }

const cpuPeriod = 100_000 // µs

func resources(l Limits) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if l.CPUCount > 0 {
		period := uint64(cpuPeriod)
		quota := int64(l.CPUCount) * cpuPeriod
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if l.MemoryBytes > 0 {
		m := l.MemoryBytes
		r.Memory = &specs.LinuxMemory{Limit: &m}
	}
	if l.PidsMax > 0 {
		p := l.PidsMax
		r.Pids = &specs.LinuxPids{Limit: &p}
	}
	if l.CPUWeight > 0 {
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		shares := v1Shares(l.CPUWeight)
		r.CPU.Shares = &shares
	}
	return r
}

// v1Shares is weight (v2 units) as the legacy hierarchy's cpu.shares.
func v1Shares(weight int) uint64 { return uint64(weight) * 1024 / DefaultWeight }

func checkWeight(weight int) error {
	if weight < 1 || weight > 10000 {
		return fmt.Errorf("cpu weight %d: want 1 to 10000", weight)
	}
	return nil
}

// v1 uses the legacy hierarchy; only the controllers sandpit needs are
// touched, so creating a group stays cheap. The hierarchies are found once:
// finding them parses /proc/self/mountinfo, which every create and kill
// paid for before.
type v1 struct {
	parent     string
	subsystems []cgroup1.Subsystem
}

func (m *v1) hierarchy() ([]cgroup1.Subsystem, error) { return m.subsystems, nil }

var v1Controllers = map[cgroup1.Name]bool{
	cgroup1.Cpu: true, cgroup1.Cpuacct: true, cgroup1.Memory: true, cgroup1.Pids: true, cgroup1.Freezer: true,
}

func v1Hierarchy() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var out []cgroup1.Subsystem
	for _, s := range all {
		if v1Controllers[s.Name()] {
			out = append(out, s)
		}
	}
	return out, nil
}

func (m *v1) path(name string) cgroup1.Path {
	return cgroup1.StaticPath("/" + m.parent + "/" + name)
}

func (m *v1) Kind() string { return "cgroup v1" }

func (m *v1) Create(name string, l Limits) (Group, error) {
	if l.CPUWeight != 0 {
		if err := checkWeight(l.CPUWeight); err != nil {
			return nil, fmt.Errorf("creating cgroup %s/%s: %w", m.parent, name, err)
		}
	}
	cg, err := cgroup1.New(m.path(name), resources(l), cgroup1.WithHierarchy(m.hierarchy))
	if err != nil {
		return nil, fmt.Errorf("creating cgroup %s/%s: %w", m.parent, name, err)
	}
	return m.group(cg, name), nil
}

func (m *v1) group(cg cgroup1.Cgroup, name string) *v1Group {
	g := &v1Group{cg: cg, dirs: m.dirs(name)}
	for _, s := range m.subsystems {
		if p, ok := s.(interface{ Path(string) string }); ok && s.Name() == cgroup1.Cpu {
			g.cpuDir = p.Path("/" + m.parent + "/" + name)
		}
	}
	return g
}

// dirs lists group name's directory in each hierarchy (co-mounted
// controllers share one).
func (m *v1) dirs(name string) []string {
	var out []string
	for _, s := range m.subsystems {
		p, ok := s.(interface{ Path(string) string })
		if !ok {
			continue
		}
		if d := p.Path("/" + m.parent + "/" + name); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

func (m *v1) Load(name string) (Group, error) {
	cg, err := cgroup1.Load(m.path(name), cgroup1.WithHierarchy(m.hierarchy))
	if err != nil {
		return nil, fmt.Errorf("loading cgroup %s/%s: %w", m.parent, name, err)
	}
	return m.group(cg, name), nil
}

func (m *v1) List() ([]string, error) {
	root, err := cgroup1.RootPath(cgroup1.Memory)
	if err != nil {
		return nil, err
	}
	// RootPath is the memory hierarchy's mount point joined with this
	// process's own group; sandbox groups hang off the hierarchy root.
	mnt := filepath.Join("/sys/fs/cgroup", string(cgroup1.Memory))
	if _, err := os.Stat(mnt); err != nil {
		mnt = root
	}
	return listDirs(filepath.Join(mnt, m.parent))
}

func (m *v1) Prune() error {
	var dirs []string
	for _, h := range m.subsystems {
		root, err := cgroup1.RootPath(h.Name())
		if err != nil {
			continue
		}
		// RootPath includes this process's own group; sandbox groups hang
		// off the hierarchy's mount point.
		mnt := filepath.Join("/sys/fs/cgroup", string(h.Name()))
		if _, err := os.Stat(mnt); err != nil {
			mnt = root
		}
		dirs = append(dirs, filepath.Join(mnt, m.parent))
	}
	return pruneDirs(dirs)
}

type v1Group struct {
	cg     cgroup1.Cgroup
	dirs   []string
	cpuDir string // the cpu controller's, among dirs
}

func (g *v1Group) Add(pid int) error {
	return g.cg.AddProc(uint64(pid))
}

func (g *v1Group) Pids() ([]int, error) {
	ps, err := g.cg.Processes(cgroup1.Memory, true)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Pid)
	}
	return out, nil
}

func (g *v1Group) Stats() (Stats, error) {
	st, err := g.cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Stats{}, err
	}
	var out Stats
	if st.CPU != nil && st.CPU.Usage != nil {
		out.CPU = time.Duration(st.CPU.Usage.Total)
	}
	if st.Memory != nil {
		out.Cache = st.Memory.Cache
		if st.Memory.Usage != nil {
			out.Memory, out.MemLimit = st.Memory.Usage.Usage, st.Memory.Usage.Limit
		}
	}
	return out, nil
}

func (g *v1Group) Freeze() error { return g.cg.Freeze() }
func (g *v1Group) Thaw() error   { return g.cg.Thaw() }

// SetCPUWeight writes the one file: the library's Update visits every
// controller, and this is on the create path.
func (g *v1Group) SetCPUWeight(weight int) error {
	if err := checkWeight(weight); err != nil {
		return err
	}
	if g.cpuDir == "" {
		return errors.New("no cpu controller in the cgroup v1 hierarchies")
	}
	return writeCgroupFile(filepath.Join(g.cpuDir, "cpu.shares"), strconv.FormatUint(v1Shares(weight), 10))
}

// Delete removes the group's directories. The library's Delete walks each
// hierarchy's tree for processes first, and sleeps 10 ms and more between
// tries; a sandbox's group is deleted once its processes are gone, so an
// rmdir suffices. A task that has just exited may keep a group busy for a
// moment: the caller retries.
func (g *v1Group) Delete() error {
	for _, d := range g.dirs {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing cgroup %s: %w", d, err)
		}
	}
	return nil
}

// v2 uses the unified hierarchy.
type v2 struct{ parent string }

const v2Mount = "/sys/fs/cgroup"

func (m *v2) Kind() string { return "cgroup v2" }

func (m *v2) Create(name string, l Limits) (Group, error) {
	if l.CPUWeight != 0 {
		if err := checkWeight(l.CPUWeight); err != nil {
			return nil, fmt.Errorf("creating cgroup %s/%s: %w", m.parent, name, err)
		}
	}
	res := cgroup2.ToResources(resources(l))
	if l.CPUWeight > 0 { // as given, not converted back from shares
		w := uint64(l.CPUWeight)
		res.CPU.Weight = &w
	}
	mg, err := cgroup2.NewManager(v2Mount, "/"+m.parent+"/"+name, res)
	if err != nil {
		return nil, fmt.Errorf("creating cgroup %s/%s: %w", m.parent, name, err)
	}
	return &v2Group{m: mg, path: filepath.Join(v2Mount, m.parent, name)}, nil
}

func (m *v2) Load(name string) (Group, error) {
	mg, err := cgroup2.Load("/"+m.parent+"/"+name, cgroup2.WithMountpoint(v2Mount))
	if err != nil {
		return nil, fmt.Errorf("loading cgroup %s/%s: %w", m.parent, name, err)
	}
	return &v2Group{m: mg, path: filepath.Join(v2Mount, m.parent, name)}, nil
}

func (m *v2) List() ([]string, error) { return listDirs(filepath.Join(v2Mount, m.parent)) }

func (m *v2) Prune() error { return pruneDirs([]string{filepath.Join(v2Mount, m.parent)}) }

type v2Group struct {
	m    *cgroup2.Manager
	path string // under v2Mount
}

func (g *v2Group) Add(pid int) error { return g.m.AddProc(uint64(pid)) }

func (g *v2Group) Pids() ([]int, error) {
	ps, err := g.m.Procs(true)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(ps))
	for _, p := range ps {
		out = append(out, int(p))
	}
	return out, nil
}

func (g *v2Group) Stats() (Stats, error) {
	st, err := g.m.Stat()
	if err != nil {
		return Stats{}, err
	}
	var out Stats
	if st.CPU != nil {
		out.CPU = time.Duration(st.CPU.UsageUsec) * time.Microsecond
	}
	if st.Memory != nil {
		out.Memory, out.Cache, out.MemLimit = st.Memory.Usage, st.Memory.File, st.Memory.UsageLimit
	}
	return out, nil
}

// Freeze returns once the kernel reports every task stopped: writing
// cgroup.freeze only asks (a task first finishes the system call it is
// in), and the library checks what was asked, not what happened. Callers
// copy a frozen sandbox's files and count on no write landing meanwhile.
func (g *v2Group) Freeze() error {
	if err := g.m.Freeze(); err != nil {
		return err
	}
	events := filepath.Join(g.path, "cgroup.events")
	for deadline := time.Now().Add(time.Second); ; {
		b, err := os.ReadFile(events)
		if err != nil {
			return fmt.Errorf("waiting for the freeze: %w", err)
		}
		if bytes.Contains(b, []byte("\nfrozen 1")) || bytes.HasPrefix(b, []byte("frozen 1")) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s did not freeze within a second", g.path)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func (g *v2Group) Thaw() error { return g.m.Thaw() }

func (g *v2Group) SetCPUWeight(weight int) error {
	if err := checkWeight(weight); err != nil {
		return err
	}
	return writeCgroupFile(filepath.Join(g.path, "cpu.weight"), strconv.Itoa(weight))
}

// writeCgroupFile writes one control file.
func writeCgroupFile(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func (g *v2Group) Delete() error { return g.m.Delete() }

func listDirs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing cgroups in %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// pruneDirs removes each dir and its empty ancestors below the hierarchy
// root; a dir that still has groups (or tasks) stays.
func pruneDirs(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		for p := d; strings.Count(p, "/") > 4; p = filepath.Dir(p) {
			if err := os.Remove(p); err != nil {
				if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.ENOTEMPTY) {
					errs = append(errs, err)
				}
				break
			}
		}
	}
	return errors.Join(errs...)
}
