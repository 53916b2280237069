package sandbox

import (
	"maps"
	"time"
)

// State is where a sandbox is in its life as the API reports it.
type State string

// States. Only running exists until pause lands; "paused" is accepted in
// list filters and matches nothing.
const (
	StateRunning State = "running"
	StatePaused  State = "paused"
)

// Info describes one sandbox. It is a copy: changing it changes nothing.
type Info struct {
	ID         string
	TemplateID string
	// TeamID is the team that created the sandbox, the only one that
	// sees it.
	TeamID string
	// Alias is the name the sandbox was created with when that was not
	// the template's ID (e.g. "code-interpreter-v1").
	Alias       string
	EnvdVersion string
	// AccessToken is envd's access token (X-Access-Token); empty when the
	// sandbox is not secure. Connect returns the same token as Create.
	AccessToken   string
	Secure        bool
	AllowInternet bool // the sandbox has a way out (a network link)
	// Network narrows the way out; InternetBlocked denies all of it that
	// Network does not allow (allowInternetAccess false beside rules, or
	// set by UpdateNetwork).
	Network         *Network
	InternetBlocked bool
	Metadata        map[string]string
	StartedAt       time.Time
	EndAt           time.Time
	CPUCount        int
	MemoryMB        int
	DiskMB          int
	State           State
	// AutoPause: the timeout pauses the sandbox rather than killing it.
	AutoPause bool
	// AutoPauseFilesystemOnly: that pause keeps the filesystem only
	// (E2B's autoPauseMemory false, lifecycle onTimeout keepMemory false).
	AutoPauseFilesystemOnly bool
	// AutoResume: the first request through the sandbox proxy to a
	// sandbox paused with its memory resumes it (E2B's autoResume).
	AutoResume bool
	// PausedFilesystemOnly: the sandbox is paused with its filesystem
	// only; its processes ended, and resuming boots it again.
	PausedFilesystemOnly bool
	// Pid is the host pid of the sandbox's first process.
	Pid int
	// Traffic: private ports, the Host mask and network rules; nil when
	// the sandbox has none.
	Traffic *Traffic
}

func (i Info) clone() Info {
	i.Network = i.Network.clone()
	i.Traffic = i.Traffic.clone()
	i.Metadata = maps.Clone(i.Metadata)
	if i.Metadata == nil {
		i.Metadata = map[string]string{}
	}
	return i
}
