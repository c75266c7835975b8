//go:build !linux

package agent

// The process service supervises process groups through Linux interfaces
// (waitid without reaping, /proc). Elsewhere the package still builds, and
// the service refuses to start commands rather than leak or misreport them.

import (
	"context"
	"errors"
	"runtime"
	"syscall"
)

func (s *ProcessService) launch(sp *procSpec, id string) (*child, error) {
	return nil, Faultf("OSError", "the process service needs Linux; this agent runs on %s", runtime.GOOS)
}

// supervise is unreachable: launch never returns a child here.
func (s *ProcessService) supervise(ctx context.Context, c *child) {}

func signalGroup(pgid int, sig syscall.Signal) error { return errors.ErrUnsupported }
