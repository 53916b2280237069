package process

import (
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/internal/agent/settings"
)

func TestInheritedDescriptorsDoNotLeak(t *testing.T) {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY, 0) // no O_CLOEXEC: like an inherited fd
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := CloseOnExecInherited(); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, settings.Values{})
	r := run(t, e, &pb.StartRequest{Process: shell("ls /proc/self/fd")})
	for _, f := range strings.Fields(r.stdout) {
		if f == strconv.Itoa(fd) {
			t.Errorf("descriptor %d leaked into the process: %q", fd, r.stdout)
		}
	}
}
