// Package clustertest starts a real Kubernetes control plane (etcd and
// kube-apiserver on loopback, sandpit's CRDs applied) for tests, through
// test/cluster/up.sh, and stops it through down.sh.
package clustertest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Cached binaries, as test/cluster/build-bins.sh writes them.
const (
	KubeVersion = "v1.37.2"
	EtcdVersion = "v3.7.3"
)

// ErrNoBinaries means etcd or kube-apiserver are not built: tests skip.
var ErrNoBinaries = errors.New("kube-apiserver or etcd not built: run test/cluster/build-bins.sh (make cluster-bins; about 5 minutes, cached in /var/cache/sandpit)")

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	Dir        string
	Kubeconfig string
	Repo       string
}

// RepoRoot finds the repository from the working directory (a test's is
// its package directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "test", "cluster", "up.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("test/cluster/up.sh not found above the working directory")
		}
		dir = parent
	}
}

func cacheDir() string {
	if d := os.Getenv("SANDPIT_CLUSTER_CACHE"); d != "" {
		return d
	}
	return "/var/cache/sandpit"
}

// Built reports whether the cached binaries are there.
func Built() bool {
	for _, p := range []string{
		filepath.Join(cacheDir(), "kube-"+KubeVersion, "kube-apiserver"),
		filepath.Join(cacheDir(), "etcd-"+EtcdVersion, "etcd"),
	} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// Start runs up.sh with the control plane only into dir, which must not
// exist or be empty. With the binaries missing it returns ErrNoBinaries
// rather than spend minutes building them.
func Start(dir string) (*ControlPlane, error) {
	if !Built() {
		return nil, ErrNoBinaries
	}
	repo, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(repo, "test", "cluster", "up.sh"), dir)
	cmd.Env = append(os.Environ(), "CLUSTER_CONTROL_PLANE_ONLY=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("test/cluster/up.sh %s: %w\n%s", dir, err, stderr.String())
	}
	cp := &ControlPlane{Dir: dir, Repo: repo}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "export KUBECONFIG="); ok {
			cp.Kubeconfig = v
		}
	}
	if cp.Kubeconfig == "" {
		_ = cp.Stop()
		return nil, fmt.Errorf("test/cluster/up.sh printed no KUBECONFIG:\n%s", out)
	}
	return cp, nil
}

// Stop runs down.sh: nothing of the control plane is left.
func (cp *ControlPlane) Stop() error {
	out, err := exec.Command(filepath.Join(cp.Repo, "test", "cluster", "down.sh"), cp.Dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("test/cluster/down.sh %s: %w\n%s", cp.Dir, err, out)
	}
	return nil
}

// Kubectl runs kubectl against the control plane.
func (cp *ControlPlane) Kubectl(args ...string) ([]byte, error) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		kubectl = filepath.Join(cacheDir(), "kube-"+KubeVersion, "kubectl")
	}
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}
