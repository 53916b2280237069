package daemon

import (
	"fmt"
	"os"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/agent/envd"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux/sandboxinit"
)

// The test binary doubles as the sandboxes' init and agent, as
// cmd/sandpit does, so tests can run a daemon that starts real sandboxes.
func TestMain(m *testing.M) {
	sandboxinit.RunIfAsked(os.Args[1:])
	if len(os.Args) == 2 && os.Args[1] == "envd" {
		if err := envd.Main(); err != nil {
			fmt.Fprintln(os.Stderr, "envd:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}
