// Package pgroup runs a command in a process group of its own and owns the
// whole group, not just the first process: when the caller's context ends
// the group gets SIGTERM, a grace period and SIGKILL; when the first
// process (the leader) exits, whatever it left running in its group is
// stopped the same way. Only then is the leader reaped. Until that moment
// its zombie keeps the process group id from being reused, so no signal
// this package sends can hit an unrelated group.
//
// A process leaves the group's fate only by leaving the group (setsid, or
// setpgid to another group) before the leader exits: that is how a user
// detaches a daemon on purpose. The rule has no timing window of its own:
// what is still in the group when the leader has exited is stopped, what
// has left is not. A command that backgrounds a process which detaches
// itself later (sh -c 'setsid daemon &') races with its own exit and must
// wait for the detach to happen; starting the daemon with setsid done
// before exec (Python's start_new_session=True, which returns only once
// the child has executed) has no such race.
//
// It is a leaf package: the agent's process service, the runner's test
// bodies and the node-side resource backings (qemu-img, ip, mount) share it.
package pgroup

import (
	"errors"
	"io"
	"syscall"
	"time"
)

// DefaultGrace is the time between SIGTERM and SIGKILL when Options.Grace
// is nil.
const DefaultGrace = 2 * time.Second

// pollInterval is how often a stopping group is checked for live members.
const pollInterval = 20 * time.Millisecond

// Options configure Start and Run. Zero values are usable.
type Options struct {
	// Path is the program to execute; empty: argv[0] looked up in the
	// agent's own PATH as os/exec does.
	Path string
	Dir  string   // working directory; empty: the caller's
	Env  []string // complete environment; nil: the caller's
	// Stdin is nil for /dev/null. Stdout and Stderr are nil for
	// /dev/null; a writer that is not an *os.File is fed by a goroutine
	// through a pipe (see WaitDelay).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// WaitDelay bounds how long Wait keeps reading output pipes once the
	// group is gone: only a process that left the group (setsid) can
	// still hold them, and it must not keep the caller waiting. Zero:
	// DefaultGrace.
	WaitDelay time.Duration
	// Grace returns the time between SIGTERM and SIGKILL for a stop with
	// the given cause (the context's cause, or ErrLeaderExited for what
	// the leader left behind). Nil: DefaultGrace always.
	Grace func(cause error) time.Duration
	// OnStop, when set, is called once before the group is stopped
	// because the context ended, with the context's cause.
	OnStop func(cause error)
	// DieWithParent asks the kernel to SIGKILL the leader when this
	// process dies (PR_SET_PDEATHSIG), so that a crashed or SIGKILLed
	// supervisor does not leave its commands running. Only the leader
	// gets it; a record such as the agent's, and StopLeftover, take care
	// of the rest of the group.
	DieWithParent bool
}

// ErrLeaderExited is the stop cause passed to Options.Grace when the
// leader exited and members of its group were still alive.
var ErrLeaderExited = errors.New("the group leader exited")

// Result describes how a group ended.
type Result struct {
	// ExitCode is the leader's exit status, or minus the signal number
	// when a signal killed it (as Python's returncode); -1 when it could
	// not be reaped.
	ExitCode int
	Signal   syscall.Signal // non-zero when a signal killed the leader
	// Stopped is the context's cause when Wait stopped the group because
	// the context ended; nil when the leader exited by itself.
	Stopped  error
	Duration time.Duration // from start until the leader exited
	Err      error         // the leader could not be waited for or reaped
}

// Ident names a process group across supervisor restarts: the leader's pid
// (the group id) and its start time in clock ticks after boot
// (/proc/PID/stat field 22), which a reused pid does not share.
type Ident struct {
	Pgid      int    `json:"pgid"`
	StartTick uint64 `json:"start_tick"`
}
