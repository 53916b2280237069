package linux

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAgentBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "sandpit")
	agent := filepath.Join(dir, AgentName)
	if err := os.WriteFile(exe, []byte("daemon"), 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := os.Chtimes(exe, now, now); err != nil {
		t.Fatal(err)
	}
	pick := func() (string, string) {
		t.Helper()
		p, why, err := agentBinary(exe)
		if err != nil {
			t.Fatal(err)
		}
		return p, why
	}
	if p, why := pick(); p != exe || why == "" {
		t.Errorf("without an agent: %q (%q), want the daemon with a reason", p, why)
	}
	if err := os.WriteFile(agent, []byte("agent"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, _ := pick(); p != exe {
		t.Errorf("with a non-executable agent: %q, want the daemon", p)
	}
	if err := os.Chmod(agent, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(agent, now, now.Add(-2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if p, why := pick(); p != agent {
		t.Errorf("with an agent built alongside: %q (%q), want %q", p, why, agent)
	}
	for _, d := range []time.Duration{-time.Hour, time.Hour} {
		if err := os.Chtimes(agent, now, now.Add(d)); err != nil {
			t.Fatal(err)
		}
		if p, why := pick(); p != exe || why == "" {
			t.Errorf("with an agent built %v from the daemon: %q (%q), want the daemon with a reason", d, p, why)
		}
	}
}

func TestInitBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "sandpit")
	agent := filepath.Join(dir, AgentName)
	init := filepath.Join(dir, InitName)
	now := time.Now()
	for _, f := range []string{exe, agent} {
		if err := os.WriteFile(f, []byte(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f, now, now); err != nil {
			t.Fatal(err)
		}
	}
	pick := func() (string, string) {
		t.Helper()
		p, why, err := initBinary(exe, agent)
		if err != nil {
			t.Fatal(err)
		}
		return p, why
	}
	if p, why := pick(); p != agent || why == "" {
		t.Errorf("without sandpit-init: %q (%q), want the agent with a reason", p, why)
	}
	if err := os.WriteFile(init, []byte("init"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(init, now, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if p, why := pick(); p != init || why != "" {
		t.Errorf("with sandpit-init built alongside: %q (%q), want %q", p, why, init)
	}
	if err := os.Chtimes(init, now, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p, why := pick(); p != agent || why == "" {
		t.Errorf("with a sandpit-init of another build: %q (%q), want the agent with a reason", p, why)
	}
}
