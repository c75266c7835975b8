package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/vtcluster/vtcluster/agent/pgroup"
	"github.com/vtcluster/vtcluster/agent/py"
)

// How the process service runs one command: started and supervised by
// agent/pgroup (a process group of its own, stopped as a whole, the leader
// reaped last), tied to the agent's life by the parent-death signal and by
// the on-node record (proc_record.go).
//
// launch starts the command in a new process group.
func (s *ProcessService) launch(sp *procSpec, id string) (*child, error) {
	c := &child{
		id:     id,
		argv:   sp.argv,
		owner:  sp.opts.owner,
		stdout: &ring{max: sp.opts.maxOutput},
		stderr: &ring{max: sp.opts.maxOutput},
		done:   make(chan struct{}),
	}
	var stdout, stderr io.Writer = c.stdout, c.stderr
	ready := make(chan struct{})
	if sp.opts.logOutput {
		lo := &lineLogger{log: s.log, stream: "stdout", ready: ready, pid: &c.pid}
		le := &lineLogger{log: s.log, stream: "stderr", ready: ready, pid: &c.pid}
		c.lines = []*lineLogger{lo, le}
		stdout, stderr = io.MultiWriter(c.stdout, lo), io.MultiWriter(c.stderr, le)
	}
	opts := pgroup.Options{
		Path: sp.path, Dir: sp.dir, Env: sp.env,
		Stdout: stdout, Stderr: stderr,
		// Output pipes a detached process (setsid) still holds open must
		// not keep the call waiting once its group is gone.
		WaitDelay:     s.cfg.KillGrace,
		Grace:         func(error) time.Duration { return s.cfg.KillGrace },
		DieWithParent: true,
		OnStop: func(cause error) {
			s.log.Warn(fmt.Sprintf("stopping process group %d after %.3f s: %s", c.pid, time.Since(c.start).Seconds(), stopReason(cause)))
		},
	}
	if sp.opts.stdin != nil {
		opts.Stdin = bytes.NewReader(sp.opts.stdin)
	}
	g, err := pgroup.Start(sp.argv, opts)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Op == "chdir" {
			return nil, osFault(err, sp.dir)
		}
		return nil, osFault(err, sp.argv[0])
	}
	c.grp, c.pid, c.start = g, g.Pid(), g.Started()
	close(ready)
	s.record.add(g.Ident(), c.owner, c.argv, c.start)
	owner := ""
	if c.owner != "" {
		owner = ", owner " + py.Repr(c.owner)
	}
	if id == "" {
		s.log.Info(fmt.Sprintf("run %s (pid %d%s)", py.Repr(sp.argv), c.pid, owner))
	} else {
		s.log.Info(fmt.Sprintf("start %s (pid %d, id %s%s)", py.Repr(sp.argv), c.pid, id, owner))
	}
	return c, nil
}

// supervise waits for the command's group to end (see pgroup.Group.Wait):
// its first process exits, or ctx ends (timeout, kill of the caller,
// hand-over, Close) and the group is stopped.
func (s *ProcessService) supervise(ctx context.Context, c *child) {
	res := c.grp.Wait(ctx)
	s.record.remove(c.pid)
	c.stopCause = res.Stopped
	c.timedOut = errors.Is(res.Stopped, errTimedOut)
	c.duration = res.Duration
	c.exitCode = res.ExitCode
	if res.Err != nil {
		s.log.Error(fmt.Sprintf("process %d", c.pid), "err", res.Err)
	}
	for _, l := range c.lines {
		l.flush()
	}
	level := slog.LevelInfo
	if c.exitCode != 0 {
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, fmt.Sprintf("exit status %d after %.3f s (pid %d)", c.exitCode, c.duration.Seconds(), c.pid))
	c.finished = time.Now()
	close(c.done)
}
