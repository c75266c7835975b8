package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/agent/pgroup"
	"github.com/vtcluster/vtcluster/agent/py"
)

// commandSpec is the controller-side body command.
type commandSpec struct {
	argv []string
	dir  string   // working directory; relative argv[0] is resolved here
	env  []string // complete environment
}

type commandResult struct {
	exitCode int
	signal   syscall.Signal // non-zero when killed by a signal
	startErr error          // the command could not be started
}

// Grace given to a body between SIGTERM and SIGKILL of its process group.
const (
	termGraceInterrupted = 100 * time.Millisecond // Avocado SIGKILLs us 1 s after SIGTERM
	termGrace            = 3 * time.Second
	drainInterrupted     = 50 * time.Millisecond
	drainTimeout         = 2 * time.Second // output of processes that escaped the group
)

// interrupted reports whether ctx ended because the runner got a signal
// (short budgets) rather than, say, the test's own timeout.
func interrupted(ctx context.Context) bool {
	var ie *interruptedError
	return ctx.Err() != nil && errors.As(context.Cause(ctx), &ie) && ie.bySignal
}

// runCommand runs the body command in its own process group, streams its
// output as stdout/stderr messages, and on ctx's end terminates the whole
// group. Whatever the body leaves running in its group is stopped when it
// exits.
func runCommand(ctx context.Context, spec commandSpec, rep *reporter, procs *procGroups, trap *panicTrap) commandResult {
	path, err := resolveCommand(spec.argv[0], spec.dir, spec.env)
	if err != nil {
		return commandResult{startErr: err}
	}
	rOut, wOut, err := os.Pipe()
	if err != nil {
		return commandResult{startErr: fmt.Errorf("runner: %w", err)}
	}
	rErr, wErr, err := os.Pipe()
	if err != nil {
		rOut.Close()
		wOut.Close()
		return commandResult{startErr: fmt.Errorf("runner: %w", err)}
	}
	// Stdin stays nil (/dev/null): the runner's stdin is Avocado's.
	g, err := pgroup.Start(spec.argv, pgroup.Options{
		Path: path, Dir: spec.dir, Env: spec.env, Stdout: wOut, Stderr: wErr,
		Grace: func(cause error) time.Duration {
			if interrupted(ctx) || errors.Is(cause, pgroup.ErrLeaderExited) {
				return termGraceInterrupted
			}
			return termGrace
		},
		// A safety net for the one case nothing else covers: the
		// runner SIGKILLed.
		DieWithParent: true,
	})
	wOut.Close()
	wErr.Close()
	if err != nil {
		rOut.Close()
		rErr.Close()
		return commandResult{startErr: fmt.Errorf("runner: starting %s: %w", py.Repr(spec.argv[0]), err)}
	}
	procs.add(g)

	send := func(m message) { rep.Send(ctx, m) }
	var readers sync.WaitGroup
	for _, s := range []struct {
		name string
		r    *os.File
	}{{"stdout", rOut}, {"stderr", rErr}} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer trap.catch()
			out := newOutputStream(s.name, send)
			defer out.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := s.r.Read(buf)
				if n > 0 {
					out.Write(buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}

	// The whole group is stopped on ctx's end and whatever the body left
	// in it once it exits; see agent/pgroup.
	pres := g.Wait(ctx)
	procs.remove(g)

	drained := make(chan struct{})
	go func() {
		readers.Wait()
		close(drained)
	}()
	drain := drainTimeout
	if interrupted(ctx) {
		drain = drainInterrupted
	}
	t := time.NewTimer(drain)
	select {
	case <-drained:
	case <-t.C:
		// A process that left the group (setsid) still holds a pipe.
		rOut.SetReadDeadline(time.Now())
		rErr.SetReadDeadline(time.Now())
		<-drained
	}
	t.Stop()
	rOut.Close()
	rErr.Close()

	res := commandResult{exitCode: pres.ExitCode, signal: pres.Signal}
	if pres.Err != nil {
		res.startErr = fmt.Errorf("runner: waiting for %s: %w", py.Repr(spec.argv[0]), pres.Err)
	}
	return res
}

// resolveCommand finds the program: a name with a slash is a path
// (relative to dir), a bare name is looked up in the body's PATH.
func resolveCommand(name, dir string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		st, err := os.Stat(path)
		switch {
		case err != nil:
			return "", fmt.Errorf("runner: body command %s not found: %s", py.Repr(name), unwrapPathError(err))
		case st.IsDir():
			return "", fmt.Errorf("runner: body command %s is a directory", py.Repr(name))
		case st.Mode()&0o111 == 0:
			return "", fmt.Errorf("runner: body command %s is not executable", py.Repr(name))
		}
		return path, nil
	}
	pathVar := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, d := range filepath.SplitList(pathVar) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("runner: body command %s not found in PATH", py.Repr(name))
}

func signalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return fmt.Sprintf("%d", int(sig))
}

// procGroups tracks the process groups of running bodies so that the
// signal path can kill them even when the lifecycle goroutine is stuck.
type procGroups struct {
	mu     sync.Mutex
	groups map[*pgroup.Group]bool
	closed bool
}

func newProcGroups() *procGroups { return &procGroups{groups: map[*pgroup.Group]bool{}} }

func (p *procGroups) add(g *pgroup.Group) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		// killAll ran before this group existed.
		_, _ = g.Signal(syscall.SIGKILL)
		return
	}
	p.groups[g] = true
}

// remove forgets a group once it has been reaped.
func (p *procGroups) remove(g *pgroup.Group) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.groups, g)
}

// killAll SIGKILLs every registered group and any added later. A group
// already reaped is left alone by Signal: its id may be someone else's.
func (p *procGroups) killAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for g := range p.groups {
		_, _ = g.Signal(syscall.SIGKILL)
	}
}

// outputStream cuts a byte stream into stdout/stderr messages of at most
// maxChunk bytes, ending each at a newline where possible: Avocado's
// debug.log keeps an unterminated line in a buffer shared by all tests of
// the job. The final partial line goes out with an encoding (when it is
// UTF-8) so that Avocado terminates it instead.
type outputStream struct {
	name    string
	send    func(message)
	pending []byte
}

func newOutputStream(name string, send func(message)) *outputStream {
	return &outputStream{name: name, send: send}
}

func (s *outputStream) Write(p []byte) (int, error) {
	s.pending = append(s.pending, p...)
	for len(s.pending) > 0 {
		window := s.pending[:min(len(s.pending), maxChunk)]
		cut := 0
		if i := lastNewline(window); i >= 0 {
			cut = i + 1
		} else if len(window) == maxChunk {
			cut = maxChunk
		} else {
			break
		}
		s.send(outputMessage(s.name, append([]byte(nil), s.pending[:cut]...)))
		s.pending = s.pending[cut:]
	}
	if len(s.pending) == 0 {
		s.pending = nil
	}
	return len(p), nil
}

func lastNewline(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			return i
		}
	}
	return -1
}

// Close sends what is left.
func (s *outputStream) Close() error {
	if len(s.pending) == 0 {
		return nil
	}
	if utf8.Valid(s.pending) {
		s.send(textOutputMessage(s.name, string(s.pending)))
	} else {
		s.send(outputMessage(s.name, s.pending))
	}
	s.pending = nil
	return nil
}

// panicTrap collects panics of the runner's goroutines, so that one of
// them failing still ends with a finished message instead of a dead
// process (Avocado would wait for it forever).
type panicTrap struct{ ch chan string }

func newPanicTrap() *panicTrap { return &panicTrap{ch: make(chan string, 1)} }

// catch must be deferred directly: defer trap.catch().
func (t *panicTrap) catch() {
	if p := recover(); p != nil {
		msg := fmt.Sprintf("runner internal error: panic: %v\n%s", p, debug.Stack())
		select {
		case t.ch <- msg:
		default:
		}
	}
}
