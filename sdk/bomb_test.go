package sandpit_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// TestForkBombSparesTheAgent: a fork bomb fills its sandbox's process limit
// while clients keep the agent busy, which makes the agent start threads;
// the agent must outlive the bomb (it is the sandbox's first process, and a
// Go program that cannot start a thread dies), for the root user's bombs as
// for the default user's.
func TestForkBombSparesTheAgent(t *testing.T) {
	bombs := map[string]string{
		// The classic: it collapses soon after each fork that fails.
		"classic": `timeout -s KILL 6 bash -c ':(){ :|:& };:'`,
		// One that keeps the limit full until it is killed.
		"holding": `timeout -s KILL 4 bash -c 'while :; do sleep 30 & done' 2>/dev/null`,
	}
	for _, c := range []struct{ user, bomb string }{{"user", "classic"}, {"root", "classic"}, {"user", "holding"}, {"root", "holding"}} {
		user := c.user
		t.Run(c.user+"/"+c.bomb, func(t *testing.T) {
			sb := newSandbox(t)
			ctx := t.Context()
			// Processes of every user start below the sandbox's pids limit;
			// the agent's threads count as a user of its own.
			limit := procLimit(t, sb, user)
			if limit <= 0 {
				t.Fatalf("processes of %s have no process limit", user)
			}
			res, err := sb.Commands.Run(ctx, "grep ^Uid: /proc/1/status", sandpit.WithUser("root"))
			if err != nil {
				t.Fatal(err)
			}
			if f := strings.Fields(res.Stdout); len(f) < 2 || f[1] == "0" {
				t.Fatalf("the agent's uids: %q; want a real uid of its own", res.Stdout)
			}

			bomb, err := sb.Commands.Start(ctx, bombs[c.bomb]+"; pkill -KILL sleep; echo bomb-over",
				sandpit.WithUser(user), sandpit.WithTimeout(60*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			// Keep the agent busy while the bomb holds the limit, ever more
			// calls at once, so that it needs threads it did not have: each
			// call may fail (no process can start), but none may end the
			// agent. Writes block in system calls for a while, and a Go
			// program starts a thread for each call blocked so.
			var calls, failed atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			data := bytes.Repeat([]byte("x"), 256<<10)
			for i := range 48 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					select {
					case <-stop:
						return
					case <-time.After(time.Duration(i) * 50 * time.Millisecond):
					}
					for {
						select {
						case <-stop:
							return
						default:
						}
						cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
						var err error
						if i%3 != 0 {
							_, err = sb.Files.Write(cctx, "/tmp/f"+strconv.Itoa(i), data)
						} else {
							_, err = sb.Commands.Run(cctx, "true")
						}
						cancel()
						calls.Add(1)
						if err != nil {
							failed.Add(1)
						}
					}
				}()
			}
			_, _ = bomb.Wait(ctx)
			close(stop)
			wg.Wait()
			t.Logf("process limit %d; %d calls during the bomb, %d failed", limit, calls.Load(), failed.Load())

			// The agent lived: the sandbox answers (after the bomb's last
			// processes are gone) without being started again.
			deadline := time.Now().Add(30 * time.Second)
			for {
				res, err := sb.Commands.Run(ctx, "echo ok")
				if err == nil && res.Stdout == "ok\n" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the sandbox does not answer 30 s after the bomb: %v", err)
				}
				time.Sleep(300 * time.Millisecond)
			}
		})
	}
}

// procLimit is the soft RLIMIT_NPROC of a command run as user (-1: none).
func procLimit(t *testing.T, sb *sandpit.Sandbox, user string) int {
	t.Helper()
	res, err := sb.Commands.Run(t.Context(), "ulimit -u", sandpit.WithUser(user))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(res.Stdout)
	if s == "unlimited" {
		return -1
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("ulimit -u = %q", s)
	}
	return n
}
