// Package sandpit is the Go client for sandpit and for any server that
// speaks the E2B wire protocol (E2B's own cloud included, where the protocol
// allows): create isolated Linux sandboxes, run commands and code in them,
// move files in and out, open terminals, and clean up.
//
// A [Client] finds its server through the same environment variables as
// E2B's official SDKs (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY), or through
// SANDPIT_URL and SANDPIT_API_KEY:
//
//	client, err := sandpit.NewClient()
//	sb, err := client.Create(ctx, sandpit.WithTemplate("base"))
//	defer sb.Close()
//	res, err := sb.Commands.Run(ctx, "echo hello")
//
// Every call that does I/O takes a [context.Context]; cancelling it stops the
// call, streaming ones included. Options are functional ([WithTimeout],
// [WithEnvs], [WithUser], ...); one option may apply to several calls, and
// each call's option interface ([CreateOption], [CommandOption], ...) says
// which options it accepts. Errors can be matched with [errors.Is] against
// [ErrNotFound], [ErrAuth], [ErrTimeout], [ErrRateLimited] and the other
// sentinels, and with [errors.As] against [*Error] and [*CommandExitError].
//
// The package never logs: everything it has to say comes back as an error.
package sandpit
