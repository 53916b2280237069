package sandboxinit

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Config is what the daemon sends the sandbox's init over the control
// socket, together with one detached mount per entry of Mounts and a last one
// holding the agent binary.
type Config struct {
	ID       string     `json:"id"`
	Hostname string     `json:"hostname"`
	Stage    string     `json:"stage"`         // host dir the root mount is attached to before pivot_root
	Mounts   []string   `json:"mounts"`        // targets, in the order of the passed mount fds
	TmpMB    int        `json:"tmp_mb"`        // size of /tmp and /dev/shm
	Net      *NetConfig `json:"net,omitempty"` // nil: loopback only
	// Seccomp is the system-call filter the init loads last (assembled
	// once by the daemon from internal/seccomp's policy).
	Seccomp Filter `json:"seccomp"`
	Envd    EnvdConfig
}

// NetConfig is the sandbox's side of its egress link, set up by the init
// in its own network namespace.
type NetConfig struct {
	Addr       netip.Prefix `json:"addr"`
	Gateway    netip.Addr   `json:"gateway"`
	ResolvConf string       `json:"resolv_conf"`
}

// EnvdConfig is the agent's start-up configuration, handed from the init to
// the agent through the environment variable EnvdConfigEnv.
type EnvdConfig struct {
	Env            map[string]string `json:"env"`
	AccessToken    string            `json:"access_token"`
	DefaultUser    string            `json:"default_user"`
	DefaultWorkdir string            `json:"default_workdir"`
	Interpreter    bool              `json:"interpreter"` // warm kernels at start
	PidsMax        int               `json:"pids_max"`    // the sandbox's cgroup limit on tasks
}

const (
	// EnvdConfigEnv carries the JSON EnvdConfig into the agent. The agent
	// must unset it before starting user processes.
	EnvdConfigEnv = "SANDPIT_ENVD_CONFIG"
	// ControlFD is the agent's end of the control socket: it writes "ok"
	// there once it serves, then closes it.
	ControlFD = 3
	// ListenerFD is the listening Unix socket the agent serves on.
	ListenerFD = 4
	// ExeFD is the init's descriptor of the sandpit binary; the init does
	// not pass it on to the agent.
	ExeFD = 5

	agentPath = "/.sandpit/envd" // where the agent binary appears inside
)

// Filter is a classic BPF program. In JSON it is the base64 of its
// instructions, 8 bytes each (code, jt, jf, k; little-endian): as an array
// of objects the sandbox filter's ~300 instructions made 11 KB that the
// init took a third of a millisecond to decode, at every create.
type Filter []unix.SockFilter

const insnSize = 8

// MarshalJSON implements json.Marshaler.
func (f Filter) MarshalJSON() ([]byte, error) {
	raw := make([]byte, 0, len(f)*insnSize)
	for _, in := range f {
		raw = binary.LittleEndian.AppendUint16(raw, in.Code)
		raw = append(raw, in.Jt, in.Jf)
		raw = binary.LittleEndian.AppendUint32(raw, in.K)
	}
	out := make([]byte, 0, base64.StdEncoding.EncodedLen(len(raw))+2)
	out = append(out, '"')
	out = base64.StdEncoding.AppendEncode(out, raw)
	return append(out, '"'), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Filter) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = nil
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("seccomp filter: want a base64 string, got %.20q", b)
	}
	raw, err := base64.StdEncoding.AppendDecode(nil, b[1:len(b)-1])
	if err != nil {
		return fmt.Errorf("seccomp filter: %w", err)
	}
	if len(raw)%insnSize != 0 {
		return fmt.Errorf("seccomp filter: %d bytes is not a whole number of instructions", len(raw))
	}
	out := make(Filter, len(raw)/insnSize)
	for i := range out {
		in := raw[i*insnSize:]
		out[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(in), Jt: in[2], Jf: in[3], K: binary.LittleEndian.Uint32(in[4:])}
	}
	*f = out
	return nil
}

// AgentRuntimeEnv is the Go runtime's settings for the agent, given in its
// environment so the runtime starts with them (a runtime.GOMAXPROCS call
// after start leaves the memory of the Ps it drops behind). The agent
// must unset them before starting user processes, which may be Go
// programs of their own.
//
// One P: an idle agent is most of a sandbox's memory, and a host holds
// thousands of them. With the sandbox's two CPUs an agent ran two Ps and
// seven or eight threads, each with Go stacks (a 16 KiB g0 and a 32 KiB
// signal stack) and a kernel stack; with one it runs five or six and
// holds ~230 KiB less (bench/density.sh). Its work is moving bytes
// between processes, files and sockets, which one P does; the sandbox's
// processes keep every CPU of the sandbox.
var AgentRuntimeEnv = []string{"GOMAXPROCS=1"}
