package daemon_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/sandpit-dev/sandpit/internal/egress"
	"github.com/sandpit-dev/sandpit/internal/intercept"
	"github.com/sandpit-dev/sandpit/internal/secrets"
)

// census counts what one daemon holds on the host, by kind: each entry
// names one thing (a pid, a mount point, a link), so a leak is reported
// with what is left, not as a number. Other daemons and tests share the
// host (`go test ./...` runs packages side by side), so everything is
// attributed to this daemon by its data dir, its cgroup parents or its
// egress pool, never counted host-wide.
type census map[string][]string

// hostScope says which daemon a census is of.
type hostScope struct {
	dataDir string       // absolute
	cgroup  string       // "sandpit/<hash>": the daemon's cgroup parent
	pool    netip.Prefix // its egress pool (a pool of its own)
	table   string       // its nftables table
	daemon  int          // its pid, left out of the processes; 0 when stopped
}

func newHostScope(dataDir string, pool netip.Prefix) hostScope {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	// As the daemon names its cgroup parent (daemon.cgroupParent).
	sum := sha256.Sum256([]byte(abs))
	return hostScope{
		dataDir: abs,
		cgroup:  "sandpit/" + hex.EncodeToString(sum[:4]),
		pool:    pool.Masked(),
		table:   egress.HostTableName(pool),
	}
}

// The kinds of thing a census counts.
const (
	kindProcess = "sandbox process"
	kindMount   = "mount"
	kindMountNS = "mount namespace"
	kindLoop    = "loop device"
	kindVeth    = "veth"
	kindNft     = "nftables element"
	kindCgroup  = "cgroup"
	kindFile    = "file outside the stores"
	kindLayer   = "template layer"
)

var censusKinds = []string{kindProcess, kindMount, kindMountNS, kindLoop, kindVeth, kindNft, kindCgroup, kindFile, kindLayer}

// take counts everything; an error reading a source is itself reported
// under its kind, so it cannot pass for "nothing left".
func (s hostScope) take() census {
	c := census{}
	s.processes(c)
	s.mounts(c)
	s.loops(c)
	s.veths(c)
	s.nftables(c)
	s.cgroups(c)
	s.files(c)
	s.layers(c)
	for k := range c {
		sort.Strings(c[k])
	}
	return c
}

// leftSince lists, by kind, what c holds that before did not.
func (c census) leftSince(before census) map[string][]string {
	out := map[string][]string{}
	for _, k := range censusKinds {
		for _, item := range c[k] {
			if !slices.Contains(before[k], item) {
				out[k] = append(out[k], item)
			}
		}
	}
	return out
}

// summary is "kind: n, ..." for a log line.
func (c census) summary() string {
	var parts []string
	for _, k := range censusKinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, len(c[k])))
	}
	return strings.Join(parts, ", ")
}

// processes are those in one of the daemon's cgroups, or in a mount
// namespace whose mounts come from its data dir (a sandbox that left its
// cgroup, or never got one, still shows there). The mount namespaces are
// counted too: one pinned without a process is found by the mounts it
// keeps busy in the data dir (kindMount).
func (s hostScope) processes(c census) {
	self, _ := os.Readlink("/proc/self/ns/mnt")
	nsOfDataDir := map[string]bool{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		c[kindProcess] = append(c[kindProcess], "reading /proc: "+err.Error())
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == s.daemon || pid == os.Getpid() {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		cg, err := os.ReadFile(filepath.Join(dir, "cgroup"))
		if err != nil {
			continue // gone meanwhile
		}
		why := ""
		if bytes.Contains(cg, []byte("/"+s.cgroup)) {
			why = "in its cgroup"
		}
		ns, _ := os.Readlink(filepath.Join(dir, "ns/mnt"))
		if ns != "" && ns != self {
			mine, seen := nsOfDataDir[ns]
			if !seen {
				mi, _ := os.ReadFile(filepath.Join(dir, "mountinfo"))
				mine = bytes.Contains(mi, []byte(s.dataDir+"/"))
				nsOfDataDir[ns] = mine
			}
			if mine && why == "" {
				why = "mounts from its data dir"
			}
		}
		if why == "" {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		c[kindProcess] = append(c[kindProcess], fmt.Sprintf("pid %d (%s), %s", pid, strings.TrimSpace(string(comm)), why))
	}
	for ns, mine := range nsOfDataDir {
		if mine {
			c[kindMountNS] = append(c[kindMountNS], ns)
		}
	}
}

// mounts are the host's mounts at or under the data dir, or whose source
// or options name it (overlays with their layers there, loop-mounted
// disks).
func (s hostScope) mounts(c census) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		c[kindMount] = append(c[kindMount], "reading mountinfo: "+err.Error())
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		point := unescapeMount(fields[4])
		if point == s.dataDir || strings.HasPrefix(point, s.dataDir+"/") || strings.Contains(line, s.dataDir+"/") {
			c[kindMount] = append(c[kindMount], point)
		}
	}
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// loops are loop devices backed by a file in the data dir (sandbox disks).
func (s hostScope) loops(c census) {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if back := strings.TrimSpace(string(b)); strings.HasPrefix(back, s.dataDir+"/") {
			dev := filepath.Base(filepath.Dir(filepath.Dir(f)))
			c[kindLoop] = append(c[kindLoop], dev+" on "+back)
		}
	}
}

// veths are host-side sandbox links addressed from the daemon's pool.
func (s hostScope) veths(c census) {
	links, err := netlink.LinkList()
	if err != nil {
		c[kindVeth] = append(c[kindVeth], "listing links: "+err.Error())
		return
	}
	for _, l := range links {
		name := l.Attrs().Name
		if !strings.HasPrefix(name, egress.LinkPrefix) {
			continue
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			continue // gone meanwhile
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && s.pool.Contains(ip) {
				c[kindVeth] = append(c[kindVeth], name+" "+a.IPNet.String())
				break
			}
		}
	}
}

// fixedChains are the chains the egress table is made with; it stays
// when the daemon stops (see TestSoak), they are not per sandbox.
var fixedChains = []string{"forward", "sandbox_out", "input", "postrouting"}

// nftables counts, in the daemon's table, what exists per sandbox (policy
// chains and entries of the policy map) and this daemon's rules in
// Docker's DOCKER-USER chain. The table and its fixed chains are host
// setup shared by daemons configured alike: they stay (see TestSoak).
func (s hostScope) nftables(c census) {
	add := func(item string) { c[kindNft] = append(c[kindNft], item) }
	conn, err := nftables.New()
	if err != nil {
		add("opening nftables: " + err.Error())
		return
	}
	chains, err := conn.ListChains()
	if err != nil {
		add("listing chains: " + err.Error())
		return
	}
	for _, ch := range chains {
		switch {
		case ch.Table.Family == nftables.TableFamilyINet && ch.Table.Name == s.table:
			if !slices.Contains(fixedChains, ch.Name) {
				add("chain " + s.table + " " + ch.Name)
			}
		case ch.Name == "DOCKER-USER":
			rules, err := conn.GetRules(ch.Table, ch)
			if err != nil {
				continue
			}
			for i, r := range rules {
				if bytes.Contains(r.UserData, []byte(s.table)) {
					add(fmt.Sprintf("rule %s DOCKER-USER #%d", ch.Table.Name, i))
				}
			}
		}
	}
	set, err := conn.GetSetByName(&nftables.Table{Family: nftables.TableFamilyINet, Name: s.table}, "policies")
	if err != nil {
		return // no table (yet): no elements
	}
	elems, err := conn.GetSetElements(set)
	if err != nil {
		add("listing the policy map: " + err.Error())
		return
	}
	for _, e := range elems {
		add("policy map entry " + string(bytes.TrimRight(e.Key, "\x00")))
	}
}

// cgroups are the groups at and below the daemon's parents (its own and
// its builds', "<parent>-builds") in every mounted hierarchy, v1 and v2.
func (s hostScope) cgroups(c census) {
	f, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		c[kindCgroup] = append(c[kindCgroup], "reading mountinfo: "+err.Error())
		return
	}
	for _, line := range strings.Split(string(f), "\n") {
		// "... mountpoint opts - fstype source superopts"
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !(strings.HasPrefix(post, "cgroup ") || strings.HasPrefix(post, "cgroup2 ")) {
			continue
		}
		fields := strings.Fields(pre)
		if len(fields) < 5 {
			continue
		}
		root := unescapeMount(fields[4])
		parents, _ := filepath.Glob(filepath.Join(root, s.cgroup+"*"))
		for _, p := range parents {
			_ = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					c[kindCgroup] = append(c[kindCgroup], path)
				}
				return nil
			})
		}
	}
}

// storeFiles are what the data dir keeps between runs: the database, the
// first API key, the template store (layers, built and snapshot
// templates) and the empty formatted disk images sandbox disks are copied
// from. sandboxes/ and builds/ hold per-sandbox state, which a daemon that
// killed its sandboxes must have removed; the directories themselves
// stay.
// The state dirs' uid-base records say which uid ranges their sandboxes
// use, for the next start: state, as the database is; so are the
// interception CA and the secrets key, made once for the daemon's life,
// and loops-added, the loop devices a run added and could not remove yet
// (a device left bound is counted as a loop device).
var storeFiles = []string{"sandpit.db", "sandpit.db-wal", "sandpit.db-shm", "api-key", "templates", "sandboxes", "builds",
	"sandboxes/uid-base", "builds/uid-base", "sandboxes/loops-added", "builds/loops-added",
	intercept.CAKeyFile, intercept.CACertFile, secrets.KeyFile}

// isDiskImage reports whether rel is an empty disk image
// ("sandboxes/ext4-1024m.img"), kept as a store; spares are not.
func isDiskImage(rel string) bool {
	ok, _ := filepath.Match("*/ext4-*m.img", rel)
	return ok
}

// files are the data dir's entries outside the stores, and work files
// left in the template store.
func (s hostScope) files(c census) {
	_ = filepath.WalkDir(s.dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path != s.dataDir || !errors.Is(err, fs.ErrNotExist) {
				c[kindFile] = append(c[kindFile], path+": "+err.Error())
			}
			return nil
		}
		rel, _ := filepath.Rel(s.dataDir, path)
		switch {
		case rel == ".":
			return nil
		case strings.HasPrefix(rel, "templates"+string(filepath.Separator)):
			// The template store: only the work files of a build, an
			// import or an upload (".tmp-…", ".build-…") are not kept.
			// They are made at the top of its directories, so layers'
			// own contents are not walked.
			if name := d.Name(); !strings.HasPrefix(name, ".tmp-") && !strings.HasPrefix(name, ".build-") {
				if d.IsDir() && strings.Count(rel, string(filepath.Separator)) >= 2 {
					return fs.SkipDir
				}
				return nil
			}
		case slices.Contains(storeFiles, rel), isDiskImage(rel):
			return nil
		}
		c[kindFile] = append(c[kindFile], rel)
		if d.IsDir() {
			return fs.SkipDir // its name says enough
		}
		return nil
	})
}

// layers are the template store's layers (built steps, snapshots, forks).
// The store keeps those of the templates and snapshots it holds; a test
// that removed all it made compares with the layers right after the
// daemon started.
func (s hostScope) layers(c census) {
	ents, _ := os.ReadDir(filepath.Join(s.dataDir, "templates", "layers"))
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") { // work dirs: see files
			c[kindLayer] = append(c[kindLayer], "templates/layers/"+e.Name())
		}
	}
}
