package sandbox

import "testing"

func TestParseMemAvailable(t *testing.T) {
	got, err := parseMemAvailable([]byte("MemTotal:       24542048 kB\nMemFree:         1234 kB\nMemAvailable:   20153296 kB\nBuffers: 1 kB\n"))
	if err != nil || got != 20153296<<10 {
		t.Fatalf("parseMemAvailable = %d, %v; want %d", got, err, int64(20153296)<<10)
	}
	for _, bad := range []string{"MemTotal: 1 kB\n", "MemAvailable: x kB\n", "MemAvailable: 12 MB\n"} {
		if _, err := parseMemAvailable([]byte(bad)); err == nil {
			t.Errorf("parseMemAvailable(%q) succeeded", bad)
		}
	}
	if _, err := memAvailable(); err != nil {
		t.Fatalf("this host's /proc/meminfo: %v", err)
	}
}
