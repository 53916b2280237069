// Command sandpit is the whole of sandpit in one binary: the daemon
// (serve), the in-sandbox agent (envd), the sandbox init (a hidden
// subcommand the daemon re-executes), and the client verbs.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/sandpit-dev/sandpit/cmd/sandpit/cli"
	"github.com/sandpit-dev/sandpit/internal/agent/envd"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux/sandboxinit"
)

const usage = `sandpit: self-hosted sandboxes for AI agents, E2B-compatible.

Usage:
  sandpit serve [--listen ADDR] [--data-dir DIR] [--domain D]   run the daemon
  sandpit teams create NAME [LIMITS] | list | set NAME LIMITS | rm NAME
                                                                 manage teams and their limits
  sandpit keys create [NAME] [--team T] [--admin] | list [--team T] | revoke ID
                                                                 manage API keys (of teams)
  sandpit audit [--team T] [--since 1h] [--action A] [--json]    read the audit log
` + cli.Usage + `  sandpit template build|list|rm|logs                            build and manage templates
  sandpit agent [--model M] [--max-attempts N] TASK...          coding agent: write, run, fix until it runs
  sandpit agent fix FILE|DIR --test CMD                          repair code until its tests pass
  sandpit mcp [--template T]                                     MCP server on stdio (SANDPIT_URL, SANDPIT_API_KEY)
  sandpit envd                                                   the in-sandbox agent (started by the daemon)
  sandpit version

Run 'sandpit COMMAND --help' for a command's flags.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	sandboxinit.RunIfAsked(os.Args[1:])
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stdout, stderr)
	case "envd":
		err = envd.Main()
	case "keys":
		err = keys(args[1:], stdout)
	case "teams", "team":
		err = teams(args[1:], stdout)
	case "audit":
		err = audit(args[1:], stdout)
	case "template", "templates":
		err = templateCmd(args[1:], stdout, stderr)
	case "sandbox", "snapshot", "snapshots", "exec", "shell", "files", "run":
		return cli.Main(args, os.Stdin, stdout, stderr)
	case "agent":
		err = agentCmd(args[1:], stdout, stderr)
	case "mcp":
		err = mcpServe(args[1:], stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "sandpit", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "sandpit: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "sandpit:", err)
		return 1
	}
	return 0
}
