package daemon

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/config"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// TestFirstKeyIsAdminOfDefault: the key made on first start belongs to
// team default and is an admin (it is the operator's), and a second start
// makes none.
func TestFirstKeyIsAdminOfDefault(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenSQLite(t.Context(), filepath.Join(dir, "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := config.Defaults()
	cfg.DataDir = dir
	d := &Daemon{cfg: cfg, store: st}
	if err := d.firstKey(t.Context(), io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, apiKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := st.VerifyKey(t.Context(), strings.TrimSpace(string(b)))
	if err != nil || !ok || !p.Admin || p.Team.Name != store.DefaultTeamName || p.KeyName != "first" {
		t.Errorf("first key = %+v, %v, %v; want an admin of %s", p, ok, err, store.DefaultTeamName)
	}
	if err := d.firstKey(t.Context(), io.Discard); err != nil {
		t.Fatal(err)
	}
	if keys, err := st.ListKeys(t.Context(), ""); err != nil || len(keys) != 1 {
		t.Errorf("keys after a second start = %+v, %v; want the first only", keys, err)
	}
}
