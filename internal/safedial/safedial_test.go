package safedial_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/safedial"
)

func TestRule(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1":        "loopback",
		"127.1.2.3":        "loopback",
		"::1":              "loopback",
		"::ffff:127.0.0.1": "loopback",
		"10.1.2.3":         "private",
		"172.16.0.1":       "private",
		"192.168.1.1":      "private",
		"100.64.0.1":       "shared/carrier-grade NAT",
		"169.254.169.254":  "link-local/cloud metadata",
		"fe80::1":          "link-local",
		"fd00::1":          "unique-local",
		"0.0.0.0":          "unspecified/this-network",
		"::":               "unspecified",
		"224.0.0.1":        "multicast",
		"ff02::1":          "multicast",
		"255.255.255.255":  "reserved",
		"8.8.8.8":          "",
		"2606:4700::1111":  "",
		"172.32.0.1":       "",
	} {
		if got := safedial.Rule(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Rule(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestDialRefusesLoopbackUnlessAllowed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)

	d, err := safedial.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{addr, "localhost:" + port} {
		_, err = d.DialContext(t.Context(), "tcp", target)
		var be *safedial.BlockedError
		if !errors.As(err, &be) || be.Rule != "loopback" || !errors.Is(err, errdefs.ErrInvalidArgument) ||
			!strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), "loopback") {
			t.Fatalf("dial %s without an allow-list: %v, want a refusal naming it and the loopback rule", target, err)
		}
	}

	for _, allow := range []string{addr, "127.0.0.1", "LOCALHOST:" + port} {
		d, err := safedial.New([]string{allow})
		if err != nil {
			t.Fatal(err)
		}
		target := addr
		if strings.HasPrefix(allow, "LOCALHOST") {
			target = "localhost:" + port
		}
		c, err := d.DialContext(t.Context(), "tcp", target)
		if err != nil {
			t.Fatalf("dial %s allowed by %q: %v", target, allow, err)
		}
		c.Close()
	}

	// Another port of an allowed host:port is still refused.
	d, _ = safedial.New([]string{"127.0.0.1:1"})
	if _, err := d.DialContext(t.Context(), "tcp", addr); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("dial %s with only 127.0.0.1:1 allowed: %v", addr, err)
	}
}

func TestParseAllow(t *testing.T) {
	for in, want := range map[string]string{
		"Registry.Local:5000": "registry.local:5000",
		"10.0.0.5":            "10.0.0.5",
		"[fd00::1]:5000":      "[fd00::1]:5000",
		"[fd00::1]":           "fd00::1",
	} {
		if got, err := safedial.ParseAllow(in); err != nil || got != want {
			t.Errorf("ParseAllow(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "http://x", "x/y", ":5000", "a b"} {
		if _, err := safedial.ParseAllow(bad); err == nil {
			t.Errorf("ParseAllow(%q) accepted", bad)
		}
	}
}
