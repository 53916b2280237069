package seccomp

import "testing"

func TestPolicyAssembles(t *testing.T) {
	p := Policy()
	if err := p.Validate(); err != nil {
		t.Fatalf("policy does not validate: %v", err)
	}
	prog, err := p.Assemble()
	if err != nil {
		t.Fatalf("policy does not assemble: %v", err)
	}
	if len(prog) > 4096 {
		t.Fatalf("BPF program has %d instructions; the kernel allows 4096", len(prog))
	}
}

func TestDangerousCallsAreNotAllowed(t *testing.T) {
	set := map[string]bool{}
	for _, n := range allowed {
		if set[n] {
			t.Errorf("%s listed twice", n)
		}
		set[n] = true
	}
	for _, n := range []string{"mount", "umount2", "pivot_root", "unshare", "setns", "bpf", "kexec_load",
		"init_module", "finit_module", "delete_module", "keyctl", "add_key", "request_key", "reboot",
		"swapon", "open_tree", "move_mount", "fsopen", "mount_setattr", "io_uring_setup", "userfaultfd",
		"perf_event_open", "clock_settime", "settimeofday", "acct", "clone", "clone3"} {
		if set[n] {
			t.Errorf("%s must not be allowed unconditionally", n)
		}
	}
}
