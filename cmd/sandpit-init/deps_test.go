package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the init small: each sandbox starts it, and a Go
// program runs the initialisers of every package it links. Of this module
// it may import only sandboxinit, and nothing that brings the agent's
// protocol, HTTP or TLS code along.
func TestDependencies(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not on PATH")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/sandpit-dev/sandpit/"
	for _, pkg := range strings.Fields(string(out)) {
		switch {
		case pkg == mod+"cmd/sandpit-init", pkg == mod+"internal/runtime/linux/sandboxinit":
		case strings.HasPrefix(pkg, mod):
			t.Errorf("the init imports %s", pkg)
		case pkg == "net/http", pkg == "crypto/tls", strings.HasPrefix(pkg, "google.golang.org/protobuf"), strings.HasPrefix(pkg, "connectrpc.com"):
			t.Errorf("the init links %s", pkg)
		}
	}
}
