package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// guardedListener bounds the connections a server holds: at most cap at
// once (Accept waits for a free slot, as netutil.LimitListener does) and at
// most perIP from one remote address (extra ones are closed at once, so one
// remote client cannot take every slot). check, when set, vets each connection
// before it counts (the peer credentials of a Unix socket); a refused
// connection is closed and reported through refused.
type guardedListener struct {
	net.Listener
	sem     chan struct{}
	perIP   int
	check   func(net.Conn) error
	refused func(reason string, err error)

	closeOnce sync.Once
	done      chan struct{}

	mu  sync.Mutex
	ips map[string]int
}

func newGuardedListener(ln net.Listener, capacity, perIP int, check func(net.Conn) error, refused func(string, error)) *guardedListener {
	return &guardedListener{
		Listener: ln,
		sem:      make(chan struct{}, capacity),
		perIP:    perIP,
		check:    check,
		refused:  refused,
		done:     make(chan struct{}),
		ips:      map[string]int{},
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
		key := remoteKey(c.RemoteAddr())
		l.mu.Lock()
		// Loopback peers are local users and SSH forwards, which all share
		// one address: a cap there would let one of them lock out the
		// others, so only the global cap applies to them.
		over := l.perIP > 0 && !isLoopbackKey(key) && l.ips[key] >= l.perIP
		if !over {
			l.ips[key]++
		}
		l.mu.Unlock()
		if over {
			c.Close()
			<-l.sem
			l.refused("too many connections from one address", fmt.Errorf("%s holds %d connections", key, l.perIP))
			continue
		}
		gc := &guardedConn{Conn: c}
		gc.release = func() {
			l.mu.Lock()
			if l.ips[key]--; l.ips[key] <= 0 {
				delete(l.ips, key)
			}
			l.mu.Unlock()
			<-l.sem
		}
		return gc, nil
	}
}

func (l *guardedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type guardedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
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

func isLoopbackKey(key string) bool {
	ip := net.ParseIP(key)
	return key == "unix" || (ip != nil && ip.IsLoopback())
}
