// Package sandpittest starts a real sandpit server for tests, the way
// net/http/httptest starts an HTTP server: tests of code built on the SDK
// (the SDK's own, the examples', the CLI's) run against the real thing.
//
// The server needs root (sandboxes use namespaces, mounts and cgroups);
// Start says so in its error when the process is not root.
package sandpittest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotRoot is returned by Start when the process is not root.
var ErrNotRoot = errors.New("sandpit serve needs root to create sandboxes")

// Server is a running sandpit server.
type Server struct {
	// URL is the server's base URL; it serves both the API and sandbox
	// traffic (use it as SANDPIT_URL).
	URL string
	// APIKey is a key the server accepts.
	APIKey string
	// Bin is the sandpit binary it runs.
	Bin string

	cmd     *exec.Cmd
	dataDir string
	log     *syncBuffer
	exited  chan struct{}
	once    sync.Once
}

// Options configure Start.
type Options struct {
	// Bin is the sandpit binary. Default: $SANDPIT_BIN, else a fresh static
	// build of ./cmd/sandpit from the module at RepoRoot.
	Bin string
	// RepoRoot is the sandpit module's root, for building. Default: found
	// by walking up from the working directory to go.mod.
	RepoRoot string
	// Args are extra arguments to `sandpit serve`.
	Args []string
}

// Start builds sandpit if needed and starts `sandpit serve` on a free
// loopback port with a fresh data directory and API key, and returns once
// it answers. Close stops it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	bin := opts.Bin
	if bin == "" {
		bin = os.Getenv("SANDPIT_BIN")
	}
	if bin == "" {
		var err error
		if bin, err = Build(ctx, opts.RepoRoot); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "sandpittest-")
	if err != nil {
		return nil, err
	}
	key := NewAPIKey()
	s := &Server{
		URL:     fmt.Sprintf("http://127.0.0.1:%d", port),
		APIKey:  key,
		Bin:     bin,
		dataDir: dataDir,
		log:     &syncBuffer{},
		exited:  make(chan struct{}),
	}
	// The data dir goes with the server, so its sandboxes go too.
	args := append([]string{"serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", dataDir, "--kill-on-stop"}, opts.Args...)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = append(os.Environ(), "SANDPIT_API_KEY="+key)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dataDir)
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return s, nil
			}
		}
		select {
		case <-s.exited:
			log := s.Log()
			s.Close()
			return nil, fmt.Errorf("sandpit serve exited at start:\n%s", log)
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log := s.Log()
			s.Close()
			return nil, fmt.Errorf("sandpit serve did not answer /health within 60s:\n%s", log)
		}
	}
}

// Env returns the environment variables that point the SDK and the CLI at
// the server.
func (s *Server) Env() []string {
	return []string{"SANDPIT_URL=" + s.URL, "SANDPIT_API_KEY=" + s.APIKey}
}

// Pid is the server process's id, for benchmarks that read its CPU time.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Log returns what the server has logged so far.
func (s *Server) Log() string { return s.log.String() }

// Close stops the server (SIGTERM, then SIGKILL after 20s) and removes its
// data directory. Safe to call twice.
func (s *Server) Close() {
	s.once.Do(func() {
		if s.cmd.Process != nil {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(20 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.exited
			}
		}
		os.RemoveAll(s.dataDir)
	})
}

// NewAPIKey returns a random key of the shape E2B's SDKs accept.
func NewAPIKey() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return "e2b_" + hex.EncodeToString(b[:])
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// Build builds a static sandpit binary (once per process), with
// sandpit-agent beside it (the binary sandboxes run), and returns the
// daemon's path. The agent runs inside sandboxes, so it must not need
// libc: CGO is off.
//
// The binaries go into the user's cache directory under a name taken from
// their digest, so every test process built from the same source shares
// one copy and repeated runs do not leave 80 MB each behind; copies unused
// for a day are removed.
func Build(ctx context.Context, repoRoot string) (string, error) {
	buildOnce.Do(func() {
		if repoRoot == "" {
			if repoRoot, buildErr = findRepoRoot(); buildErr != nil {
				return
			}
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			buildErr = fmt.Errorf("finding a directory for the test binaries: %w", err)
			return
		}
		buildBin, buildErr = build(ctx, repoRoot, filepath.Join(cache, "sandpittest"))
	})
	return buildBin, buildErr
}

// binNames are the binaries Build makes, one go build for all, so that
// the daemon takes the agent and the init beside it as its own.
var binNames = []string{"sandpit", "sandpit-agent", "sandpit-init"}

// binMaxAge is how long a cached build may go unused before a later Build
// removes it.
const binMaxAge = 24 * time.Hour

// build builds the binaries into a directory under root named by their
// digest and returns the daemon's path.
func build(ctx context.Context, repoRoot, root string) (string, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("making %s: %w", root, err)
	}
	tmp, err := os.MkdirTemp(root, "build-")
	if err != nil {
		return "", err
	}
	args := []string{"build", "-trimpath", "-o", tmp + "/"}
	for _, n := range binNames {
		args = append(args, "./cmd/"+n)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("building sandpit: %v\n%s", err, out)
	}
	sum, err := digest(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	dir := filepath.Join(root, "bin-"+sum)
	if err := os.Rename(tmp, dir); err != nil {
		// Another process built the same binaries first: use its copy.
		os.RemoveAll(tmp)
		if _, serr := os.Stat(filepath.Join(dir, binNames[0])); serr != nil {
			return "", fmt.Errorf("keeping the build in %s: %w", dir, err)
		}
		now := time.Now()
		_ = os.Chtimes(dir, now, now)
	}
	prune(root, dir)
	return filepath.Join(dir, binNames[0]), nil
}

// digest names the binaries in dir by their contents.
func digest(dir string) (string, error) {
	h := sha256.New()
	for _, n := range binNames {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", n, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}

// prune removes the builds under root, other than keep, unused for
// binMaxAge: an old one's tests have long finished.
func prune(root, keep string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(root, e.Name())
		info, err := e.Info()
		if p == keep || err != nil || time.Since(info.ModTime()) < binMaxAge {
			continue
		}
		if strings.HasPrefix(e.Name(), "bin-") || strings.HasPrefix(e.Name(), "build-") {
			os.RemoveAll(p)
		}
	}
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/sandpit-dev/sandpit\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the sandpit module root above the working directory; set SANDPIT_BIN")
		}
		dir = parent
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for the server's two output streams.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
