package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/cluster/sshx"
)

// Link is what a test needs of the SSH connection to its node besides the
// agent's calls: a way for the agent to send logs back, file collection,
// and notice of the connection's end. A NodeConn has one either over its
// own SSH connection or, when the job has one, through the job's SSH
// connection holder (holder.go).
type Link interface {
	// ListenRemoteUnix listens on a Unix socket at path on the node;
	// closing the listener also removes the socket file there.
	ListenRemoteUnix(ctx context.Context, path string) (net.Listener, error)
	// CopyFrom copies a file or tree from the node; see sshx.CopyFrom.
	CopyFrom(ctx context.Context, remote, local string) error
	// Size is the size of the node's regular file remote.
	Size(ctx context.Context, remote string) (int64, error)
	// CopyTail copies what the node's file remote holds from offset from;
	// see sshx.CopyTailSFTP.
	CopyTail(ctx context.Context, remote, local string, from int64) error
	// Done is closed when the connection to the node ends.
	Done() <-chan struct{}
}

// Link returns the node's link: through the holder when the connection
// was made by ConnectHeld, else over the node's own SSH connection.
func (nc *NodeConn) Link(ctx context.Context) (Link, error) {
	if nc.held != nil {
		return nc.held, nil
	}
	ssh, err := nc.SSH(ctx)
	if err != nil {
		return nil, err
	}
	return sshLink{ssh}, nil
}

// sshLink is a Link over an SSH connection of this process.
type sshLink struct{ *sshx.Client }

func (l sshLink) ListenRemoteUnix(ctx context.Context, p string) (net.Listener, error) {
	ln, err := l.Client.ListenRemoteUnix(ctx, p)
	if err != nil {
		return nil, err
	}
	return &removingListener{Listener: ln, remove: func() {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// sshd leaves the socket file behind; it is ours to remove.
		_ = l.Run(rctx, []string{"rm", "-f", "--", p}, sshx.RunOptions{})
	}}, nil
}

type removingListener struct {
	net.Listener
	once   sync.Once
	remove func()
}

func (l *removingListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(l.remove)
	return err
}

// Holder is a runner's handle on its job's SSH connection holder.
type Holder struct {
	socket string
}

// OpenHolder returns the holder listening at socket, or an error if none
// answers there.
func OpenHolder(ctx context.Context, socket string) (*Holder, error) {
	h := &Holder{socket: socket}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := h.request(ctx, holderRequest{Op: "ping"})
	if err != nil {
		return nil, err
	}
	c.Close()
	return h, nil
}

// Quit asks the holder to exit; it closes its connections first.
func (h *Holder) Quit(ctx context.Context) error {
	c, err := h.request(ctx, holderRequest{Op: "quit"})
	if err != nil {
		return err
	}
	// The holder hangs up when it has gone.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.Read(make([]byte, 1))
	return c.Close()
}

// Warm has the holder connect to node n now, so the first test finds the
// connection made.
func (h *Holder) Warm(ctx context.Context, n Node) error {
	c, err := h.request(ctx, holderRequest{Op: "warm", Node: &n})
	if err != nil {
		return err
	}
	return c.Close()
}

// HolderError is an operation the holder refused or failed.
type HolderError struct {
	Op, Node, Msg string
}

func (e *HolderError) Error() string {
	if e.Node == "" {
		return fmt.Sprintf("ssh connection holder: %s: %s", e.Op, e.Msg)
	}
	return fmt.Sprintf("ssh connection holder: %s on node %q: %s", e.Op, e.Node, e.Msg)
}

// request sends req on a new connection and returns it once the holder
// has answered yes; ctx bounds the wait for that answer only.
func (h *Holder) request(ctx context.Context, req holderRequest) (net.Conn, error) {
	c, _, err := h.requestReply(ctx, req)
	return c, err
}

// requestReply is request, returning the holder's reply too.
func (h *Holder) requestReply(ctx context.Context, req holderRequest) (net.Conn, holderReply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", h.socket)
	if err != nil {
		return nil, holderReply{}, fmt.Errorf("ssh connection holder: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var line []byte
	if err = writeJSONLine(c, req); err == nil {
		line, err = readHolderLine(c)
	}
	var rep holderReply
	if err == nil {
		err = json.Unmarshal(line, &rep)
	}
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, holderReply{}, fmt.Errorf("ssh connection holder: %s: %w", req.Op, err)
	}
	if rep.Error != "" {
		c.Close()
		node := ""
		if req.Node != nil {
			node = req.Node.Name
		}
		return nil, holderReply{}, &HolderError{Op: req.Op, Node: node, Msg: rep.Error}
	}
	if !stop() {
		c.Close()
		return nil, holderReply{}, ctx.Err()
	}
	return c, rep, nil
}

// heldLink is a Link, and the agent's dialer, through the holder.
type heldLink struct {
	h    *Holder
	node Node

	mu     sync.Mutex
	watch  net.Conn
	done   chan struct{}
	closed bool
}

// ConnectHeld reaches tunnel-mode node n through the job's holder: calls
// go over a channel of the holder's SSH connection to the agent's socket.
func ConnectHeld(n Node, h *Holder, opts ConnectOptions) (*NodeConn, error) {
	if n.AgentBind == AgentBindDirect {
		return nil, fmt.Errorf("cluster: node %q: the SSH connection holder serves tunnel-mode nodes only", n.Name)
	}
	sock := AgentSocket(n)
	if err := checkSocketPath(n.Name, sock); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nc := &NodeConn{node: n, opts: opts, log: log.With("node", n.Name)}
	nc.held = &heldLink{h: h, node: n}
	nc.agent = NewClient(n.Name, NewTunnelTransport(nc.held, sock), "")
	return nc, nil
}

// DialContext opens a stream to the node's agent socket (the only target
// the holder dials); network and addr are the tunnel transport's.
func (l *heldLink) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	n := l.node
	return l.h.request(ctx, holderRequest{Op: "dial", Node: &n})
}

// ListenRemoteUnix has the holder listen at p on the node and relay each
// connection to a socket of this process in the holder's directory.
func (l *heldLink) ListenRemoteUnix(ctx context.Context, p string) (net.Listener, error) {
	local := filepath.Join(filepath.Dir(l.h.socket), "l-"+rand.Text()[:16]+".sock")
	if err := checkLocalSocketPath(local); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", local)
	if err != nil {
		return nil, fmt.Errorf("ssh connection holder: %w", err)
	}
	n := l.node
	ctl, err := l.h.request(ctx, holderRequest{Op: "listen", Node: &n, Path: p, Local: local})
	if err != nil {
		ln.Close()
		return nil, err
	}
	// Closing the control connection makes the holder close the remote
	// socket and remove its file.
	return &removingListener{Listener: ln, remove: func() { ctl.Close() }}, nil
}

// CopyFrom has the holder copy remote into local.
func (l *heldLink) CopyFrom(ctx context.Context, remote, local string) error {
	abs, err := filepath.Abs(local)
	if err != nil {
		return err
	}
	n := l.node
	c, err := l.h.request(ctx, holderRequest{Op: "copy", Node: &n, Path: remote, Local: abs})
	if err != nil {
		return err
	}
	return c.Close()
}

// Size asks the holder for the size of remote.
func (l *heldLink) Size(ctx context.Context, remote string) (int64, error) {
	n := l.node
	c, rep, err := l.h.requestReply(ctx, holderRequest{Op: "size", Node: &n, Path: remote})
	if err != nil {
		return 0, err
	}
	c.Close()
	return rep.Size, nil
}

// CopyTail has the holder copy remote from offset from into local.
func (l *heldLink) CopyTail(ctx context.Context, remote, local string, from int64) error {
	abs, err := filepath.Abs(local)
	if err != nil {
		return err
	}
	n := l.node
	c, err := l.h.request(ctx, holderRequest{Op: "copy", Node: &n, Path: remote, Local: abs, From: from, Tail: true})
	if err != nil {
		return err
	}
	return c.Close()
}

// Done is closed when the holder's connection to the node ends, or the
// holder does.
func (l *heldLink) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done != nil {
		return l.done
	}
	l.done = make(chan struct{})
	if l.closed {
		close(l.done)
		return l.done
	}
	n := l.node
	ctx, cancel := context.WithTimeout(context.Background(), holderReadTimeout)
	defer cancel()
	c, err := l.h.request(ctx, holderRequest{Op: "watch", Node: &n})
	if err != nil {
		close(l.done)
		return l.done
	}
	l.watch = c
	go func() {
		c.Read(make([]byte, 1))
		close(l.done)
	}()
	return l.done
}

// Close ends the watch; the holder's connection stays for other tests.
func (l *heldLink) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.watch != nil {
		l.watch.Close()
	}
	return nil
}
