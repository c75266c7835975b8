package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StatusConfig tunes the status server client.
type StatusConfig struct {
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration
	// WriteTimeout bounds writing one message; a stuck server must not
	// hang the runner.
	WriteTimeout time.Duration
	// TCPRetries is how many more times a refused TCP connection is
	// tried. Avocado may start its server after spawning the runner; its
	// own client retries 600 times, 1 s apart.
	TCPRetries int
	// TCPRetryInterval is the pause between TCP attempts.
	TCPRetryInterval time.Duration
}

// defaultStatusConfig returns the settings the runner uses.
func defaultStatusConfig() StatusConfig {
	return StatusConfig{
		DialTimeout:      5 * time.Second,  // local sockets answer at once
		WriteTimeout:     30 * time.Second, // far beyond a healthy server
		TCPRetries:       120,              // with the interval: one minute,
		TCPRetryInterval: 500 * time.Millisecond,
	}
}

// statusURI is one -s value: a colon means TCP host:port (exactly one
// colon, so no IPv6, like Avocado), anything else a unix socket path.
type statusURI struct {
	Raw     string
	Network string // "tcp" or "unix"
	Address string
}

// parseStatusURI validates one -s value.
func parseStatusURI(s string) (statusURI, error) {
	if s == "" {
		return statusURI{}, errors.New("runner: empty status server URI")
	}
	if !strings.Contains(s, ":") {
		return statusURI{Raw: s, Network: "unix", Address: s}, nil
	}
	host, port, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(port, ":") || port == "" {
		return statusURI{}, fmt.Errorf("runner: status server URI %q: expected HOST:PORT (one colon) or a unix socket path", s)
	}
	return statusURI{Raw: s, Network: "tcp", Address: net.JoinHostPort(host, port)}, nil
}

// statusClient posts message lines to every status server of a task,
// mirroring Avocado's TaskStatusService: one connection per URI, opened on
// the first message and kept for the task; a broken pipe reconnects once
// and resends, and a URI that fails again is given up for the rest of the
// task.
type statusClient struct {
	cfg   StatusConfig
	mu    sync.Mutex
	conns []*statusConn
}

type statusConn struct {
	uri  statusURI
	conn net.Conn
	dead error // set once the URI has been given up
}

// newStatusClient validates uris and returns a client; nothing is dialed
// yet.
func newStatusClient(uris []string, cfg StatusConfig) (*statusClient, error) {
	c := &statusClient{cfg: cfg}
	for _, s := range uris {
		u, err := parseStatusURI(s)
		if err != nil {
			return nil, err
		}
		c.conns = append(c.conns, &statusConn{uri: u})
	}
	return c, nil
}

// Post writes line (one JSON message with its newline) to every URI. The
// error joins the failures of all URIs; URIs that failed before are
// skipped silently, their error was already returned once.
func (c *statusClient) Post(ctx context.Context, line []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, sc := range c.conns {
		if sc.dead != nil {
			continue
		}
		if err := c.post(ctx, sc, line); err != nil {
			sc.dead = err
			if sc.conn != nil {
				sc.conn.Close()
				sc.conn = nil
			}
			errs = append(errs, fmt.Errorf("runner: status server %s: %w", sc.uri.Raw, err))
		}
	}
	return errors.Join(errs...)
}

func (c *statusClient) post(ctx context.Context, sc *statusConn, line []byte) error {
	if sc.conn == nil {
		conn, err := c.dial(ctx, sc.uri, true)
		if err != nil {
			return err
		}
		sc.conn = conn
	}
	err := c.write(ctx, sc.conn, line)
	if err == nil || !(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		return err
	}
	// The server closed on us (Avocado restarts nothing, but a proxy
	// might): reconnect once, without the long TCP retry.
	sc.conn.Close()
	sc.conn = nil
	conn, derr := c.dial(ctx, sc.uri, false)
	if derr != nil {
		return fmt.Errorf("%w; reconnecting: %w", err, derr)
	}
	sc.conn = conn
	return c.write(ctx, conn, line)
}

func (c *statusClient) write(ctx context.Context, conn net.Conn, line []byte) error {
	deadline := time.Now().Add(c.cfg.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	return writeWhole(conn, line, deadline)
}

func (c *statusClient) dial(ctx context.Context, u statusURI, retry bool) (net.Conn, error) {
	d := net.Dialer{Timeout: c.cfg.DialTimeout}
	for attempt := 0; ; attempt++ {
		conn, err := d.DialContext(ctx, u.Network, u.Address)
		if err == nil {
			return conn, nil
		}
		if u.Network != "tcp" || !retry || attempt >= c.cfg.TCPRetries || !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, err
		}
		t := time.NewTimer(c.cfg.TCPRetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// Usable reports whether messages can still reach someone: there are no
// URIs (stdout only) or at least one has not been given up.
func (c *statusClient) Usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.conns) == 0 {
		return true
	}
	for _, sc := range c.conns {
		if sc.dead == nil {
			return true
		}
	}
	return false
}

// Close closes every connection. It is safe to call more than once.
func (c *statusClient) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, sc := range c.conns {
		if sc.conn != nil {
			errs = append(errs, sc.conn.Close())
			sc.conn = nil
		}
	}
	return errors.Join(errs...)
}
