package sandpit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
	"github.com/sandpit-dev/sandpit/sdk/sandpittest"
)

// server is the one real server the package's tests share; nil when the
// tests cannot start one (then they skip, saying why in skipReason).
var (
	server     *sandpittest.Server
	skipReason string
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	// A connection maximum, so that TestNetworkLimits can ask past it.
	s, err := sandpittest.Start(ctx, sandpittest.Options{Args: []string{"--egress-max-conns-max", fmt.Sprint(sharedMaxConns)}})
	cancel()
	switch {
	case errors.Is(err, sandpittest.ErrNotRoot):
		skipReason = "integration tests need root to run sandpit serve (run as root, as CI does)"
	case err != nil:
		fmt.Fprintln(os.Stderr, "starting sandpit serve:", err)
		os.Exit(1)
	default:
		server = s
	}
	code := m.Run()
	if server != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "--- server log ---\n%s\n", server.Log())
		}
		server.Close()
	}
	os.Exit(code)
}

// newClient returns a client for the shared server, skipping without one.
func newClient(t *testing.T, opts ...sandpit.ClientOption) *sandpit.Client {
	t.Helper()
	if server == nil {
		t.Skip(skipReason)
	}
	c, err := sandpit.NewClient(append([]sandpit.ClientOption{sandpit.WithURL(server.URL), sandpit.WithAPIKey(server.APIKey)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newSandbox creates a sandbox closed at the end of the test.
func newSandbox(t *testing.T, opts ...sandpit.CreateOption) *sandpit.Sandbox {
	t.Helper()
	c := newClient(t)
	sb, err := c.Create(t.Context(), opts...)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return sb
}

// sandpittestRun tells this run's sandboxes apart from others'.
func sandpittestRun() string { return fmt.Sprint(os.Getpid(), "-", time.Now().UnixNano()) }

func fmtInt(n int) string { return fmt.Sprint(n) }
