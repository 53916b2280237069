package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// metrics is GET /metrics's body (wire spec §3.2).
type metrics struct {
	Timestamp   int64   `json:"ts"`
	CPUCount    int     `json:"cpu_count"`
	CPUUsedPct  float64 `json:"cpu_used_pct"`
	MemTotal    uint64  `json:"mem_total"`
	MemUsed     uint64  `json:"mem_used"`
	MemCache    uint64  `json:"mem_cache"`
	MemTotalMiB uint64  `json:"mem_total_mib"`
	MemUsedMiB  uint64  `json:"mem_used_mib"`
	DiskUsed    uint64  `json:"disk_used"`
	DiskTotal   uint64  `json:"disk_total"`
}

// metricsSampler keeps the previous /proc/stat sample, so CPU use is the
// share since the last request (since boot on the first).
type metricsSampler struct {
	mu         sync.Mutex
	prevBusy   uint64
	prevTotal  uint64
	cgroupRoot string // "" means /sys/fs/cgroup
}

func (a *Agent) serveMetrics(w http.ResponseWriter, r *http.Request) {
	m := a.metrics.sample()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(m)
}

func (s *metricsSampler) sample() metrics {
	m := metrics{Timestamp: time.Now().Unix(), CPUCount: runtime.NumCPU()}
	root := s.cgroupRoot
	if root == "" {
		root = "/sys/fs/cgroup"
	}
	if n := cgroupCPUs(root); n > 0 {
		m.CPUCount = n
	}
	if busy, total, ok := procStatCPU(); ok {
		s.mu.Lock()
		db, dt := busy-s.prevBusy, total-s.prevTotal
		s.prevBusy, s.prevTotal = busy, total
		s.mu.Unlock()
		if dt > 0 {
			m.CPUUsedPct = math.Round(float64(db)/float64(dt)*10000) / 100
		}
	}
	mi := meminfo()
	m.MemTotal = mi["MemTotal"]
	m.MemUsed = m.MemTotal - min(m.MemTotal, mi["MemAvailable"])
	m.MemCache = mi["Cached"]
	// Inside a memory-limited cgroup the limit is the sandbox's total.
	if limit, ok := readUint(root + "/memory.max"); ok && limit > 0 && (m.MemTotal == 0 || limit < m.MemTotal) {
		m.MemTotal = limit
		if cur, ok := readUint(root + "/memory.current"); ok {
			m.MemUsed = min(cur, limit)
		}
	}
	m.MemTotalMiB, m.MemUsedMiB = m.MemTotal>>20, m.MemUsed>>20
	var st unix.Statfs_t
	if unix.Statfs("/", &st) == nil {
		bs := uint64(st.Bsize)
		m.DiskTotal = st.Blocks * bs
		m.DiskUsed = (st.Blocks - st.Bfree) * bs
	}
	return m
}

// procStatCPU returns busy and total jiffies from /proc/stat's cpu line.
func procStatCPU() (busy, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, true
}

// meminfo returns /proc/meminfo in bytes.
func meminfo() map[string]uint64 {
	out := map[string]uint64{}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n <<= 10
		}
		out[k] = n
	}
	return out
}

// cgroupCPUs returns the CPU quota of the cgroup at root rounded up, or 0.
func cgroupCPUs(root string) int {
	b, err := os.ReadFile(root + "/cpu.max")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	quota, err1 := strconv.ParseFloat(f[0], 64)
	period, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || period <= 0 {
		return 0
	}
	return int(math.Ceil(quota / period))
}

// readUint reads a cgroup file holding one number ("max" is not one).
func readUint(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}
