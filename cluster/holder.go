package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/cluster/sshx"
)

// The SSH connection holder: one process per Avocado job (`vtcluster hooks
// holder`, started by the pre-tests hook, ended by the post-tests hook)
// that keeps one SSH connection per node for the whole job, so a test does
// not pay an SSH handshake, sshd's session set-up and a first channel of
// its own. The job's runners reach it through a Unix socket in a 0700
// directory of this user (HolderSocket), and the holder serves only peers
// of its own uid (SO_PEERCRED), so it gives no one anything they could not
// do with the user's SSH keys already.
//
// Each request is one connection: a JSON line (holderRequest), a JSON line
// back (holderReply), then, by operation:
//
//	dial    the connection becomes a stream to the node's agent socket
//	watch   held open until the node's SSH connection ends (then closed)
//	listen  a remote Unix socket in the node's agent directory whose
//	        connections the holder relays to the runner's local socket,
//	        until the runner closes this connection; then the remote
//	        socket is closed and its file removed
//	copy    files from the node into a local path (or, with tail, what a
//	        file holds from an offset), over one SFTP session per node
//	        kept for the job; the reply comes when it is done
//	size    the size of a file on the node
//	warm    connect to the node now (the pre-tests hook, for the first test)
//	ping    nothing (is the holder there?); quit: the holder exits
//
// The holder ends on quit, on SIGTERM, when the job's avocado process is
// gone, or when no runner has been connected for HolderConfig.Idle, so it
// cannot outlive its job. Whatever ends it, runners see their connections
// close: calls fail, a watch reports the link gone, and the agents stop
// the processes of calls whose connection closed.

// Limits of the holder's requests.
const (
	holderMaxLine     = 64 << 10
	holderReadTimeout = 10 * time.Second
	// DefaultHolderIdle is how long a holder waits with no runner
	// connected before it exits.
	DefaultHolderIdle = 2 * time.Minute
	holderOwnerPoll   = time.Second
)

type holderRequest struct {
	Op   string `json:"op"`
	Node *Node  `json:"node,omitempty"`
	// Path is the remote socket (listen) or the remote path (copy).
	Path string `json:"path,omitempty"`
	// Local is the runner's socket (listen) or the destination (copy).
	Local string `json:"local,omitempty"`
	// Tail makes a copy take only what the file holds from offset From.
	Tail bool  `json:"tail,omitempty"`
	From int64 `json:"from,omitempty"`
}

type holderReply struct {
	Error string `json:"error,omitempty"`
	// Size is the answer to "size".
	Size int64 `json:"size,omitempty"`
}

// HolderDir returns this user's private directory for holder sockets,
// creating it 0700. A directory that is a symlink, not ours, or open to
// others is refused: someone else planted it.
func HolderDir() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("vtcluster-%d", os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("cluster: holder directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("cluster: holder directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("cluster: holder directory %s is not a directory of this user with mode 0700; remove it", dir)
	}
	return dir, nil
}

// HolderSocket is where the holder of Avocado job jobID listens.
func HolderSocket(jobID string) (string, error) {
	dir, err := HolderDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(jobID))
	return filepath.Join(dir, "holder-"+hex.EncodeToString(sum[:8])+".sock"), nil
}

// HolderConfig configures ServeHolder.
type HolderConfig struct {
	// Socket is where to listen (HolderSocket).
	Socket string
	// Owner, when set, is the job's process: the holder exits once it is
	// gone.
	Owner *Owner
	// Idle is how long to wait with no runner connected before exiting;
	// zero means DefaultHolderIdle.
	Idle   time.Duration
	Logger *slog.Logger
}

// heldNode is one node's SSH connection and, for copies and socket
// removal, its SFTP session.
type heldNode struct {
	mu sync.Mutex // held while dialing: one connection per node
	nc *NodeConn

	sftpMu  sync.Mutex
	sftp    *sshx.SFTP
	sftpFor *sshx.Client
}

type holder struct {
	cfg HolderConfig
	log *slog.Logger
	ctx context.Context // ends at shutdown

	mu     sync.Mutex
	nodes  map[string]*heldNode
	active int
	idle   time.Time
	quit   chan struct{}
	quitMu sync.Once
}

// ServeHolder runs a holder until quit, ctx's end, the owner's end or idle
// time; ready is called once it listens. On return every SSH connection
// it held is closed and its socket removed.
func ServeHolder(ctx context.Context, cfg HolderConfig, ready func()) error {
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultHolderIdle
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkLocalSocketPath(cfg.Socket); err != nil {
		return err
	}
	// A socket left by a holder that was killed: nothing answers there.
	if c, err := net.DialTimeout("unix", cfg.Socket, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("cluster: a holder already listens on %s", cfg.Socket)
	}
	os.Remove(cfg.Socket)
	sweepDeadSockets(filepath.Dir(cfg.Socket))
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return fmt.Errorf("cluster: holder: %w", err)
	}
	os.Chmod(cfg.Socket, 0o600)
	ctx, cancel := context.WithCancel(ctx)
	h := &holder{cfg: cfg, log: log, ctx: ctx, nodes: map[string]*heldNode{}, idle: time.Now(), quit: make(chan struct{})}
	var wg sync.WaitGroup
	defer func() {
		cancel()
		ln.Close()
		os.Remove(cfg.Socket)
		wg.Wait()
		h.closeNodes()
		sweepDeadSockets(filepath.Dir(cfg.Socket))
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !samePeerUID(c) {
				c.Close()
				continue
			}
			h.enter()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer h.leave()
				defer c.Close()
				h.serve(c)
			}()
		}
	}()
	if ready != nil {
		ready()
	}
	tick := time.NewTicker(holderOwnerPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.quit:
			log.Info("holder: asked to quit")
			return nil
		case <-tick.C:
			if cfg.Owner != nil {
				if gone, why := cfg.Owner.Gone(); gone {
					log.Info("holder: the job is gone", "why", why)
					return nil
				}
			}
			h.mu.Lock()
			idle := h.active == 0 && time.Since(h.idle) > cfg.Idle
			h.mu.Unlock()
			if idle {
				log.Info("holder: idle", "for", cfg.Idle)
				return nil
			}
		}
	}
}

// sweepDeadSockets removes the sockets in dir, the holders' and runners'
// own directory, that nothing listens on any more: those of a holder or a
// runner that was killed (SIGKILL leaves its socket file). A live
// process's socket answers and is kept.
func sweepDeadSockets(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if e.Type()&fs.ModeSocket == 0 || !strings.HasSuffix(name, ".sock") ||
			!(strings.HasPrefix(name, "l-") || strings.HasPrefix(name, "holder-")) {
			continue
		}
		p := filepath.Join(dir, name)
		c, err := net.DialTimeout("unix", p, 100*time.Millisecond)
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			os.Remove(p)
		}
	}
}

// checkLocalSocketPath refuses a socket path the kernel would truncate.
func checkLocalSocketPath(p string) error {
	if len(p) > maxSocketPath {
		return fmt.Errorf("cluster: socket path %s is %d bytes, above the %d a Unix socket takes (set TMPDIR to a shorter directory)", p, len(p), maxSocketPath)
	}
	return nil
}

func (h *holder) enter() {
	h.mu.Lock()
	h.active++
	h.mu.Unlock()
}

func (h *holder) leave() {
	h.mu.Lock()
	h.active--
	h.idle = time.Now()
	h.mu.Unlock()
}

func (h *holder) closeNodes() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hn := range h.nodes {
		hn.sftpMu.Lock()
		if hn.sftp != nil {
			hn.sftp.Close()
		}
		hn.sftpMu.Unlock()
		hn.mu.Lock()
		if hn.nc != nil {
			hn.nc.Close()
		}
		hn.mu.Unlock()
	}
}

// samePeerUID admits only processes of this user: the socket's directory
// already keeps others out; this holds even if its mode were changed.
func samePeerUID(c net.Conn) bool {
	cred, err := agent.PeerCred(c)
	return err == nil && int(cred.UID) == os.Getuid()
}

// readLine reads one request or reply line byte by byte, so that nothing
// after it (a dial's stream) is consumed.
func readHolderLine(r io.Reader) ([]byte, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) <= holderMaxLine {
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		if b[0] == '\n' {
			return line, nil
		}
		line = append(line, b[0])
	}
	return nil, fmt.Errorf("line longer than %d bytes", holderMaxLine)
}

func writeJSONLine(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

func (h *holder) serve(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(holderReadTimeout))
	line, err := readHolderLine(c)
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	var req holderRequest
	if err := json.Unmarshal(line, &req); err != nil {
		writeJSONLine(c, holderReply{Error: "bad request: " + err.Error()})
		return
	}
	// The request ends when the runner hangs up or the holder shuts down.
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	reply := func(err error) bool {
		r := holderReply{}
		if err != nil {
			r.Error = err.Error()
		}
		return writeJSONLine(c, r) == nil && err == nil
	}
	switch req.Op {
	case "ping":
		reply(nil)
		return
	case "quit":
		reply(nil)
		h.quitMu.Do(func() { close(h.quit) })
		return
	}
	switch req.Op {
	case "warm", "dial", "watch", "listen", "copy", "size":
	default:
		reply(fmt.Errorf("unknown operation %q", req.Op))
		return
	}
	if req.Node == nil || req.Node.AgentBind == AgentBindDirect {
		reply(errors.New("a tunnel-mode node is required"))
		return
	}
	n := *req.Node
	ssh, hn, err := h.ssh(ctx, n)
	if err != nil {
		reply(err)
		return
	}
	switch req.Op {
	case "warm":
		reply(nil)
	case "dial":
		ch, err := ssh.DialContext(ctx, "unix", AgentSocket(n))
		if !reply(err) {
			return
		}
		splice(ctx, c, ch)
	case "watch":
		if !reply(nil) {
			return
		}
		go func() { io.Copy(io.Discard, c); cancel() }()
		select {
		case <-ssh.Done():
		case <-ctx.Done():
		}
	case "listen":
		h.listen(ctx, c, cancel, ssh, hn, n, req, reply)
	case "copy":
		go func() { io.Copy(io.Discard, c); cancel() }()
		reply(hn.withSFTP(ctx, ssh, func(sc *sshx.SFTP) error {
			if req.Tail {
				return ssh.CopyTailSFTP(ctx, sc, req.Path, req.Local, req.From)
			}
			return ssh.CopyFromSFTP(ctx, sc, req.Path, req.Local)
		}))
	case "size":
		var size int64
		err := hn.withSFTP(ctx, ssh, func(sc *sshx.SFTP) error {
			st, err := sc.Stat(req.Path)
			if err == nil {
				size = st.Size()
			}
			return err
		})
		r := holderReply{Size: size}
		if err != nil {
			r.Error = err.Error()
		}
		writeJSONLine(c, r)
	}
}

func (h *holder) listen(ctx context.Context, c net.Conn, cancel func(), ssh *sshx.Client, hn *heldNode, n Node, req holderRequest, reply func(error) bool) {
	// Only fresh log and sync sockets in the agent's own directory,
	// relayed only into this holder's own directory.
	if path.Dir(req.Path) != n.AgentDir() || !isTestSocketName(path.Base(req.Path)) {
		reply(fmt.Errorf("listen: %s is not a test's log or sync socket in %s", req.Path, n.AgentDir()))
		return
	}
	if filepath.Dir(req.Local) != filepath.Dir(h.cfg.Socket) {
		reply(fmt.Errorf("listen: %s is not in %s", req.Local, filepath.Dir(h.cfg.Socket)))
		return
	}
	ln, err := ssh.ListenRemoteUnix(ctx, req.Path)
	if err != nil {
		reply(err)
		return
	}
	// From here on the socket is closed and its file removed on every
	// path, including a runner gone before it read the reply.
	if !reply(nil) {
		cancel()
	}
	go func() { io.Copy(io.Discard, c); cancel() }()
	var wg sync.WaitGroup
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			rc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var d net.Dialer
				lc, err := d.DialContext(ctx, "unix", req.Local)
				if err != nil {
					rc.Close()
					return
				}
				splice(ctx, lc, rc)
			}()
		}
	}()
	<-ctx.Done()
	ln.Close()
	<-accepting // no relay starts after this
	// sshd leaves the socket file behind; it is ours to remove.
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if err := hn.withSFTP(rctx, ssh, func(sc *sshx.SFTP) error { return sc.Remove(req.Path) }); err != nil {
		h.log.Warn("holder: removing log socket", "node", n.Name, "path", req.Path, "err", err)
	}
	wg.Wait()
}

// ssh returns node n's held connection, dialing it (again) if needed.
// Nodes are held by everything that decides how they are reached, so a
// node registered anew is dialed anew.
func (h *holder) ssh(ctx context.Context, n Node) (*sshx.Client, *heldNode, error) {
	key := strings.Join([]string{n.Name, n.Host(), fmt.Sprint(n.ShellPort), n.User, n.KeyFile, n.KnownHosts, n.AgentBaseDir}, "\x00")
	h.mu.Lock()
	hn := h.nodes[key]
	if hn == nil {
		hn = &heldNode{}
		h.nodes[key] = hn
	}
	h.mu.Unlock()
	hn.mu.Lock()
	defer hn.mu.Unlock()
	if hn.nc == nil {
		hn.nc = &NodeConn{node: n, log: h.log.With("node", n.Name)}
	}
	ssh, err := hn.nc.SSH(ctx)
	return ssh, hn, err
}

// withSFTP runs fn on the node's SFTP session, opening it (again) when
// needed; one operation at a time. A cancelled operation closes it.
func (hn *heldNode) withSFTP(ctx context.Context, ssh *sshx.Client, fn func(*sshx.SFTP) error) error {
	hn.sftpMu.Lock()
	defer hn.sftpMu.Unlock()
	if hn.sftp != nil && hn.sftpFor != ssh {
		hn.sftp.Close()
		hn.sftp = nil
	}
	if hn.sftp == nil {
		// The session lives as long as the connection, not the request.
		sc, err := ssh.OpenSFTP(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		hn.sftp, hn.sftpFor = sc, ssh
	}
	done := make(chan error, 1)
	go func() { done <- fn(hn.sftp) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		hn.sftp.Close()
		<-done
		hn.sftp = nil
		return ctx.Err()
	}
}

// splice copies both ways between a and b until either side ends or ctx
// does, then closes both.
func splice(ctx context.Context, a, b net.Conn) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(a, b); done <- struct{}{} }()
	go func() { io.Copy(b, a); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	a.Close()
	b.Close()
	<-done
}
