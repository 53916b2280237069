package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"

	"github.com/sandpit-dev/sandpit/internal/mcp"
	"github.com/sandpit-dev/sandpit/internal/restapi"
	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// mcpHandler serves MCP at /mcp. Its tools drive this daemon through the
// public Go SDK, over loopback to the daemon's own listener, as the key
// that opened the session: one client path for `sandpit mcp` and /mcp,
// and the team's limits, audit and ownership checks apply unchanged.
func (d *Daemon) mcpHandler() (http.Handler, error) {
	return mcp.NewHTTPHandler(mcp.HTTPConfig{
		Authenticate: func(ctx context.Context, key string) (string, bool, error) {
			p, ok, err := restapi.Authenticator{Keys: d.store, ExtraKey: d.cfg.APIKey}.Principal(ctx, key)
			return p.KeyID, ok, err
		},
		NewClient: func(key string) (*sandpit.Client, error) {
			url := d.selfURL.Load()
			if url == nil {
				return nil, errors.New("the daemon is not serving yet")
			}
			return sandpit.NewClient(sandpit.WithURL(*url), sandpit.WithAPIKey(key))
		},
		Server: mcp.Config{Logger: d.log},
	})
}

// loopbackURL is the URL at which this host reaches a listener: its own
// address, or loopback for a wildcard one.
func loopbackURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	ip := tcp.IP
	switch {
	case ip == nil || ip.IsUnspecified() && ip.To4() != nil:
		ip = net.IPv4(127, 0, 0, 1)
	case ip.IsUnspecified():
		ip = net.IPv6loopback
	}
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}
