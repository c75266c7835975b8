package agent

// How the process service runs one command on Linux: launched in a process
// group of its own, supervised until its first process exits or its context
// ends, the group stopped, and only then the leader reaped. The kernel
// interfaces this needs (waitid without reaping, /proc) are Linux's.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// launch starts the command in a new process group.
func (s *ProcessService) launch(sp *procSpec, id string) (*child, error) {
	c := &child{
		id:     id,
		argv:   sp.argv,
		stdout: &ring{max: sp.opts.maxOutput},
		stderr: &ring{max: sp.opts.maxOutput},
		done:   make(chan struct{}),
	}
	cmd := &exec.Cmd{
		Path:        sp.path,
		Args:        sp.argv,
		Env:         sp.env,
		Dir:         sp.dir,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		// Output pipes a detached process (setsid) still holds open must
		// not keep the call waiting once its group is gone.
		WaitDelay: s.cfg.KillGrace,
	}
	var stdout, stderr io.Writer = c.stdout, c.stderr
	ready := make(chan struct{})
	if sp.opts.logOutput {
		lo := &lineLogger{log: s.log, stream: "stdout", ready: ready, pid: &c.pid}
		le := &lineLogger{log: s.log, stream: "stderr", ready: ready, pid: &c.pid}
		c.lines = []*lineLogger{lo, le}
		stdout, stderr = io.MultiWriter(c.stdout, lo), io.MultiWriter(c.stderr, le)
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if sp.opts.stdin != nil {
		cmd.Stdin = bytes.NewReader(sp.opts.stdin)
	}
	if err := cmd.Start(); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Op == "chdir" {
			return nil, osFault(err, sp.dir)
		}
		return nil, osFault(err, sp.argv[0])
	}
	c.cmd, c.pid, c.start = cmd, cmd.Process.Pid, time.Now()
	close(ready)
	if id == "" {
		s.log.Info(fmt.Sprintf("run %s (pid %d)", argvRepr(sp.argv), c.pid))
	} else {
		s.log.Info(fmt.Sprintf("start %s (pid %d, id %s)", argvRepr(sp.argv), c.pid, id))
	}
	return c, nil
}

// supervise waits for the command's first process to exit, or for ctx to
// end (timeout, kill of the caller, Close) and then stops its group. When
// the first process is gone, anything left in its group is stopped too.
// Only then is the leader reaped: until that moment its zombie keeps the
// process group id from being reused, so every group signal is safe.
func (s *ProcessService) supervise(ctx context.Context, c *child) {
	exited := make(chan struct{})
	var waitErr error // set before exited is closed
	go func() {
		// Returns when the leader exits, which stopGroup guarantees.
		waitErr = waitExited(c.pid)
		close(exited)
	}()
	select {
	case <-exited:
	case <-ctx.Done():
		select {
		case <-exited: // exited at the same moment: not stopped by us
		default:
			c.stopCause = context.Cause(ctx)
			c.timedOut = errors.Is(c.stopCause, errTimedOut)
			s.log.Warn(fmt.Sprintf("stopping process group %d after %.3f s: %s", c.pid, time.Since(c.start).Seconds(), stopReason(c.stopCause)))
			s.stopGroup(c.pid)
		}
	}
	<-exited
	c.duration = time.Since(c.start)
	if waitErr != nil {
		// Not seen in practice; the group check below still runs, and
		// Wait reaps the leader whatever happened.
		s.log.Error(fmt.Sprintf("waiting for process %d", c.pid), "err", waitErr)
	}
	if left, err := liveGroupMembers(c.pid); err != nil || len(left) > 0 {
		s.stopGroup(c.pid)
	}

	c.mu.Lock()
	c.reaped = true
	c.mu.Unlock()
	err := c.cmd.Wait()
	c.exitCode = -1
	if ps := c.cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			c.exitCode = -int(ws.Signal())
		} else {
			c.exitCode = ps.ExitCode()
		}
	} else {
		s.log.Error(fmt.Sprintf("cannot reap process %d", c.pid), "err", err)
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

// stopGroup sends SIGTERM to group pgid, and SIGKILL to whatever is still
// alive in it after KillGrace.
func (s *ProcessService) stopGroup(pgid int) {
	_ = signalGroup(pgid, unix.SIGTERM)
	// A stopped process only acts on SIGTERM once continued.
	_ = signalGroup(pgid, unix.SIGCONT)
	t := time.NewTicker(groupPollInterval)
	defer t.Stop()
	deadline := time.Now().Add(s.cfg.KillGrace)
	for time.Now().Before(deadline) {
		if left, err := liveGroupMembers(pgid); err == nil && len(left) == 0 {
			return
		}
		<-t.C
	}
	_ = signalGroup(pgid, unix.SIGKILL)
}

// waitExited blocks until process pid has exited but leaves it a zombie.
// An unreaped leader keeps its pid, and so its process group id, reserved:
// until the service reaps it, signalling -pid cannot hit a group that
// reused the number.
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// signalGroup sends sig to every process in group pgid. ESRCH (nobody
// left) is not an error: the goal, an empty group, is reached.
func signalGroup(pgid int, sig syscall.Signal) error {
	err := unix.Kill(-pgid, sig)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// liveGroupMembers returns the processes of group pgid that are not
// zombies. kill(-pgid, 0) cannot answer this: it succeeds as long as the
// zombie leader we deliberately keep is in the group.
func liveGroupMembers(pgid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited while we looked
		}
		state, pg, ok := parseProcStat(stat)
		if ok && pg == pgid && state != 'Z' && state != 'X' {
			out = append(out, pid)
		}
	}
	return out, nil
}

// parseProcStat extracts the state and process group from /proc/<pid>/stat:
// "pid (comm) state ppid pgrp ...". comm may hold spaces and parentheses,
// so fields are counted from the last ')'.
func parseProcStat(stat []byte) (state byte, pgrp int, ok bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pg, true
}
