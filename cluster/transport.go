package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/vtcluster/vtcluster/cluster/sshx"
)

// Transport reaches one node's agent. Implementations decide how the bytes
// travel; the XML-RPC client on top is the same for all of them.
type Transport interface {
	// DialAgent opens a new stream to the agent's HTTP endpoint. The
	// caller owns and closes the returned conn. It honours ctx for the
	// dial only; deadlines on the stream are the caller's business.
	DialAgent(ctx context.Context) (net.Conn, error)
	// Close releases what the transport holds. Connections already dialed
	// may keep working or fail; DialAgent fails after Close. Idempotent.
	Close() error
}

// ErrTransportClosed is returned by DialAgent after Close.
var ErrTransportClosed = errors.New("cluster: transport closed")

// ErrAgentNotRunning marks a node whose SSH login works but whose agent
// socket has nothing listening: the agent is not running, which is not
// a transport failure.
var ErrAgentNotRunning = errors.New("the agent is not running on the node (start it with: vtcluster agents start)")

// contextDialer is what the tunnel needs from an SSH connection.
type contextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// TunnelTransport reaches an agent that listens on a Unix socket in its
// 0700 directory on the node, through the node's SSH connection
// (direct-streamlocal@openssh.com). The agent opens no TCP port, and only
// the SSH user (and root) can connect to the socket: that is the
// credential, so no token is needed.
type TunnelTransport struct {
	ssh    contextDialer
	socket string

	mu     sync.Mutex
	closed bool
}

var _ Transport = (*TunnelTransport)(nil)

// NewTunnelTransport returns a transport to the Unix socket at socket on
// the node behind ssh. It does not own ssh: closing the transport leaves
// it open.
func NewTunnelTransport(ssh contextDialer, socket string) *TunnelTransport {
	return &TunnelTransport{ssh: ssh, socket: socket}
}

// DialAgent opens a direct-streamlocal channel to the agent's socket.
func (t *TunnelTransport) DialAgent(ctx context.Context) (net.Conn, error) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return nil, ErrTransportClosed
	}
	conn, err := t.ssh.DialContext(ctx, "unix", t.socket)
	if errors.Is(err, sshx.ErrNothingListens) {
		return nil, fmt.Errorf("cluster: %w: nothing listens on %s", ErrAgentNotRunning, t.socket)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: tunnel to agent socket %s: %w", t.socket, err)
	}
	return conn, nil
}

// Close marks the transport closed.
func (t *TunnelTransport) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	return nil
}

// DirectTransport reaches an agent over plain TCP at address:port. Our
// agent then demands a token; upstream's Python agent has none.
type DirectTransport struct {
	addr string

	mu     sync.Mutex
	closed bool
}

var _ Transport = (*DirectTransport)(nil)

// NewDirectTransport returns a transport to host:port.
func NewDirectTransport(host string, port int) *DirectTransport {
	return &DirectTransport{addr: net.JoinHostPort(host, strconv.Itoa(port))}
}

// DialAgent dials the agent over TCP.
func (t *DirectTransport) DialAgent(ctx context.Context) (net.Conn, error) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return nil, ErrTransportClosed
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: agent at %s: %w", t.addr, err)
	}
	return conn, nil
}

// Close marks the transport closed.
func (t *DirectTransport) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	return nil
}
