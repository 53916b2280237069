package fake

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
)

var _ runtime.Snapshotter = (*Fake)(nil)

// Snapshot implements runtime.Snapshotter: the copy of a fake sandbox's
// writable layer is dir/0 holding one file, "from", naming the sandbox.
func (f *Fake) Snapshot(ctx context.Context, id, dir string, _ runtime.SnapshotOptions) (runtime.SnapshotStats, error) {
	f.mu.Lock()
	_, ok := f.sandboxes[id]
	f.mu.Unlock()
	if !ok {
		return runtime.SnapshotStats{}, errdefs.New(errdefs.ErrNotFound, "sandbox "+id+" not found")
	}
	if err := os.MkdirAll(filepath.Join(dir, "0"), 0o755); err != nil {
		return runtime.SnapshotStats{}, fmt.Errorf("snapshotting %s: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "0", "from"), []byte(id), 0o644); err != nil {
		return runtime.SnapshotStats{}, fmt.Errorf("snapshotting %s: %w", id, err)
	}
	return runtime.SnapshotStats{Bytes: int64(len(id)), Files: 1}, nil
}
