package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// SSHConfig says how to reach one node over SSH. Start from
// DefaultSSHConfig and set Address plus at least one credential.
type SSHConfig struct {
	// Address is the node's host name or IP address. Required.
	Address string
	// Port is the SSH port, 1 to 65535.
	Port int
	// User is the login name.
	User string
	// KeyFiles are unencrypted private key files, tried after the agent's
	// keys. A passphrase-protected key is an error: load it into ssh-agent.
	KeyFiles []string
	// UseAgent offers the keys of the ssh-agent at $SSH_AUTH_SOCK, first.
	// Without SSH_AUTH_SOCK it is silently skipped.
	UseAgent bool
	// Password is tried after keys, by "password" and by
	// "keyboard-interactive" (each prompt answered with it). Empty skips both.
	Password string
	// KnownHostsFile holds the host keys that are trusted. A missing file
	// trusts nothing. Required (DefaultSSHConfig uses ~/.ssh/known_hosts).
	KnownHostsFile string
	// AcceptNewHostKeys records the key of a host that KnownHostsFile does
	// not list yet and proceeds (trust on first use). A key that differs
	// from a recorded one is refused regardless.
	AcceptNewHostKeys bool
	// ConnectTimeout bounds TCP connect, handshake and authentication when
	// the context has no deadline. Zero leaves only the context.
	ConnectTimeout time.Duration
	// KeepaliveInterval is how often a keepalive@openssh.com request checks
	// that the node still answers. Zero disables keepalives.
	KeepaliveInterval time.Duration
	// KeepaliveMaxMissed is how many intervals in a row may pass without an
	// answer before the connection is closed as dead. At least 1 when
	// keepalives are on.
	KeepaliveMaxMissed int
	// MaxSessions caps concurrent channels that need a session (commands,
	// SFTP). sshd refuses more than its MaxSessions, 10 by default.
	MaxSessions int
}

// DefaultSSHConfig returns the defaults for every field except Address and
// the credentials.
func DefaultSSHConfig() SSHConfig {
	known := ""
	if home, err := os.UserHomeDir(); err == nil {
		// Where OpenSSH looks, so keys already accepted by ssh(1) work.
		known = filepath.Join(home, ".ssh", "known_hosts")
	}
	return SSHConfig{
		Port: 22,
		// avocado-vt's node default.
		User: "root",
		// Harmless without SSH_AUTH_SOCK; the common setup with it.
		UseAgent:       true,
		KnownHostsFile: known,
		// Long enough for a loaded node or a slow DNS answer, short enough
		// that a dead node is reported while the user still waits.
		ConnectTimeout: 15 * time.Second,
		// A dead peer is noticed within about a minute ((3+1) × 15 s)
		// without noticeable traffic.
		KeepaliveInterval:  15 * time.Second,
		KeepaliveMaxMissed: 3,
		// Below sshd's default MaxSessions (10), leaving room for an
		// interactive ssh(1) multiplexed on the same connection.
		MaxSessions: 8,
	}
}

func (cfg SSHConfig) validate() error {
	var errs []string
	if cfg.Address == "" {
		errs = append(errs, "Address is empty")
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		errs = append(errs, fmt.Sprintf("Port %d outside 1..65535", cfg.Port))
	}
	if cfg.User == "" {
		errs = append(errs, "User is empty")
	}
	if cfg.KnownHostsFile == "" {
		errs = append(errs, "KnownHostsFile is empty (host keys are always verified)")
	}
	if cfg.ConnectTimeout < 0 {
		errs = append(errs, "ConnectTimeout is negative")
	}
	if cfg.KeepaliveInterval < 0 {
		errs = append(errs, "KeepaliveInterval is negative")
	}
	if cfg.KeepaliveInterval > 0 && cfg.KeepaliveMaxMissed < 1 {
		errs = append(errs, fmt.Sprintf("KeepaliveMaxMissed %d, want at least 1 with keepalives on", cfg.KeepaliveMaxMissed))
	}
	if cfg.MaxSessions < 1 {
		errs = append(errs, fmt.Sprintf("MaxSessions %d, want at least 1", cfg.MaxSessions))
	}
	if len(cfg.KeyFiles) == 0 && cfg.Password == "" && (!cfg.UseAgent || os.Getenv("SSH_AUTH_SOCK") == "") {
		errs = append(errs, "no credentials: set KeyFiles or Password, or UseAgent with SSH_AUTH_SOCK")
	}
	if len(errs) > 0 {
		return fmt.Errorf("cluster: ssh config for %q: %s", cfg.Address, strings.Join(errs, "; "))
	}
	return nil
}

var (
	// ErrSSHClosed is returned by calls on a client that was closed, or
	// whose connection was lost.
	ErrSSHClosed = errors.New("cluster: ssh connection closed")
	// ErrKeepaliveTimeout is Err's value when the node stopped answering
	// keepalives and the connection was closed for it.
	ErrKeepaliveTimeout = errors.New("cluster: ssh keepalive timeout: node stopped answering")
	// ErrSSHAuth marks a failed login: no offered credential was accepted.
	ErrSSHAuth = errors.New("cluster: ssh authentication failed")
)

// SSHClient is one authenticated SSH connection to a node. Commands, SFTP
// and TCP forwards share it. Safe for concurrent use.
type SSHClient struct {
	cfg    SSHConfig
	addr   string
	logger *slog.Logger
	client *ssh.Client

	sessions chan struct{} // semaphore, MaxSessions slots
	// sha256Argv prints a file's SHA-256 like sha256sum; tests replace it
	// to exercise the SFTP read-back path.
	sha256Argv []string

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	done      chan struct{} // closed when the connection is gone

	mu     sync.Mutex
	reason error // why the connection ended, read after done
}

// DialSSH connects and authenticates to a node. The context bounds the TCP
// connect, the handshake and authentication; cfg.ConnectTimeout applies when
// it has no deadline. An unknown or changed host key fails with a
// *HostKeyError (see SSHConfig.AcceptNewHostKeys).
func DialSSH(ctx context.Context, cfg SSHConfig, logger *slog.Logger) (*SSHClient, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	addr := net.JoinHostPort(cfg.Address, strconv.Itoa(cfg.Port))
	logger = logger.With("addr", addr)
	if _, ok := ctx.Deadline(); !ok && cfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
		defer cancel()
	}
	start := time.Now()

	hk, err := newHostKeyChecker(cfg.KnownHostsFile, cfg.AcceptNewHostKeys, logger)
	if err != nil {
		return nil, err
	}
	auth, closeAgent, err := authMethods(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	// The agent signs only during authentication.
	defer closeAgent()

	ccfg := &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              auth,
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms(addr),
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: ssh %s: connect: %w", addr, err)
	}
	// ssh.NewClientConn takes no context: a deadline on the socket bounds
	// it, and cancellation moves that deadline into the past.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, ccfg)
	if !stop() && err == nil {
		// Cancelled right as the handshake finished: honour the cancel.
		c.Close()
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, dialError(ctx, cfg, addr, hk, err)
	}
	conn.SetDeadline(time.Time{})

	sc := &SSHClient{
		cfg:        cfg,
		addr:       addr,
		logger:     logger,
		client:     ssh.NewClient(c, chans, reqs),
		sessions:   make(chan struct{}, cfg.MaxSessions),
		sha256Argv: []string{"sha256sum", "--"},
		closing:    make(chan struct{}),
		done:       make(chan struct{}),
	}
	go sc.watch()
	if cfg.KeepaliveInterval > 0 {
		go sc.keepalive(cfg.KeepaliveInterval, cfg.KeepaliveMaxMissed)
	}
	logger.Debug("ssh connected", "user", cfg.User, "duration_seconds", time.Since(start).Seconds())
	return sc, nil
}

// dialError turns a handshake failure into the most useful error: the
// typed host key error, the context's error, or an authentication failure.
func dialError(ctx context.Context, cfg SSHConfig, addr string, hk *hostKeyChecker, err error) error {
	if hkErr := hk.failure(); hkErr != nil {
		return hkErr
	}
	ctxErr := ctx.Err()
	if ctxErr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The socket's deadline is the context's; its timer may fire first.
		ctxErr = context.DeadlineExceeded
	}
	if ctxErr != nil {
		return fmt.Errorf("cluster: ssh %s: handshake: %w (%v)", addr, ctxErr, err)
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		return fmt.Errorf("%w as %s@%s: %w", ErrSSHAuth, cfg.User, addr, err)
	}
	return fmt.Errorf("cluster: ssh %s: %w", addr, err)
}

// authMethods builds the auth methods in order: agent and key files (one
// "publickey" method, since the client tries each method name only once),
// then password and keyboard-interactive. The returned func closes the
// agent connection.
func authMethods(ctx context.Context, cfg SSHConfig, logger *slog.Logger) ([]ssh.AuthMethod, func(), error) {
	closeAgent := func() {}
	var fileSigners []ssh.Signer
	for _, f := range cfg.KeyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, closeAgent, fmt.Errorf("cluster: ssh key file: %w", err)
		}
		s, err := ssh.ParsePrivateKey(b)
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, closeAgent, fmt.Errorf("cluster: ssh key file %s is passphrase-protected; load it into ssh-agent (ssh-add %s) and use the agent instead", f, f)
		}
		if err != nil {
			return nil, closeAgent, fmt.Errorf("cluster: ssh key file %s: %w", f, err)
		}
		fileSigners = append(fileSigners, s)
	}
	var agentClient agent.ExtendedAgent
	if sock := os.Getenv("SSH_AUTH_SOCK"); cfg.UseAgent && sock != "" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", sock)
		if err != nil {
			logger.Warn("ssh-agent unreachable; continuing without it", "err", err)
		} else {
			agentClient = agent.NewClient(conn)
			closeAgent = func() { conn.Close() }
		}
	}
	var methods []ssh.AuthMethod
	if agentClient != nil || len(fileSigners) > 0 {
		methods = append(methods, ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			var signers []ssh.Signer
			if agentClient != nil {
				s, err := agentClient.Signers()
				if err != nil {
					logger.Warn("ssh-agent listing keys failed; continuing without it", "err", err)
				}
				signers = append(signers, s...)
			}
			return append(signers, fileSigners...), nil
		}))
	}
	if pw := cfg.Password; pw != "" {
		methods = append(methods,
			ssh.Password(pw),
			// For sshd configured with PAM keyboard-interactive only: every
			// hidden prompt gets the password, visible prompts nothing.
			ssh.KeyboardInteractive(func(_, _ string, questions []string, echos []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range questions {
					if i < len(echos) && !echos[i] {
						answers[i] = pw
					}
				}
				return answers, nil
			}))
	}
	return methods, closeAgent, nil
}

// Address returns the node's "host:port".
func (c *SSHClient) Address() string { return c.addr }

// Done is closed when the connection is gone: closed, lost, or declared
// dead by keepalives.
func (c *SSHClient) Done() <-chan struct{} { return c.done }

// Err says why the connection ended once Done is closed: nil after Close,
// ErrKeepaliveTimeout, or the transport's error. Before that it is nil.
func (c *SSHClient) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

func (c *SSHClient) setReason(err error) {
	c.mu.Lock()
	if c.reason == nil {
		c.reason = err
	}
	c.mu.Unlock()
}

func (c *SSHClient) watch() {
	err := c.client.Wait()
	select {
	case <-c.closing:
	default:
		if err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %s: remote end closed the connection", ErrSSHClosed, c.addr)
		}
		c.setReason(err)
		c.logger.Warn("ssh connection lost", "err", err)
	}
	close(c.done)
}

// keepalive sends keepalive@openssh.com every interval with at most one
// request in flight, and closes the connection after maxMissed intervals
// in a row without an answer. Any answer, even a refusal, proves the peer
// alive.
func (c *SSHClient) keepalive(interval time.Duration, maxMissed int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var (
		pending chan error
		missed  int
	)
	for {
		select {
		case <-c.done:
			return
		case err := <-pending:
			pending = nil
			if err != nil {
				return // connection gone; watch reports why
			}
			missed = 0
		case <-t.C:
			if pending != nil {
				missed++
				if missed >= maxMissed {
					c.setReason(ErrKeepaliveTimeout)
					c.logger.Warn("ssh keepalive: no answer, closing", "missed", missed,
						"duration_seconds", (time.Duration(missed) * interval).Seconds())
					c.client.Close()
					return
				}
				continue
			}
			pending = make(chan error, 1)
			go func(ch chan error) {
				_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
				ch <- err
			}(pending)
		}
	}
}

// Close closes the connection and everything on it. Later calls return nil.
func (c *SSHClient) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closing)
		if cerr := c.client.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("cluster: ssh %s: close: %w", c.addr, cerr)
		}
		<-c.done
	})
	return err
}

// acquire takes a session slot, waiting for ctx, and returns its release.
func (c *SSHClient) acquire(ctx context.Context) (func(), error) {
	select {
	case c.sessions <- struct{}{}:
		return func() { <-c.sessions }, nil
	case <-c.done:
		return nil, c.closedErr()
	case <-ctx.Done():
		return nil, fmt.Errorf("cluster: ssh %s: waiting for a free session: %w", c.addr, ctx.Err())
	}
}

func (c *SSHClient) closedErr() error {
	if r := c.Err(); r != nil && !errors.Is(r, ErrSSHClosed) {
		return fmt.Errorf("%w: %s: %w", ErrSSHClosed, c.addr, r)
	}
	return fmt.Errorf("%w: %s", ErrSSHClosed, c.addr)
}

// RunOptions are the standard streams of a remote command. Nil Stdin
// sends nothing (EOF at once); nil writers discard.
type RunOptions struct {
	Stdin          io.Reader
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
	msg := fmt.Sprintf("cluster: ssh %s: %s %s", e.Node, argvSummary(e.Argv), how)
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
func (c *SSHClient) Run(ctx context.Context, argv []string, opt RunOptions) error {
	if len(argv) == 0 {
		return fmt.Errorf("cluster: ssh %s: run: empty argv", c.addr)
	}
	for _, w := range argv {
		if strings.IndexByte(w, 0) >= 0 {
			return fmt.Errorf("cluster: ssh %s: run %s: argument contains a NUL byte", c.addr, argvSummary(argv))
		}
	}
	if argv[0] == "" || argv[0][0] == '-' {
		// The shell's exec would take it as an option (dash has no "--").
		return fmt.Errorf("cluster: ssh %s: run %s: program name must not be empty or start with '-'", c.addr, argvSummary(argv))
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

	tail := &tailBuffer{max: 4096}
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
		return fmt.Errorf("cluster: ssh %s: start %s: %w", c.addr, argvSummary(argv), err)
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
	return fmt.Errorf("cluster: ssh %s: %s: %w", c.addr, argvSummary(argv), ctx.Err())
}

// killRemote kills a cancelled command's process group, with a short
// deadline of its own since ctx is already done.
func (c *SSHClient) killRemote(ctx context.Context, pid int, argv []string) {
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

func (c *SSHClient) sessionErr(err error) error {
	select {
	case <-c.done:
		return c.closedErr()
	default:
		return fmt.Errorf("cluster: ssh %s: open session: %w", c.addr, err)
	}
}

func (c *SSHClient) waitErr(argv []string, err error, tail *tailBuffer) error {
	if err == nil {
		return nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return &RemoteExitError{Node: c.addr, Argv: argv, Status: ee.ExitStatus(), Signal: ee.Signal(), Stderr: tail.String(), err: ee}
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return fmt.Errorf("cluster: ssh %s: %s: connection ended without an exit status: %w", c.addr, argvSummary(argv), err)
	}
	return fmt.Errorf("cluster: ssh %s: %s: %w", c.addr, argvSummary(argv), err)
}

// Output runs argv and returns its standard output, also when it fails.
func (c *SSHClient) Output(ctx context.Context, argv []string) ([]byte, error) {
	var out bytes.Buffer
	err := c.Run(ctx, argv, RunOptions{Stdout: &out})
	return out.Bytes(), err
}

// RemoteArch returns the node's machine hardware name (uname -m), e.g.
// "x86_64" or "aarch64".
func (c *SSHClient) RemoteArch(ctx context.Context) (string, error) {
	out, err := c.Output(ctx, []string{"uname", "-m"})
	if err != nil {
		return "", err
	}
	arch := strings.TrimSpace(string(out))
	if arch == "" || strings.ContainsAny(arch, " \n") {
		return "", fmt.Errorf("cluster: ssh %s: uname -m printed %q, want one word", c.addr, out)
	}
	return arch, nil
}

// DialContext opens a TCP connection from the node to addr (e.g. an agent
// on the node's "127.0.0.1:9999") through the SSH connection.
func (c *SSHClient) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.client.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: ssh %s: forward to %s: %w", c.addr, addr, err)
	}
	return conn, nil
}

// ListenRemote asks sshd to listen on addr on the node (e.g.
// "127.0.0.1:0"; Addr() reports the chosen port) and returns the listener:
// connections made on the node arrive through the SSH connection. Close
// the listener to cancel the forward.
func (c *SSHClient) ListenRemote(ctx context.Context, addr string) (net.Listener, error) {
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		l, err := c.client.Listen("tcp", addr)
		ch <- result{l, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("cluster: ssh %s: listen on node at %s: %w", c.addr, addr, r.err)
		}
		return r.l, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.l != nil {
				r.l.Close()
			}
		}()
		return nil, fmt.Errorf("cluster: ssh %s: listen on node at %s: %w", c.addr, addr, ctx.Err())
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
