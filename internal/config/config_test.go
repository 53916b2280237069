package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	bad := Defaults()
	bad.Listen = "nonsense"
	bad.DataDir = ""
	bad.MaxTimeout = 0
	bad.DefaultDiskMB = 1
	bad.EgressPool = netip.MustParsePrefix("10.0.0.0/30")
	bad.InsecureRegistries = []string{"registry.internal:5000", "http://10.0.0.5/v2"}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config validated")
	}
	for _, want := range []string{"listen address", "data dir", "max timeout", "default disk 1 MB", "egress pool 10.0.0.0/30", `insecure registry: allowed registry "http://10.0.0.5/v2"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "registry.internal:5000") {
		t.Errorf("a good insecure registry was refused: %v", err)
	}
}

func TestParseWarmPool(t *testing.T) {
	got, err := ParseWarmPool("base=2, code-interpreter-v1=1")
	if err != nil || got["base"] != 2 || got["code-interpreter-v1"] != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
	if got, err := ParseWarmPool("off"); err != nil || len(got) != 0 {
		t.Fatalf("off: %v, %v", got, err)
	}
	for _, bad := range []string{"base", "base=x", "=1", "base=-1", "base=1000"} {
		if _, err := ParseWarmPool(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestSandboxDomain(t *testing.T) {
	for _, tc := range []struct{ listen, domain, want string }{
		{"127.0.0.1:49982", "", "localhost:49982"},
		{"0.0.0.0:8080", "", "localhost:8080"},
		{"[::1]:49982", "", "localhost:49982"},
		{"127.0.0.1:49982", "sandbox.example.com", "sandbox.example.com"},
	} {
		c := Defaults()
		c.Listen, c.Domain = tc.listen, tc.domain
		if got := c.SandboxDomain(); got != tc.want {
			t.Errorf("listen %q domain %q: SandboxDomain() = %q, want %q", tc.listen, tc.domain, got, tc.want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "512M": 512 << 20, "512mb": 512 << 20,
		"1GiB": 1 << 30, " 2 G ": 2 << 30, "64k": 64 << 10, "1TiB": 1 << 40,
	} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5G", "12X", "512B", "99999999999T"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", bad)
		}
	}
}
