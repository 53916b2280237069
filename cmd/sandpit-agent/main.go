// Command sandpit-agent is what runs inside every sandbox as its agent
// (envd), executed by the sandbox's init. It is a separate, small binary
// because a Go program pays at start for every package it links: this one
// starts in about a third of the CPU time of the whole sandpit binary. The
// daemon uses the sandpit-agent beside its own binary, or itself when
// there is none (cmd/sandpit answers the same subcommands). It still
// answers the init's and the spawner's subcommands, for a daemon that
// finds no sandpit-init (cmd/sandpit-init) beside it.
package main

import (
	"fmt"
	"os"

	"github.com/sandpit-dev/sandpit/internal/agent/envd"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux/sandboxinit"
)

func main() {
	sandboxinit.RunIfAsked(os.Args[1:])
	if len(os.Args) != 2 || os.Args[1] != "envd" {
		fmt.Fprintln(os.Stderr, "sandpit-agent runs inside a sandbox; the sandpit daemon starts it")
		os.Exit(2)
	}
	if err := envd.Main(); err != nil {
		fmt.Fprintln(os.Stderr, "sandpit-agent:", err)
		os.Exit(1)
	}
}
