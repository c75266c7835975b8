package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// RunOptions are the standard streams of a remote command. Nil Stdin
// sends nothing (EOF at once); nil writers discard.
type RunOptions struct {
	Stdin io.Reader
	// Stdout and Stderr are written from two goroutines: one writer given
	// as both must be safe for concurrent use.
	Stdout, Stderr io.Writer
}

// RemoteExitError is a remote command that ran and failed.
type RemoteExitError struct {
	Node string // "host:port"
	Argv []string
	// Status is the exit status; 128 when killed by a signal without one.
	Status int
	// Signal is the signal name ("KILL") when a signal ended the command.
	Signal string
	// Stderr is the tail (up to 4 KiB) of the command's standard error.
	Stderr string
	err    *ssh.ExitError
}

func (e *RemoteExitError) Error() string {
	how := "exited with status " + strconv.Itoa(e.Status)
	if e.Signal != "" {
		how = "killed by signal " + e.Signal
	}
	msg := fmt.Sprintf("ssh %s: %s %s", e.Node, argvSummary(e.Argv), how)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		if len(s) > 512 {
			s = "..." + s[len(s)-512:]
		}
		msg += ": " + s
	}
	return msg
}

// Unwrap exposes x/crypto's *ssh.ExitError.
func (e *RemoteExitError) Unwrap() error { return e.err }

// argvSummary renders argv for messages, shortened.
func argvSummary(argv []string) string {
	s := QuoteArgv(argv)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return strconv.Quote(s)
}

// QuoteArgv renders argv as one POSIX shell command line that the remote
// login shell splits back into exactly argv. sshd hands commands to the
// user's shell, so every word is quoted unless made only of characters no
// POSIX shell treats specially. Inside quotes, each single quote becomes
// quote, backslash, quote, quote (close, escaped quote, reopen). Assumes a
// POSIX-compatible login shell (sh, bash, dash, ksh, zsh), not csh or fish.
// Words must not contain NUL, which cannot cross the SSH exec request.
func QuoteArgv(argv []string) string {
	var b strings.Builder
	for i, w := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if w != "" && strings.IndexFunc(w, needsQuote) < 0 {
			b.WriteString(w)
			continue
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(w, "'", `'\''`))
		b.WriteByte('\'')
	}
	return b.String()
}

// needsQuote reports runes outside the always-literal set. '=' is quoted
// because a first word "A=B" would be an assignment, not a command.
func needsQuote(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return false
	}
	return !strings.ContainsRune("_@%+:,./-", r)
}

// pidPreamble makes the remote shell report its pid on stderr and then
// replace itself with the command, so the command's pid is known. sshd
// starts every command in a new session (setsid), so that pid also names
// the process group of everything the command starts.
const pidPreamble = `printf 'vtc-pid %s\n' "$$" >&2; exec `

// Run runs argv on the node and waits for it. argv[0] must be a program
// (the login shell execs it), not a shell builtin such as cd. A non-zero
// exit returns a *RemoteExitError. When ctx ends first, the command's
// process group is killed, the session closed, and ctx's error returned.
func (c *Client) Run(ctx context.Context, argv []string, opt RunOptions) error {
	if len(argv) == 0 {
		return fmt.Errorf("ssh %s: run: empty argv", c.addr)
	}
	for _, w := range argv {
		if strings.IndexByte(w, 0) >= 0 {
			return fmt.Errorf("ssh %s: run %s: argument contains a NUL byte", c.addr, argvSummary(argv))
		}
	}
	if argv[0] == "" || argv[0][0] == '-' {
		// The shell's exec would take it as an option (dash has no "--").
		return fmt.Errorf("ssh %s: run %s: program name must not be empty or start with '-'", c.addr, argvSummary(argv))
	}
	release, err := c.acquire(ctx)
	if err != nil {
		return err
	}
	var releaseOnce sync.Once
	defer releaseOnce.Do(release)
	sess, err := c.client.NewSession()
	if err != nil {
		return c.sessionErr(err)
	}
	defer sess.Close()

	tail := &TailBuffer{max: 4096}
	var stderr io.Writer = tail
	if opt.Stderr != nil {
		stderr = io.MultiWriter(tail, opt.Stderr)
	}
	pid := &pidSniffer{next: stderr}
	sess.Stdout = opt.Stdout
	sess.Stderr = pid
	// Stdin is copied outside Session.Wait, which would otherwise block on
	// a reader that never ends even after the command exited.
	stdin, err := sess.StdinPipe()
	if err != nil {
		return c.sessionErr(err)
	}
	if err := sess.Start(pidPreamble + QuoteArgv(argv)); err != nil {
		return fmt.Errorf("ssh %s: start %s: %w", c.addr, argvSummary(argv), err)
	}
	go func() {
		if opt.Stdin != nil {
			io.Copy(stdin, opt.Stdin)
		}
		stdin.Close()
	}()
	waitc := make(chan error, 1)
	go func() { waitc <- sess.Wait() }()

	start := time.Now()
	select {
	case err := <-waitc:
		return c.waitErr(argv, err, tail)
	case <-ctx.Done():
	}
	// Closing the channel does not stop the command, and sshd honours
	// "signal" requests only for non-root logins (it skips post-auth
	// privilege separation for root), so kill the process group by pid
	// through a new session once this one's slot is free.
	sess.Signal(ssh.SIGKILL)
	sess.Close()
	releaseOnce.Do(release)
	c.killRemote(ctx, pid.get(), argv)
	c.logger.Debug("ssh command cancelled", "argv", argv, "duration_seconds", time.Since(start).Seconds())
	return fmt.Errorf("ssh %s: %s: %w", c.addr, argvSummary(argv), ctx.Err())
}

// killRemote kills a cancelled command's process group, with a short
// deadline of its own since ctx is already done.
func (c *Client) killRemote(ctx context.Context, pid int, argv []string) {
	if pid <= 1 {
		c.logger.Warn("ssh command cancelled before reporting its pid; it may still run", "argv", argv)
		return
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := c.Run(kctx, []string{"kill", "-KILL", "--", "-" + strconv.Itoa(pid)}, RunOptions{})
	var re *RemoteExitError
	if err != nil && !errors.As(err, &re) {
		// A RemoteExitError means the group was already gone.
		c.logger.Warn("ssh: could not kill cancelled command", "argv", argv, "pid", pid, "err", err)
	}
}

// pidSniffer takes the preamble's "vtc-pid N" line off the front of stderr
// and passes everything after it on.
type pidSniffer struct {
	next io.Writer

	mu   sync.Mutex
	head []byte
	done bool
	pid  int
}

func (p *pidSniffer) Write(b []byte) (int, error) {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return p.next.Write(b)
	}
	p.head = append(p.head, b...)
	i := bytes.IndexByte(p.head, '\n')
	if i < 0 && len(p.head) < 64 {
		p.mu.Unlock()
		return len(b), nil
	}
	p.done = true
	rest := p.head
	if i >= 0 {
		if v, ok := strings.CutPrefix(string(p.head[:i]), "vtc-pid "); ok {
			if n, err := strconv.Atoi(v); err == nil {
				p.pid = n
				rest = p.head[i+1:]
			}
		}
	}
	p.head = nil
	p.mu.Unlock()
	if len(rest) > 0 {
		if _, err := p.next.Write(rest); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func (p *pidSniffer) get() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

func (c *Client) sessionErr(err error) error {
	select {
	case <-c.done:
		return c.closedErr()
	default:
		return fmt.Errorf("ssh %s: open session: %w", c.addr, err)
	}
}

func (c *Client) waitErr(argv []string, err error, tail *TailBuffer) error {
	if err == nil {
		return nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return &RemoteExitError{Node: c.addr, Argv: argv, Status: ee.ExitStatus(), Signal: ee.Signal(), Stderr: tail.String(), err: ee}
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return fmt.Errorf("ssh %s: %s: connection ended without an exit status: %w", c.addr, argvSummary(argv), err)
	}
	return fmt.Errorf("ssh %s: %s: %w", c.addr, argvSummary(argv), err)
}

// Output runs argv and returns its standard output, also when it fails.
func (c *Client) Output(ctx context.Context, argv []string) ([]byte, error) {
	var out bytes.Buffer
	err := c.Run(ctx, argv, RunOptions{Stdout: &out})
	return out.Bytes(), err
}

// RemoteArch returns the node's machine hardware name (uname -m), e.g.
// "x86_64" or "aarch64".
func (c *Client) RemoteArch(ctx context.Context) (string, error) {
	out, err := c.Output(ctx, []string{"uname", "-m"})
	if err != nil {
		return "", err
	}
	arch := strings.TrimSpace(string(out))
	if arch == "" || strings.ContainsAny(arch, " \n") {
		return "", fmt.Errorf("ssh %s: uname -m printed %q, want one word", c.addr, out)
	}
	return arch, nil
}

// TailBuffer keeps the last max bytes written to it; it is safe for the
// two goroutines that copy a command's stdout and stderr.
type TailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

// NewTailBuffer returns a TailBuffer that keeps the last max bytes.
func NewTailBuffer(max int) *TailBuffer { return &TailBuffer{max: max} }

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
