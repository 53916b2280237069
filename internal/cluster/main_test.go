package cluster

import (
	"fmt"
	"os"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/cluster/clustertest"
)

// cp is the package's one control plane: starting kube-apiserver takes
// seconds, so the tests share it and keep apart by object names.
var cp *clustertest.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sandpit-cluster-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cp, err = clustertest.Start(dir)
	switch {
	case err == clustertest.ErrNoBinaries:
		cp = nil // tests that need it skip, saying why
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		return 1
	default:
		defer func() {
			if err := cp.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}()
	}
	return m.Run()
}

// controlPlane returns the shared control plane, or skips t without one.
func controlPlane(t *testing.T) *clustertest.ControlPlane {
	t.Helper()
	if cp == nil {
		t.Skip(clustertest.ErrNoBinaries)
	}
	return cp
}

// client returns a Client of namespace sandpit on the shared control plane.
func client(t *testing.T) *Client {
	t.Helper()
	cfg, err := Config(controlPlane(t).Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(cfg, "sandpit")
	if err != nil {
		t.Fatal(err)
	}
	return c
}
