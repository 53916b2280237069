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

func TestDNSAndEgressLimits(t *testing.T) {
	got, err := ParseDNS("192.0.2.53, 198.51.100.53")
	if err != nil || len(got) != 2 || got[1].String() != "198.51.100.53" {
		t.Fatalf("ParseDNS: %v, %v", got, err)
	}
	if _, err := ParseDNS("dns.example"); err == nil {
		t.Error("a name was taken for a DNS server")
	}
	bad := Defaults()
	bad.DNS = []netip.Addr{netip.MustParseAddr("127.0.0.53"), netip.MustParseAddr("2001:db8::53")}
	bad.EgressMaxConns = -1
	err = bad.Validate()
	for _, want := range []string{"dns server 127.0.0.53", "dns server 2001:db8::53", "egress limits must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
	c := Defaults()
	c.EgressRate, c.EgressMaxConns = 1<<20, 100
	if rate, conns := c.EgressCeiling(); rate != 1<<20 || conns != 100 {
		t.Errorf("ceiling without maximums: %d %d, want the defaults", rate, conns)
	}
	c.EgressRateMax, c.EgressMaxConnsMax = 8<<20, 400
	if rate, conns := c.EgressCeiling(); rate != 8<<20 || conns != 400 {
		t.Errorf("ceiling: %d %d", rate, conns)
	}
}
