package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The data dir holds every sandbox's environment and access token (in the
// database), its writable layers, and template layers with set-uid
// binaries: it is root's alone. Sandboxes never reach into it by path:
// their layers come to them as idmapped mounts the daemon makes.
const (
	dataDirMode = 0o700
	// apiKeyFile is where the first start leaves the generated API key.
	apiKeyFile = "api-key"
)

// privateDirs are the data dir's subdirectories. Earlier versions made them
// reachable by every host user (0711 or 0755); secureDataDir closes them
// again, so an upgraded data dir is as private as a fresh one even if the
// data dir's own mode is later loosened by hand.
var privateDirs = []string{"templates", "sandboxes", "builds"}

// secureDataDir creates the data dir, or takes an existing one (of any
// earlier version) back to root-only permissions.
func secureDataDir(dir string) error {
	if err := os.MkdirAll(dir, dataDirMode); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	if err := os.Chmod(dir, dataDirMode); err != nil {
		return fmt.Errorf("data dir permissions: %w", err)
	}
	for _, name := range privateDirs {
		if err := chmodIfExists(filepath.Join(dir, name), dataDirMode); err != nil {
			return err
		}
	}
	return chmodIfExists(filepath.Join(dir, apiKeyFile), 0o600)
}

func chmodIfExists(path string, mode fs.FileMode) error {
	if err := os.Chmod(path, mode); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("securing %s: %w", path, err)
	}
	return nil
}
