package egress

import (
	"fmt"

	"github.com/google/nftables"
)

// KernelSupport reports, as an error naming it, a kernel feature egress
// needs that this kernel lacks: nf_tables over netlink. A nil result
// means a failure of New is sandpit's (or the host's configuration's), not
// the kernel's; the daemon says which, and tests fail rather than skip.
func KernelSupport() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("no nf_tables netlink socket: %w", err)
	}
	if _, err := c.ListTables(); err != nil {
		return fmt.Errorf("the kernel does not answer nf_tables requests: %w", err)
	}
	return nil
}
