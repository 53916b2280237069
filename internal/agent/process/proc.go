package process

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
)

// outputBuffer is the read size of an output pump: each read is sent as one
// data event at once.
const outputBuffer = 32 << 10

// proc is one started process. Its goroutines: one pump per output (stdout
// and stderr, or the PTY master) and a waiter; all end when the process has
// exited and its output is drained.
type proc struct {
	pid    uint32
	tag    *string
	config *pb.ProcessConfig
	isPTY  bool

	exit chan unix.WaitStatus // from the reaper, buffered
	done chan struct{}        // closed once end is set

	// inMu serialises writes to and the closing of in.
	inMu sync.Mutex
	in   *os.File // stdin pipe's write end, or the PTY master; nil if none or closed

	inFile *os.File // what in was at the start (never changes)
	master *os.File // PTY master, nil without a PTY

	mu       sync.Mutex
	subs     map[*subscriber]struct{}
	end      *pb.ProcessEvent_EndEvent
	lifetime *time.Timer // kills the process at the Start deadline

	timedOut atomic.Bool // the lifetime timer killed it
}

// subscriber is one Start or Connect stream listening to a process.
type subscriber struct {
	ch   chan *pb.ProcessEvent_DataEvent
	gone chan struct{}
	once sync.Once
}

func (p *proc) subscribe() *subscriber {
	s := &subscriber{ch: make(chan *pb.ProcessEvent_DataEvent, 16), gone: make(chan struct{})}
	p.mu.Lock()
	p.subs[s] = struct{}{}
	p.mu.Unlock()
	return s
}

func (p *proc) unsubscribe(s *subscriber) {
	p.mu.Lock()
	delete(p.subs, s)
	p.mu.Unlock()
	s.once.Do(func() { close(s.gone) })
}

// broadcast hands ev to every subscriber, waiting for slow ones (so a slow
// client slows the process, as a pipe would) unless they leave.
func (p *proc) broadcast(ev *pb.ProcessEvent_DataEvent) {
	p.mu.Lock()
	subs := slices.Collect(maps.Keys(p.subs))
	p.mu.Unlock()
	for _, s := range subs {
		select {
		case s.ch <- ev:
		case <-s.gone:
		}
	}
}

// pump reads f until EOF, an error (EIO on a PTY whose slave side is gone)
// or the drain deadline, sending each chunk as it comes.
func (p *proc) pump(f *os.File, wrap func([]byte) *pb.ProcessEvent_DataEvent) {
	buf := make([]byte, outputBuffer)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			p.broadcast(wrap(bytes.Clone(buf[:n])))
		}
		if err != nil {
			return
		}
	}
}

func stdoutEvent(b []byte) *pb.ProcessEvent_DataEvent {
	return &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Stdout{Stdout: b}}
}

func stderrEvent(b []byte) *pb.ProcessEvent_DataEvent {
	return &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Stderr{Stderr: b}}
}

func ptyEvent(b []byte) *pb.ProcessEvent_DataEvent {
	return &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Pty{Pty: b}}
}

// wait runs once per process: it waits for the exit status, lets the pumps
// drain what the process wrote (a grandchild that keeps the output open gets
// drainGrace), releases the files and publishes the end event.
func (p *proc) wait(outputs []*os.File, pumps *sync.WaitGroup, drainGrace time.Duration, onEnd func(*proc)) {
	ws := <-p.exit
	for _, f := range outputs {
		_ = f.SetReadDeadline(time.Now().Add(drainGrace))
	}
	pumps.Wait()
	if p.inFile != nil {
		_ = p.inFile.SetWriteDeadline(time.Now()) // unblock a writer stuck on a full pipe
	}
	p.inMu.Lock()
	if p.in != nil && !p.isPTY {
		_ = p.in.Close()
	}
	p.in = nil
	p.inMu.Unlock()
	for _, f := range outputs {
		_ = f.Close()
	}

	end := endEvent(ws)
	p.mu.Lock()
	p.end = end
	if p.lifetime != nil {
		p.lifetime.Stop()
	}
	p.mu.Unlock()
	close(p.done)
	onEnd(p)
}

// endEvent describes ws as upstream envd does (Go's ProcessState).
func endEvent(ws unix.WaitStatus) *pb.ProcessEvent_EndEvent {
	end := &pb.ProcessEvent_EndEvent{ExitCode: -1}
	var status string
	switch {
	case ws.Exited():
		end.Exited = true
		end.ExitCode = int32(ws.ExitStatus())
		status = "exit status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		status = "signal: " + ws.Signal().String()
		if ws.CoreDump() {
			status += " (core dumped)"
		}
	default:
		status = "unknown status " + strconv.Itoa(int(ws))
	}
	end.Status = status
	if !end.Exited || end.ExitCode != 0 {
		end.Error = &status
	}
	return end
}

// ended reports whether the process has exited and its end event is set.
func (p *proc) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process's group and to every other group of its
// session (an interactive shell puts jobs in groups of their own). A group
// already gone is not an error.
func (p *proc) signal(sig unix.Signal) error {
	if p.ended() {
		return nil
	}
	pid := int(p.pid)
	if err := unix.Kill(-pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	for _, pgid := range sessionGroups(pid) {
		if pgid != pid {
			_ = unix.Kill(-pgid, sig)
		}
	}
	return nil
}

// info is the process as List reports it.
func (p *proc) info() *pb.ProcessInfo {
	return &pb.ProcessInfo{Config: p.config, Pid: p.pid, Tag: p.tag}
}
