package agent

// Supervised processes for other services (the vm service's QEMUs): the
// same launch, record and owner as process.start, so that stop_others
// (hand-over), Close (the agent stops) and the next agent's record sweep
// (the agent was killed) end them like any command of a test, without the
// other service re-implementing any of it.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SupervisedOptions describe a process another service starts through the
// process service.
type SupervisedOptions struct {
	// ID names the process in the service's log and in stop_others'
	// report (e.g. "vm:vm1"); it is not a process.poll id.
	ID string
	// Owner is the partition the process belongs to; stop_others ends it
	// when the node is handed to another owner.
	Owner string
	// Dir is the working directory; empty: the service's default.
	Dir string
	// Env is merged over the service's base environment.
	Env map[string]string
	// MaxOutput bounds the stdout and stderr kept (the last bytes of
	// each); 0: 64 KiB.
	MaxOutput int
}

// Supervised is a process started with StartSupervised.
type Supervised struct {
	c      *child
	cancel context.CancelCauseFunc
}

// ErrStopRequested is the stop cause of Supervised.Stop without one.
var ErrStopRequested = errors.New("stop requested")

// StartSupervised starts argv (argv[0] looked up in the base PATH) in its
// own process group, recorded with opts.Owner, and supervises it until it
// exits, Stop is called, another owner takes the node or the service
// closes.
func (s *ProcessService) StartSupervised(argv []string, opts SupervisedOptions) (*Supervised, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("agent: process: empty argv")
	}
	env := make(map[string]string, len(s.cfg.BaseEnv)+len(opts.Env))
	for k, v := range s.cfg.BaseEnv {
		env[k] = v
	}
	for k, v := range opts.Env {
		env[k] = v
	}
	path, err := lookPath(argv[0], env["PATH"])
	if err != nil {
		return nil, fmt.Errorf("agent: process: %s: %w", argv[0], err)
	}
	dir := opts.Dir
	if dir == "" {
		dir = s.cfg.Dir
	}
	max := opts.MaxOutput
	if max <= 0 {
		max = 64 << 10
	}
	envList := make([]string, 0, len(env))
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	sp := &procSpec{argv: argv, path: path, env: envList, dir: dir,
		opts: procOptions{maxOutput: max, owner: opts.Owner}}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errShutdown
	}
	c, err := s.launch(sp, opts.ID)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(s.ctx)
	s.live[c] = cancel
	s.wg.Add(1) // under s.mu and after the closed check, like enter
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer cancel(nil)
		s.supervise(ctx, c)
		s.forget(c)
	}()
	return &Supervised{c: c, cancel: cancel}, nil
}

// Pid is the process's pid (its process group id).
func (p *Supervised) Pid() int { return p.c.pid }

// Started is when the process started.
func (p *Supervised) Started() time.Time { return p.c.start }

// Done is closed once the process group has ended and been reaped.
func (p *Supervised) Done() <-chan struct{} { return p.c.done }

// Stop stops the process group (SIGTERM, the grace, SIGKILL) with cause
// (nil: ErrStopRequested) and returns once it is reaped or ctx ends.
func (p *Supervised) Stop(ctx context.Context, cause error) error {
	if cause == nil {
		cause = ErrStopRequested
	}
	p.cancel(cause)
	select {
	case <-p.c.done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Exit reports how the process ended; ok is false while it runs. cause
// is why it was stopped (the hand-over, Stop, shutdown), nil when it
// exited by itself.
func (p *Supervised) Exit() (code int, cause error, ok bool) {
	select {
	case <-p.c.done:
		return p.c.exitCode, p.c.stopCause, true
	default:
		return 0, nil, false
	}
}

// Stderr returns the last bytes the process wrote to stderr (at most
// MaxOutput) without consuming them.
func (p *Supervised) Stderr() []byte { return p.c.stderr.peek() }

// StopReason is the text for a stop cause, as the process service logs it.
func StopReason(cause error) string { return stopReason(cause) }

// peek returns the buffered bytes, oldest first, leaving them in place.
func (r *ring) peek() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]byte, 0, len(r.buf))
	out = append(out, r.buf[r.start:]...)
	return append(out, r.buf[:r.start]...)
}

// LookPath finds name as a command started with StartSupervised would be
// found: in the service's base PATH (not the agent's environment).
func (s *ProcessService) LookPath(name string) (string, error) {
	return lookPath(name, s.cfg.BaseEnv["PATH"])
}
