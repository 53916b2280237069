// Command diskreuse measures how fast a sandbox makes files on a disk that
// an earlier sandbox used: each round creates a sandbox, times N empty
// files made in a loop inside it, and kills it, so that its disk is
// recycled for the next round (the warm pool is off, so the next create
// takes it), unless it held too many files to be. Round 0 gets a fresh
// disk. A slower round after it is what a recycled disk costs the sandbox
// that gets it.
//
//	go run ./bench/diskreuse [-rounds 4] [-files 4000]
//
// Env: SANDPIT_BIN (default: a build of this checkout).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
	"github.com/sandpit-dev/sandpit/sdk/sandpittest"
)

func main() {
	rounds := flag.Int("rounds", 4, "sandboxes, one after another")
	files := flag.Int("files", 4000, "empty files each makes")
	flag.Parse()
	if err := run(*rounds, *files); err != nil {
		fmt.Fprintln(os.Stderr, "diskreuse:", err)
		os.Exit(1)
	}
}

func run(rounds, files int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Options.Bin unset: SANDPIT_BIN, else a build of this checkout.
	srv, err := sandpittest.Start(ctx, sandpittest.Options{Args: []string{"--warm-pool=off"}})
	if err != nil {
		return fmt.Errorf("starting sandpit: %w", err)
	}
	defer srv.Close()
	c, err := sandpit.NewClient(sandpit.WithURL(srv.URL), sandpit.WithAPIKey(srv.APIKey))
	if err != nil {
		return err
	}
	cmd := fmt.Sprintf("mkdir -p ~/d && cd ~/d && TIMEFORMAT=%%R; time (for i in $(seq %d); do : > f$i; done)", files)
	fmt.Printf("%d empty files made in a new sandbox; each round's sandbox is killed before the next is created (%s)\n\n", files, time.Now().UTC().Format("2006-01-02T15:04Z"))
	fmt.Println("| round | disk | seconds |\n|---:|---|---:|")
	disk := "fresh"
	for i := range rounds {
		sb, err := c.Create(ctx)
		if err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		res, err := sb.Commands.Run(ctx, cmd)
		if err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		fmt.Printf("| %d | %s | %s |\n", i, disk, strings.TrimSpace(res.Stderr))
		disk = "the last round's, if recycled"
		if err := sb.Kill(ctx); err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		time.Sleep(500 * time.Millisecond) // the kill answers before the disk is recycled
	}
	return nil
}
