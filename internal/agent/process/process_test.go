package process

import (
	"context"
	"errors"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/internal/agent/settings"
)

func TestOutputStreamsBeforeExit(t *testing.T) {
	e := newEnv(t, settings.Values{})
	s, err := e.client.Start(t.Context(), connect.NewRequest(&pb.StartRequest{Process: shell("echo a; sleep 1; echo b")}))
	if err != nil {
		t.Fatal(err)
	}
	var firstData, end time.Time
	var out string
	for s.Receive() {
		switch ev := s.Msg().GetEvent().GetEvent().(type) {
		case *pb.ProcessEvent_Data:
			if firstData.IsZero() {
				firstData = time.Now()
				if got := string(ev.Data.GetStdout()); got != "a\n" {
					t.Errorf("first chunk = %q, want %q", got, "a\n")
				}
			}
			out += string(ev.Data.GetStdout())
		case *pb.ProcessEvent_End:
			end = time.Now()
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if firstData.IsZero() || end.IsZero() {
		t.Fatalf("missing events: first data %v, end %v", firstData, end)
	}
	if gap := end.Sub(firstData); gap < 500*time.Millisecond {
		t.Errorf("first output arrived only %v before the end: it was buffered", gap)
	}
	if out != "a\nb\n" {
		t.Errorf("stdout = %q", out)
	}
}

func TestExitStatus(t *testing.T) {
	e := newEnv(t, settings.Values{})
	for _, tc := range []struct {
		cmd       string
		code      int32
		exited    bool
		status    string
		wantError bool
		stdout    string
		stderr    string
	}{
		{cmd: "true", exited: true, status: "exit status 0"},
		{cmd: "echo out; echo err >&2; exit 3", code: 3, exited: true, status: "exit status 3", wantError: true, stdout: "out\n", stderr: "err\n"},
		{cmd: "kill -9 $$", code: -1, status: "signal: killed", wantError: true},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			r := run(t, e, &pb.StartRequest{Process: shell(tc.cmd), Stdin: ptr(false)})
			if r.end.GetExitCode() != tc.code || r.end.GetExited() != tc.exited || r.end.GetStatus() != tc.status {
				t.Errorf("end = %v, want code %d exited %v status %q", r.end, tc.code, tc.exited, tc.status)
			}
			if (r.end.Error != nil) != tc.wantError || tc.wantError && r.end.GetError() != tc.status {
				t.Errorf("end.error = %v, want set=%v", r.end.Error, tc.wantError)
			}
			if r.stdout != tc.stdout || r.stderr != tc.stderr {
				t.Errorf("stdout %q stderr %q, want %q %q", r.stdout, r.stderr, tc.stdout, tc.stderr)
			}
		})
	}
}

func TestEnvCwdUser(t *testing.T) {
	me := currentUser(t)
	e := newEnv(t, settings.Values{Env: map[string]string{"G": "global", "O": "global"}})
	dir := t.TempDir()
	r := run(t, e, &pb.StartRequest{Process: &pb.ProcessConfig{
		Cmd:  "/bin/sh",
		Args: []string{"-c", `echo "$G $O $HOME $USER $LOGNAME"; pwd; id -u; echo "$PATH"`},
		Envs: map[string]string{"O": "call"},
		Cwd:  &dir,
	}})
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := []string{"global call " + me.HomeDir + " " + me.Username + " " + me.Username, dir, me.Uid, defaultPath}
	if !slices.Equal(lines, want) {
		t.Errorf("output lines %q, want %q", lines, want)
	}

	// No cwd: the default workdir, then the home.
	e.settings.Apply(settings.Update{DefaultWorkdir: &dir})
	if r := run(t, e, &pb.StartRequest{Process: shell("pwd")}); strings.TrimSpace(r.stdout) != dir {
		t.Errorf("cwd with default workdir = %q, want %q", r.stdout, dir)
	}

	err := runErr(t, e, &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/true", Cwd: ptr("/does/not/exist")}})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "cwd '/does/not/exist' does not exist") {
		t.Errorf("missing cwd: %v", err)
	}
	err = runErr(t, e, &pb.StartRequest{Process: shell("true")}, "Authorization", basic("no-such-user-xyz"))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("unknown user: %v, want unauthenticated", err)
	}
}

func TestRunsAsBasicAuthUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no 'nobody' user on this host")
	}
	e := newEnv(t, settings.Values{})
	r := run(t, e, &pb.StartRequest{Process: shell("id -u; id -g; echo $USER")}, "Authorization", basic("nobody"))
	want := nobody.Uid + "\n" + nobody.Gid + "\nnobody\n"
	if r.stdout != want {
		t.Errorf("output %q, want %q", r.stdout, want)
	}
}

func TestStdin(t *testing.T) {
	e := newEnv(t, settings.Values{})
	ctx := t.Context()
	s, err := e.client.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "cat"}}))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() {
		t.Fatalf("no start event: %v", s.Err())
	}
	pid := s.Msg().GetEvent().GetStart().GetPid()
	sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
	if _, err := e.client.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("hello\n")}}})); err != nil {
		t.Fatal(err)
	}
	if !s.Receive() || string(s.Msg().GetEvent().GetData().GetStdout()) != "hello\n" {
		t.Fatalf("echo of stdin: %v %v", s.Msg(), s.Err())
	}
	// pty input to a pipe process is refused.
	_, err = e.client.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Pty{Pty: []byte("x")}}}))
	if err == nil {
		t.Error("pty input to a pipe process: no error")
	}
	if _, err := e.client.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: sel})); err != nil {
		t.Fatal(err)
	}
	r, err := collect(t, s)
	if err != nil || r.end == nil || r.end.GetExitCode() != 0 {
		t.Fatalf("after CloseStdin: %+v %v", r, err)
	}

	// stdin:false gives /dev/null: cat ends at once; input is refused.
	r = run(t, e, &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "cat"}, Stdin: ptr(false)})
	if r.stdout != "" || r.end.GetExitCode() != 0 {
		t.Errorf("cat with stdin false: %+v", r)
	}
}

func TestBackgroundConnectKill(t *testing.T) {
	e := newEnv(t, settings.Values{})
	ctx, cancel := context.WithCancel(t.Context())
	s, err := e.client.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: shell("echo started; exec sleep 60"), Tag: ptr("bg")}))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() {
		t.Fatal(s.Err())
	}
	pid := s.Msg().GetEvent().GetStart().GetPid()
	if !s.Receive() || string(s.Msg().GetEvent().GetData().GetStdout()) != "started\n" {
		t.Fatalf("first output: %v %v", s.Msg(), s.Err())
	}
	cancel() // the client goes away; the process must live on
	_ = s.Close()

	list := func() []*pb.ProcessInfo {
		resp, err := e.client.List(t.Context(), connect.NewRequest(&pb.ListRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg.GetProcesses()
	}
	procs := list()
	if len(procs) != 1 || procs[0].GetPid() != pid || procs[0].GetTag() != "bg" || procs[0].GetConfig().GetCmd() != "/bin/sh" {
		t.Fatalf("list = %v", procs)
	}
	if err := syscallKill0(pid); err != nil {
		t.Fatalf("process gone after the client left: %v", err)
	}

	// Re-attach by tag, kill, see the end event.
	cs, err := e.client.Connect(t.Context(), connect.NewRequest(&pb.ConnectRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: "bg"}}}))
	if err != nil {
		t.Fatal(err)
	}
	if !cs.Receive() || cs.Msg().GetEvent().GetStart().GetPid() != pid {
		t.Fatalf("connect start: %v %v", cs.Msg(), cs.Err())
	}
	sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
	if _, err := e.client.SendSignal(t.Context(), connect.NewRequest(&pb.SendSignalRequest{Process: sel, Signal: pb.Signal_SIGNAL_SIGKILL})); err != nil {
		t.Fatal(err)
	}
	r, err := collect(t, cs)
	if err != nil || r.end == nil || r.end.GetStatus() != "signal: killed" || r.end.GetExited() {
		t.Fatalf("connect after kill: %+v %v", r, err)
	}
	if got := list(); len(got) != 0 {
		t.Errorf("list after kill = %v", got)
	}
	// Killing again: not_found (the SDK's kill() then returns false).
	_, err = e.client.SendSignal(t.Context(), connect.NewRequest(&pb.SendSignalRequest{Process: sel, Signal: pb.Signal_SIGNAL_SIGKILL}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("second kill: %v, want not_found", err)
	}
	// A late Connect within the retention gets start and end.
	cs, err = e.client.Connect(t.Context(), connect.NewRequest(&pb.ConnectRequest{Process: sel}))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := collect(t, cs); err != nil || r.pid != pid || r.end.GetStatus() != "signal: killed" {
		t.Errorf("late connect: %+v %v", r, err)
	}
}

func TestUnknownProcess(t *testing.T) {
	e := newEnv(t, settings.Values{})
	ctx := t.Context()
	sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: 999999}}
	calls := map[string]func() error{
		"SendSignal": func() error {
			_, err := e.client.SendSignal(ctx, connect.NewRequest(&pb.SendSignalRequest{Process: sel, Signal: pb.Signal_SIGNAL_SIGKILL}))
			return err
		},
		"SendInput": func() error {
			_, err := e.client.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("x")}}}))
			return err
		},
		"CloseStdin": func() error {
			_, err := e.client.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: sel}))
			return err
		},
		"Update": func() error {
			_, err := e.client.Update(ctx, connect.NewRequest(&pb.UpdateRequest{Process: sel, Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 1, Rows: 1}}}))
			return err
		},
		"Connect": func() error {
			s, err := e.client.Connect(ctx, connect.NewRequest(&pb.ConnectRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: "nope"}}}))
			if err != nil {
				return err
			}
			_, err = collect(t, s)
			return err
		},
	}
	for name, call := range calls {
		if err := call(); connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("%s: %v, want not_found", name, err)
		}
	}
}

func TestPTY(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skip("no /dev/ptmx")
	}
	e := newEnv(t, settings.Values{})
	ctx := t.Context()
	s, err := e.client.Start(ctx, connect.NewRequest(&pb.StartRequest{
		Process: shell(`stty size; echo "T=$TERM"; read x; stty size`),
		Pty:     &pb.PTY{Size: &pb.PTY_Size{Cols: 80, Rows: 24}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() {
		t.Fatal(s.Err())
	}
	pid := s.Msg().GetEvent().GetStart().GetPid()
	sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
	var out string
	for !strings.Contains(out, "T=") && s.Receive() {
		out += string(s.Msg().GetEvent().GetData().GetPty())
	}
	if !hasPrefixLine(out, "24 80") || !strings.Contains(out, "T="+defaultTerm) {
		t.Fatalf("pty output %q, want the size 24 80 and TERM", out)
	}
	_, err = e.client.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("x")}}}))
	if err == nil {
		t.Error("stdin input to a pty process: no error")
	}
	if _, err := e.client.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: sel})); err == nil {
		t.Error("CloseStdin on a pty process: no error")
	}
	if _, err := e.client.Update(ctx, connect.NewRequest(&pb.UpdateRequest{Process: sel, Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 100, Rows: 40}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Pty{Pty: []byte("\n")}}})); err != nil {
		t.Fatal(err)
	}
	r, err := collect(t, s)
	if err != nil || r.end == nil {
		t.Fatalf("pty end: %+v %v", r, err)
	}
	if !strings.Contains(r.pty, "40 100") {
		t.Errorf("after resize, output %q lacks 40 100", r.pty)
	}
}

func TestDeadlineKillsProcess(t *testing.T) {
	e := newEnv(t, settings.Values{})
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	s, err := e.client.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: shell("exec sleep 30")}))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() {
		t.Fatal(s.Err())
	}
	pid := s.Msg().GetEvent().GetStart().GetPid()
	_, err = collect(t, s)
	if code := connect.CodeOf(err); code != connect.CodeDeadlineExceeded {
		t.Errorf("stream error %v, want deadline_exceeded", err)
	}
	eventually(t, "the process to be killed", func() bool { return syscallKill0(pid) != nil })
}

func TestNoDeadlineNoLimit(t *testing.T) {
	e := newEnv(t, settings.Values{})
	// No Connect-Timeout-Ms header: nothing kills a one-second process.
	r := run(t, e, &pb.StartRequest{Process: shell("sleep 1; echo done")})
	if r.stdout != "done\n" {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestKeepalive(t *testing.T) {
	e := newEnv(t, settings.Values{})
	req := connect.NewRequest(&pb.StartRequest{Process: shell("sleep 2.5")})
	req.Header().Set("Keepalive-Ping-Interval", "1")
	s, err := e.client.Start(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	keepalives := 0
	for s.Receive() {
		if s.Msg().GetEvent().GetKeepalive() != nil {
			keepalives++
		}
	}
	if keepalives < 2 {
		t.Errorf("%d keepalives in 2.5 s at 1 s interval", keepalives)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtimeGoroutines()
	func() {
		e := newEnv(t, settings.Values{})
		for i := range 5 {
			run(t, e, &pb.StartRequest{Process: shell("echo " + strconv.Itoa(i))})
		}
		ctx, cancel := context.WithCancel(t.Context())
		s, err := e.client.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: shell("exec sleep 60")}))
		if err != nil {
			t.Fatal(err)
		}
		s.Receive()
		cancel()
		// Closing the service must kill the sleeper and stop every
		// goroutine.
		e.close()
	}()
	checkGoroutines(t, before)
}

func syscallKill0(pid uint32) error {
	if err := unix.Kill(int(pid), 0); err != nil {
		return err
	}
	// A zombie still answers signal 0; look at its state.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err == nil && statState(b) == 'Z' {
		return errors.New("zombie")
	}
	return nil
}

func TestStreamInputAndSignals(t *testing.T) {
	e := newEnv(t, settings.Values{})
	ctx := t.Context()
	s, err := e.client.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "cat"}, Tag: ptr("cat")}))
	if err != nil || !s.Receive() {
		t.Fatalf("start: %v", err)
	}
	sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: "cat"}}
	in := e.client.StreamInput(ctx)
	for _, m := range []*pb.StreamInputRequest{
		{Event: &pb.StreamInputRequest_Start{Start: &pb.StreamInputRequest_StartEvent{Process: sel}}},
		{Event: &pb.StreamInputRequest_Data{Data: &pb.StreamInputRequest_DataEvent{Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("streamed\n")}}}}},
	} {
		if err := in.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := in.CloseAndReceive(); err != nil {
		t.Fatalf("StreamInput: %v", err)
	}
	if !s.Receive() || string(s.Msg().GetEvent().GetData().GetStdout()) != "streamed\n" {
		t.Fatalf("stream input echo: %v %v", s.Msg(), s.Err())
	}
	_, err = e.client.SendSignal(ctx, connect.NewRequest(&pb.SendSignalRequest{Process: sel, Signal: pb.Signal_SIGNAL_UNSPECIFIED}))
	if connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Errorf("unspecified signal: %v", err)
	}
	if _, err := e.client.SendSignal(ctx, connect.NewRequest(&pb.SendSignalRequest{Process: sel, Signal: pb.Signal_SIGNAL_SIGTERM})); err != nil {
		t.Fatal(err)
	}
	r, err := collect(t, s)
	if err != nil || r.end.GetStatus() != "signal: terminated" {
		t.Errorf("after SIGTERM: %+v %v", r, err)
	}
}

func TestStartErrors(t *testing.T) {
	e := newEnv(t, settings.Values{})
	for _, tc := range []struct {
		cfg  *pb.ProcessConfig
		want connect.Code
	}{
		{&pb.ProcessConfig{}, connect.CodeInvalidArgument},
		{&pb.ProcessConfig{Cmd: "no-such-command-xyz"}, connect.CodeInvalidArgument},
		{&pb.ProcessConfig{Cmd: "/no/such/binary"}, connect.CodeInvalidArgument},
	} {
		if err := runErr(t, e, &pb.StartRequest{Process: tc.cfg}); connect.CodeOf(err) != tc.want {
			t.Errorf("start %v: %v, want %v", tc.cfg, err, tc.want)
		}
	}
}
