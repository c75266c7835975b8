package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// guardedListener bounds the connections a server holds, in two classes.
// A connection starts pending: nothing it sent has been authenticated
// yet. At most pendingCap are pending at once (Accept waits for a free
// slot, as netutil.LimitListener does), and at most perIP from one address,
// loopback included (all of 127/8 and ::1 count as one address, so a local
// user is one more address, not every slot): when an address has perIP
// pending, its oldest pending connection is closed to make room, so a
// holder of slots only ever pushes out its own, and a client that sends
// its request at once gets it read. A connection from this host (from
// loopback, or from the address it reached) is counted under its address
// and the uid owning the peer's socket (ownerKey): one user's flood of
// new connections would otherwise push out another's before its request
// could be read, whatever the order of eviction. Once a request on a connection
// carries the credential (admit), the connection leaves the pending class
// for the admitted one, of admittedCap slots that no unauthenticated
// connection can take. Unix-socket peers, already vetted by check (the
// peer's uid), have no per-address cap. A refused connection is closed
// and reported through refused.
type guardedListener struct {
	net.Listener
	sem      chan struct{} // pending slots
	admitted chan struct{} // admitted slots
	perIP    int
	check    func(net.Conn) error
	refused  func(reason string, err error)
	// unowned is told of each local connection whose owner could not be
	// found (nil: not told); unownedN counts them.
	unowned  func(n uint64, err error)
	unownedN atomic.Uint64

	closeOnce sync.Once
	done      chan struct{}

	mu      sync.Mutex
	pending map[string][]*guardedConn // per address, oldest first
}

func newGuardedListener(ln net.Listener, pendingCap, admittedCap, perIP int, check func(net.Conn) error, refused func(string, error)) *guardedListener {
	if refused == nil {
		refused = func(string, error) {}
	}
	return &guardedListener{
		Listener: ln,
		sem:      make(chan struct{}, pendingCap),
		admitted: make(chan struct{}, admittedCap),
		perIP:    perIP,
		check:    check,
		refused:  refused,
		done:     make(chan struct{}),
		pending:  map[string][]*guardedConn{},
	}
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.sem
			return nil, err
		}
		if l.check != nil {
			if err := l.check(c); err != nil {
				c.Close()
				<-l.sem
				l.refused("peer refused", err)
				continue
			}
		}
		key := l.ownerKey(c)
		gc := &guardedConn{Conn: c, l: l, key: key}
		l.mu.Lock()
		var evict *guardedConn
		if q := l.pending[key]; l.perIP > 0 && key != "unix" && len(q) >= l.perIP {
			evict = q[0]
		}
		l.pending[key] = append(l.pending[key], gc)
		l.mu.Unlock()
		if evict != nil {
			evict.Close()
			l.refused("too many unauthenticated connections from one address", fmt.Errorf("%s holds %d; its oldest was closed", key, l.perIP))
		}
		return gc, nil
	}
}

// admit moves c to the admitted class once a request on it carried the
// credential; false when every admitted slot is taken (the caller refuses
// the request).
func (l *guardedListener) admit(c *guardedConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch c.state {
	case connAdmitted:
		return true
	case connClosed:
		return false
	}
	select {
	case l.admitted <- struct{}{}:
	default:
		return false
	}
	l.dropPendingLocked(c)
	c.state = connAdmitted
	<-l.sem
	return true
}

func (l *guardedListener) dropPendingLocked(c *guardedConn) {
	q := l.pending[c.key]
	for i, p := range q {
		if p == c {
			q = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(q) == 0 {
		delete(l.pending, c.key)
	} else {
		l.pending[c.key] = q
	}
}

func (l *guardedListener) release(c *guardedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch c.state {
	case connPending:
		l.dropPendingLocked(c)
		<-l.sem
	case connAdmitted:
		<-l.admitted
	}
	c.state = connClosed
}

func (l *guardedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

const (
	connPending = iota
	connAdmitted
	connClosed
)

type guardedConn struct {
	net.Conn
	l     *guardedListener
	key   string
	state int // under l.mu
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.l.release(c)
	return err
}

// connKey is the address a connection is counted under: remoteKey, with
// every loopback address as one.
func connKey(a net.Addr) string {
	key := remoteKey(a)
	if ip := net.ParseIP(key); ip != nil && ip.IsLoopback() {
		return "loopback"
	}
	return key
}

// ownerKey is the key c's pending slot is counted under: connKey, and
// for a connection from this host the uid owning the peer's socket. When
// that uid cannot be found the connection is counted under connKey alone
// (where no one's connection of a known owner is), and l.unowned is told.
func (l *guardedListener) ownerKey(c net.Conn) string {
	key := connKey(c.RemoteAddr())
	remote, ok := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok || !ok2 || !(remote.IP.IsLoopback() || remote.IP.Equal(local.IP)) {
		return key
	}
	uid, err := tcpPeerUID(local, remote)
	if err != nil {
		if !errors.Is(err, errors.ErrUnsupported) {
			n := l.unownedN.Add(1)
			if l.unowned != nil {
				l.unowned(n, err)
			}
		}
		return key
	}
	return key + " uid " + strconv.FormatUint(uint64(uid), 10)
}

// remoteKey is the address a connection is counted and throttled under:
// the IP for TCP, one key for every Unix-socket peer.
func remoteKey(a net.Addr) string {
	if a == nil {
		return "unix"
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if a.Network() == "unix" {
		return "unix"
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// SocketDirError says why the directory of a Unix socket is not private
// enough to hold the agent's socket.
type SocketDirError struct {
	Dir    string
	Reason string
}

func (e *SocketDirError) Error() string {
	return fmt.Sprintf("socket directory %s %s; it must be a directory of mode 0700 owned by uid %d (this agent's user)", e.Dir, e.Reason, os.Geteuid())
}

// listenUnix binds path as a Unix socket of mode 0600. Its directory must
// be a real directory owned by this uid with no access for group or
// others: the directory, not the socket's mode, is what keeps other users
// out on every kernel. A stale socket (nobody accepts on it) is replaced;
// a live one is EADDRINUSE; any other file there is an error.
func listenUnix(path string) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("socket path %q is not absolute", path)
	}
	dir := filepath.Dir(path)
	fi, err := os.Lstat(dir)
	switch {
	case err != nil:
		return nil, &SocketDirError{Dir: dir, Reason: fmt.Sprintf("cannot be used (%v)", err)}
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, &SocketDirError{Dir: dir, Reason: "is a symlink"}
	case !fi.IsDir():
		return nil, &SocketDirError{Dir: dir, Reason: "is not a directory"}
	case fi.Mode().Perm()&0o077 != 0:
		return nil, &SocketDirError{Dir: dir, Reason: fmt.Sprintf("has mode %04o", fi.Mode().Perm())}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, &SocketDirError{Dir: dir, Reason: fmt.Sprintf("is owned by uid %d", st.Uid)}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, &net.OpError{Op: "listen", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"}, Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("removing the stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// The 0700 directory already keeps others out; 0600 also covers a
	// directory loosened later.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
