package agent

import (
	"context"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
)

// BenchmarkStartTrue is commands.run("true") as the SDK sends it, over the
// Unix socket the daemon uses: Start, read the stream to its end. The
// target is a 3 ms round trip for the whole path; this is the agent's share.
func BenchmarkStartTrue(b *testing.B) {
	me, _ := user.Current()
	// bash -l reads the user's profile; root's on a developer machine can
	// take a second, so the SDK-shaped case runs as nobody when it can.
	shellUser := me.Username
	if _, err := user.Lookup("nobody"); err == nil && os.Geteuid() == 0 {
		shellUser = "nobody"
	}
	for _, tc := range []struct {
		name string
		user string
		cfg  *pb.ProcessConfig
	}{
		{"exec", me.Username, &pb.ProcessConfig{Cmd: "true"}},
		{"bash-l-c", shellUser, &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", "true"}, Cwd: new(string("/"))}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sock := filepath.Join(b.TempDir(), "envd.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			a := New(Config{DefaultUser: tc.user, AccessToken: token})
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- a.Serve(ctx, ln) }()
			defer func() { cancel(); <-served }()

			client := processconnect.NewProcessClient(unixClient(sock), "http://envd", connect.WithProtoJSON())
			b.ResetTimer()
			for b.Loop() {
				req := connect.NewRequest(&pb.StartRequest{Process: tc.cfg, Stdin: new(bool)})
				req.Header().Set("X-Access-Token", token)
				req.Header().Set("Keepalive-Ping-Interval", "50")
				s, err := client.Start(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				var ended bool
				for s.Receive() {
					ended = ended || s.Msg().GetEvent().GetEnd() != nil
				}
				if err := s.Err(); err != nil || !ended {
					b.Fatalf("stream: %v, ended %v", err, ended)
				}
			}
		})
	}
}
