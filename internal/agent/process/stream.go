package process

import (
	"context"
	"errors"
	"strconv"
	"time"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
)

// keepaliveInterval parses Keepalive-Ping-Interval (seconds).
func keepaliveInterval(h string) time.Duration {
	if n, err := strconv.Atoi(h); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return DefaultKeepalive
}

var errDeadline = connect.NewError(connect.CodeDeadlineExceeded, errors.New("process timed out: the call's deadline passed"))

// stream sends p's events to one client: the start event, data as it comes,
// keepalives when idle, and the end event. It returns when the process has
// ended, the client is gone, or the deadline passed (deadline_exceeded; the
// Start lifetime timer kills the process). The Start stream (owner) of a
// process its deadline killed ends with deadline_exceeded, as the SDKs
// expect of a command that timed out.
func (s *Service) stream(ctx context.Context, p *proc, sub *subscriber, owner bool, keepalive time.Duration, send func(*pb.ProcessEvent) error) error {
	defer p.unsubscribe(sub)
	if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: &pb.ProcessEvent_StartEvent{Pid: p.pid}}}); err != nil {
		return err
	}
	sendData := func(d *pb.ProcessEvent_DataEvent) error {
		return send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: d}})
	}
	timer := time.NewTimer(keepalive)
	defer timer.Stop()
	for {
		select {
		case d := <-sub.ch:
			if err := sendData(d); err != nil {
				return err
			}
			timer.Reset(keepalive)
		case <-p.done:
			// Every pump send happened before done closed: drain them.
			for {
				select {
				case d := <-sub.ch:
					if err := sendData(d); err != nil {
						return err
					}
					continue
				default:
				}
				break
			}
			if owner && p.timedOut.Load() {
				return errDeadline
			}
			p.mu.Lock()
			end := p.end
			p.mu.Unlock()
			return send(&pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: end}})
		case <-timer.C:
			if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Keepalive{Keepalive: &pb.ProcessEvent_KeepAlive{}}}); err != nil {
				return err
			}
			timer.Reset(keepalive)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errDeadline
			}
			return connect.NewError(connect.CodeCanceled, ctx.Err())
		}
	}
}
