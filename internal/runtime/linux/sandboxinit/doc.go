// Package sandboxinit is a sandbox's first process: it receives the
// sandbox's config and root mounts from the daemon, builds the root
// filesystem, confines itself and executes the agent. It lives apart from
// the runtime so that the small agent binary (cmd/sandpit-agent), which
// every sandbox starts twice (as init, then as the agent), links none of
// the daemon's packages: each start then costs a third of the CPU.
package sandboxinit
