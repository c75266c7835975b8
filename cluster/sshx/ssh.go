package sshx

import (
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
	sshagent "golang.org/x/crypto/ssh/agent"
)

// Config says how to reach one node over SSH. Start from
// DefaultConfig and set Address plus at least one credential.
type Config struct {
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
	// trusts nothing. Required (DefaultConfig uses ~/.ssh/known_hosts).
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

// DefaultConfig returns the defaults for every field except Address and
// the credentials.
func DefaultConfig() Config {
	known := ""
	if home, err := os.UserHomeDir(); err == nil {
		// Where OpenSSH looks, so keys already accepted by ssh(1) work.
		known = filepath.Join(home, ".ssh", "known_hosts")
	}
	return Config{
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

func (cfg Config) validate() error {
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
		return fmt.Errorf("ssh config for %q: %s", cfg.Address, strings.Join(errs, "; "))
	}
	return nil
}

var (
	// ErrClosed is returned by calls on a client that was closed, or
	// whose connection was lost.
	ErrClosed = errors.New("ssh connection closed")
	// ErrKeepaliveTimeout is Err's value when the node stopped answering
	// keepalives and the connection was closed for it.
	ErrKeepaliveTimeout = errors.New("ssh keepalive timeout: node stopped answering")
	// ErrAuth marks a failed login: no offered credential was accepted.
	ErrAuth = errors.New("ssh authentication failed")
	// ErrNothingListens marks a forward sshd could not connect on the
	// node: nothing listens at that address or socket.
	ErrNothingListens = errors.New("nothing listens there on the node")
)

// Client is one authenticated SSH connection to a node. Commands, SFTP
// and TCP forwards share it. Safe for concurrent use.
type Client struct {
	cfg    Config
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

// Dial connects and authenticates to a node. The context bounds the TCP
// connect, the handshake and authentication; cfg.ConnectTimeout applies when
// it has no deadline. An unknown or changed host key fails with a
// *HostKeyError (see Config.AcceptNewHostKeys).
func Dial(ctx context.Context, cfg Config, logger *slog.Logger) (*Client, error) {
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
		return nil, fmt.Errorf("ssh %s: connect: %w", addr, err)
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

	sc := &Client{
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
func dialError(ctx context.Context, cfg Config, addr string, hk *hostKeyChecker, err error) error {
	if hkErr := hk.failure(); hkErr != nil {
		return hkErr
	}
	ctxErr := ctx.Err()
	if ctxErr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The socket's deadline is the context's; its timer may fire first.
		ctxErr = context.DeadlineExceeded
	}
	if ctxErr != nil {
		return fmt.Errorf("ssh %s: handshake: %w (%v)", addr, ctxErr, err)
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		return fmt.Errorf("%w as %s@%s (tried %s; is the public key in the node's ~%s/.ssh/authorized_keys?): %w",
			ErrAuth, cfg.User, addr, triedCredentials(cfg), cfg.User, err)
	}
	return fmt.Errorf("ssh %s: %w", addr, err)
}

// triedCredentials names what a login offered, so a failed one says which
// key files to look at.
func triedCredentials(cfg Config) string {
	var tried []string
	if cfg.UseAgent && os.Getenv("SSH_AUTH_SOCK") != "" {
		tried = append(tried, "the keys of ssh-agent at $SSH_AUTH_SOCK")
	}
	if len(cfg.KeyFiles) > 0 {
		tried = append(tried, "key files "+strings.Join(cfg.KeyFiles, ", "))
	}
	if cfg.Password != "" {
		tried = append(tried, "a password")
	}
	if len(tried) == 0 {
		return "no credentials"
	}
	return strings.Join(tried, "; ")
}

// authMethods builds the auth methods in order: agent and key files (one
// "publickey" method, since the client tries each method name only once),
// then password and keyboard-interactive. The returned func closes the
// agent connection.
func authMethods(ctx context.Context, cfg Config, logger *slog.Logger) ([]ssh.AuthMethod, func(), error) {
	closeAgent := func() {}
	var fileSigners []ssh.Signer
	for _, f := range cfg.KeyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, closeAgent, fmt.Errorf("ssh key file: %w", err)
		}
		s, err := ssh.ParsePrivateKey(b)
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, closeAgent, fmt.Errorf("ssh key file %s is passphrase-protected; load it into ssh-agent (ssh-add %s) and use the agent instead", f, f)
		}
		if err != nil {
			return nil, closeAgent, fmt.Errorf("ssh key file %s: %w", f, err)
		}
		fileSigners = append(fileSigners, s)
	}
	var agentClient sshagent.ExtendedAgent
	if sock := os.Getenv("SSH_AUTH_SOCK"); cfg.UseAgent && sock != "" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", sock)
		if err != nil {
			logger.Warn("ssh-agent unreachable; continuing without it", "err", err)
		} else {
			agentClient = sshagent.NewClient(conn)
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
func (c *Client) Address() string { return c.addr }

// Done is closed when the connection is gone: closed, lost, or declared
// dead by keepalives.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection ended once Done is closed: nil after Close,
// ErrKeepaliveTimeout, or the transport's error. Before that it is nil.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

func (c *Client) setReason(err error) {
	c.mu.Lock()
	if c.reason == nil {
		c.reason = err
	}
	c.mu.Unlock()
}

func (c *Client) watch() {
	err := c.client.Wait()
	select {
	case <-c.closing:
	default:
		if err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %s: remote end closed the connection", ErrClosed, c.addr)
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
func (c *Client) keepalive(interval time.Duration, maxMissed int) {
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
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closing)
		if cerr := c.client.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("ssh %s: close: %w", c.addr, cerr)
		}
		<-c.done
	})
	return err
}

// acquire takes a session slot, waiting for ctx, and returns its release.
func (c *Client) acquire(ctx context.Context) (func(), error) {
	select {
	case c.sessions <- struct{}{}:
		return func() { <-c.sessions }, nil
	case <-c.done:
		return nil, c.closedErr()
	case <-ctx.Done():
		return nil, fmt.Errorf("ssh %s: waiting for a free session: %w", c.addr, ctx.Err())
	}
}

func (c *Client) closedErr() error {
	if r := c.Err(); r != nil && !errors.Is(r, ErrClosed) {
		return fmt.Errorf("%w: %s: %w", ErrClosed, c.addr, r)
	}
	return fmt.Errorf("%w: %s", ErrClosed, c.addr)
}

// DialContext opens a connection from the node to addr through the SSH
// connection: network "tcp" (direct-tcpip, e.g. "127.0.0.1:9999") or
// "unix" (direct-streamlocal, a socket path such as the agent's).
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.client.DialContext(ctx, network, addr)
	if err != nil {
		// sshd answers "connect failed" when its own connect is refused
		// (or the socket is missing): typed, so callers can say what
		// should have been listening.
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) && oce.Reason == ssh.ConnectionFailed {
			return nil, fmt.Errorf("ssh %s: forward to %s: %w (%w)", c.addr, addr, ErrNothingListens, err)
		}
		return nil, fmt.Errorf("ssh %s: forward to %s: %w", c.addr, addr, err)
	}
	return conn, nil
}

// ListenRemote asks sshd to listen on addr on the node (e.g.
// "127.0.0.1:0"; Addr() reports the chosen port) and returns the listener:
// connections made on the node arrive through the SSH connection. Close
// the listener to cancel the forward.
func (c *Client) ListenRemote(ctx context.Context, addr string) (net.Listener, error) {
	return c.listenRemote(ctx, "tcp", addr)
}

// ListenRemoteUnix is ListenRemote for a Unix socket at path on the node
// (streamlocal-forward@openssh.com). sshd creates it as the SSH user with
// its StreamLocalBindMask (0177 by default), so in a 0700 directory only
// that user, and root, can connect. The path must not exist yet.
func (c *Client) ListenRemoteUnix(ctx context.Context, path string) (net.Listener, error) {
	return c.listenRemote(ctx, "unix", path)
}

func (c *Client) listenRemote(ctx context.Context, network, addr string) (net.Listener, error) {
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var l net.Listener
		var err error
		if network == "unix" {
			l, err = c.client.ListenUnix(addr)
		} else {
			l, err = c.client.Listen(network, addr)
		}
		ch <- result{l, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("ssh %s: listen on node at %s: %w", c.addr, addr, r.err)
		}
		return r.l, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.l != nil {
				r.l.Close()
			}
		}()
		return nil, fmt.Errorf("ssh %s: listen on node at %s: %w", c.addr, addr, ctx.Err())
	}
}
