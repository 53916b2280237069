package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandpit-dev/sandpit/cmd/sandpit/cli"
	sbmcp "github.com/sandpit-dev/sandpit/internal/mcp"
)

// mcpServe serves MCP over stdin/stdout for one client session, against
// the daemon the environment names (as the client verbs find it). Logs go
// to stderr: stdout is the protocol's.
func mcpServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mcp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	template := fs.String("template", sbmcp.DefaultTemplate, "template of the sandboxes the server creates when a client names none")
	maxOutput := fs.Int("max-output", sbmcp.DefaultMaxOutput, "most bytes of each output a tool returns (the middle of longer ones is cut)")
	level := fs.String("log-level", "warn", "debug, info, warn or error (logs go to stderr)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	client, err := cli.NewClient()
	if err != nil {
		return err
	}
	s, err := sbmcp.New(sbmcp.Config{Client: client, Logger: log, Version: version, Template: *template, MaxOutput: *maxOutput})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return s.Run(ctx, &mcp.StdioTransport{})
}
