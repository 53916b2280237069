package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/agent"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
)

// envd runs the in-sandbox agent as the sandbox's first process. The init
// hands it its configuration in the environment, the listening socket and
// the control socket as descriptors.
func envd() error {
	raw := os.Getenv(linux.EnvdConfigEnv)
	if raw == "" {
		return errors.New("envd runs inside a sandbox; the daemon starts it")
	}
	os.Unsetenv(linux.EnvdConfigEnv)
	var cfg linux.EnvdConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return fmt.Errorf("decoding agent config: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ln, err := net.FileListener(os.NewFile(linux.ListenerFD, "envd-listener"))
	if err != nil {
		return fmt.Errorf("agent listener: %w", err)
	}
	a := agent.New(agent.Config{
		AccessToken:    cfg.AccessToken,
		Env:            cfg.Env,
		DefaultUser:    cfg.DefaultUser,
		DefaultWorkdir: cfg.DefaultWorkdir,
		Logger:         log,
	})
	if _, err := unix.Write(linux.ControlFD, []byte("ok")); err != nil {
		return fmt.Errorf("telling the daemon the agent is up: %w", err)
	}
	unix.Close(linux.ControlFD)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	return a.Serve(ctx, ln)
}
