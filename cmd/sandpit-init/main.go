// Command sandpit-init is each sandbox's first process, before it becomes
// the agent: it builds the sandbox's root, confines itself and executes
// sandpit-agent (see sandboxinit). The daemon also runs it as its spawner,
// which forks the inits. It is a binary of its own, apart from
// sandpit-agent, because a Go program runs the initialisers of every
// package it links before main: the agent's (protocol descriptors, HTTP,
// TLS) cost every sandbox a millisecond of CPU in a process that needs
// none of them.
package main

import (
	"fmt"
	"os"

	"github.com/sandpit-dev/sandpit/internal/runtime/linux/sandboxinit"
)

func main() {
	sandboxinit.RunIfAsked(os.Args[1:])
	fmt.Fprintln(os.Stderr, "sandpit-init starts sandboxes for the sandpit daemon; it is not run by hand")
	os.Exit(2)
}
