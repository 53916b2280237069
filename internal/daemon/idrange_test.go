package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/config"
)

// idsConfig is a daemon configuration that touches little of the host: no
// cgroups, disk quotas, network or warm pool.
func idsConfig(t *testing.T) config.Daemon {
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.NoCgroups, cfg.NoDiskQuota, cfg.NoInternet, cfg.NoAudit = true, true, true, true
	cfg.WarmPool = nil
	cfg.Listen = "127.0.0.1:0"
	cfg.IDFiles = config.IDFiles{}
	return cfg
}

// leave makes state, a runtime's state dir, look as if an earlier run with
// uid base base left a sandbox there.
func leave(t *testing.T, state string, base int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(state, "ileft"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"ileft/slot": "0", "uid-base": strconv.Itoa(base)} {
		if err := os.WriteFile(filepath.Join(state, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A uid range over ids /etc/subuid delegates is refused before anything
// is made.
func TestServeRefusesUIDRangeOverSubuid(t *testing.T) {
	cfg := idsConfig(t)
	sub := filepath.Join(t.TempDir(), "subuid")
	if err := os.WriteFile(sub, []byte("podman:1048576:65536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.IDFiles.SubUID = sub
	_, err := New(t.Context(), cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "overlaps "+sub+" line 1 (podman:1048576:65536") {
		t.Fatalf("New = %v, want the overlap named", err)
	}
	if ents, _ := os.ReadDir(cfg.DataDir); len(ents) != 0 {
		t.Errorf("a refused start made %d entries in the data dir", len(ents))
	}
}

// Sandboxes left with another uid base stop the start with what to do;
// build sandboxes left so are ended instead (builds are never taken over).
func TestServeWithChangedUIDBase(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the daemon needs root")
	}
	cfg := idsConfig(t)
	leave(t, filepath.Join(cfg.DataDir, "builds"), 5<<20)
	d, err := New(t.Context(), cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err != nil {
		t.Fatalf("a build left with another uid base stopped the start: %v", err)
	}
	d.close(t.Context())
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "builds", "ileft")); !os.IsNotExist(err) {
		t.Errorf("the build left is still there: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(cfg.DataDir, "builds", "uid-base")); strings.TrimSpace(string(b)) != strconv.Itoa(1<<20+4096*65536) {
		t.Errorf("builds' uid base = %q", b)
	}

	leave(t, filepath.Join(cfg.DataDir, "sandboxes"), 5<<20)
	_, err = New(t.Context(), cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "from uid base 5242880, not 1048576") ||
		!strings.Contains(err.Error(), "start with the --uid-base (5242880) and --max-sandboxes of the run that left them") {
		t.Fatalf("New over sandboxes of another uid base = %v", err)
	}
}
