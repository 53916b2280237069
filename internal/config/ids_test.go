package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUIDRangeValidation(t *testing.T) {
	c := Defaults()
	if first, last := c.UIDRange(); first != 1<<20 || last != 1<<20+(4096+64)*65536-1 {
		t.Fatalf("default uid range %d..%d", first, last)
	}
	for _, tc := range []struct {
		base, max int
		want      string // "" valid
	}{
		{1 << 20, 4096, ""},
		{65536, 1, ""},
		{1 << 20, 65455, ""}, // the most that fit above 1<<20
		{1 << 20, 65456, "passes 4294967294, the last 32-bit id; lower --uid-base or --max-sandboxes (at most 65455 with this base)"},
		{1000, 10, "uid base 1000 is below 65536"},
		{1 << 20, 0, "max sandboxes 0: want at least 1"},
		{1<<32 - 65536, 1, "passes 4294967294"},
	} {
		c := Defaults()
		c.UIDBase, c.MaxSandboxes = tc.base, tc.max
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("base %d max %d: %v", tc.base, tc.max, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("base %d max %d: %v, want %q", tc.base, tc.max, err, tc.want)
		}
	}
	c = Defaults()
	c.MaxPendingCreates, c.MinFreeMemory = -1, -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "max pending creates -1") || !strings.Contains(err.Error(), "min free memory") {
		t.Errorf("negative bounds: %v", err)
	}
}

// The uid range must stay clear of the ranges /etc/subuid and /etc/subgid
// delegate to users (rootless podman, docker) and of the host's users.
func TestCheckHostIDs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := Defaults()
	c.IDFiles = IDFiles{
		SubUID: write("subuid", "# rootless users\nalice:100000:65536\n\nbob:1000000:65536\nbroken line\n"),
		SubGID: write("subgid", "alice:100000:65536\n"),
		Passwd: write("passwd", "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\nldap:x:300000000:1::/:/bin/sh\n"),
		Group:  write("group", "root:x:0:\n"),
	}
	// The default range, 1048576..273678335, ends below the LDAP user;
	// bob's 1000000..1065535 overlaps its start.
	err := c.CheckHostIDs()
	if err == nil {
		t.Fatal("an overlap with bob's subordinate uids passed")
	}
	for _, want := range []string{
		"the sandboxes' uid range 1048576..273678335 (--uid-base 1048576, --max-sandboxes 4096 and 64 for template builds) overlaps " +
			c.IDFiles.SubUID + " line 4 (bob:1000000:65536, uids 1000000..1065535 delegated to bob); choose a --uid-base past 1065535",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\ndoes not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), "broken") {
		t.Errorf("error names ranges that do not overlap: %v", err)
	}

	c.UIDBase = 1065536 // right past bob
	if err := c.CheckHostIDs(); err != nil {
		t.Fatalf("a range clear of every file: %v", err)
	}
	c.MaxSandboxes = 5000 // now reaches the LDAP user
	if err := c.CheckHostIDs(); err == nil || !strings.Contains(err.Error(), "holds the host user ldap (id 300000000, "+c.IDFiles.Passwd+" line 3)") {
		t.Fatalf("a range over a host user: %v", err)
	}
	// Missing files hold nothing.
	c.IDFiles = IDFiles{SubUID: filepath.Join(dir, "none"), SubGID: filepath.Join(dir, "none")}
	if err := c.CheckHostIDs(); err != nil {
		t.Fatal(err)
	}
}

func TestBytes(t *testing.T) {
	for in, want := range map[string]Bytes{"0": 0, "256MiB": 256 << 20, "256M": 256 << 20, "10TiB": 10 << 40, "1GiB": 1 << 30, "512KiB": 512 << 10, "100B": 100} {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "256", "-1MiB", "1.5GiB", "MiB", "99999999999TiB"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", bad)
		}
	}
	for b, want := range map[Bytes]string{0: "0", 256 << 20: "256MiB", 1 << 30: "1GiB", 10 << 40: "10TiB", 1536 << 20: "1536MiB", 100: "100B"} {
		if got := b.String(); got != want {
			t.Errorf("Bytes(%d).String() = %q, want %q", int64(b), got, want)
		}
	}
}
