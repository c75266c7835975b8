package agent

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

const nobodyUID = 65534

// dialAs dials addr from a socket created with fsuid uid (the socket's
// owner), on a thread of its own that ends with the dial: fsuid is per
// thread, and no other goroutine ever runs as uid.
func dialAs(t *testing.T, uid int, addr string) net.Conn {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making a socket of another uid needs root")
	}
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Setfsuid(uid); err != nil {
			ch <- res{err: err}
			return
		}
		c, err := net.Dial("tcp", addr)
		ch <- res{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}

// acceptedOwner dials ln with dial and returns the uid tcpPeerUID finds
// for the accepted connection.
func acceptedOwner(t *testing.T, ln net.Listener, dial func() net.Conn) (uint32, error) {
	t.Helper()
	client := dial()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != client.LocalAddr().String() {
		t.Fatalf("accepted %v, dialled from %v", c.RemoteAddr(), client.LocalAddr())
	}
	return tcpPeerUID(c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr))
}

// The uid of a loopback peer is the owner of its socket: ours, or
// nobody's for a socket made as nobody, over IPv4, IPv6 and IPv4 on a
// dual-stack listener.
func TestTCPPeerUID_ownerOfTheFarEnd(t *testing.T) {
	for _, tc := range []struct{ listen, dial string }{
		{"127.0.0.1:0", "127.0.0.1"},
		{"[::1]:0", "::1"},
		{":0", "127.0.0.1"},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			ln, err := net.Listen("tcp", tc.listen)
			if err != nil {
				if tc.listen != "127.0.0.1:0" {
					t.Skipf("no IPv6 loopback here: %v", err)
				}
				t.Fatal(err)
			}
			defer ln.Close()
			addr := net.JoinHostPort(tc.dial, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
			uid, err := acceptedOwner(t, ln, func() net.Conn {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			})
			if err != nil || uid != uint32(os.Getuid()) {
				t.Errorf("owner of our own socket: uid %d, %v; want %d", uid, err, os.Getuid())
			}
			uid, err = acceptedOwner(t, ln, func() net.Conn { return dialAs(t, nobodyUID, addr) })
			if err != nil || uid != nobodyUID {
				t.Errorf("owner of nobody's socket: uid %d, %v; want %d", uid, err, nobodyUID)
			}
		})
	}
}

// A peer that closed its socket has no owner to tell (the kernel reports
// uid 0 for what is left of it): an error, never root.
func TestTCPPeerUID_closedPeerIsUnknown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client := dialAs(t, nobodyUID, ln.Addr().String())
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client.Close()
	if uid, err := tcpPeerUID(c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)); err == nil {
		t.Errorf("closed peer: uid %d, no error", uid)
	}
	// A 4-tuple no socket has is an error too.
	bogus := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	if uid, err := tcpPeerUID(c.LocalAddr().(*net.TCPAddr), bogus); err == nil {
		t.Errorf("no such socket: uid %d, no error", uid)
	}
}

// Local users each have their own pending slots: nobody's new
// connections push out nobody's oldest, never root's, even when root's
// is the oldest of all on loopback.
func TestGuardedListener_localUsersCountApart(t *testing.T) {
	ln, inner, accept := newLoopbackGuard(t, 8, 1, 1)
	addr := inner.Addr().String()
	dialAs(t, 0, addr)
	root := accept()
	dialAs(t, nobodyUID, addr)
	first := accept()
	dialAs(t, nobodyUID, addr)
	second := accept()
	ln.mu.Lock()
	rootState, firstState, secondState := root.state, first.state, second.state
	ln.mu.Unlock()
	if root.key != "loopback uid 0" || first.key != "loopback uid 65534" || second.key != first.key {
		t.Errorf("keys: root %q, nobody %q and %q", root.key, first.key, second.key)
	}
	if rootState != connPending || firstState != connClosed || secondState != connPending {
		t.Errorf("states (0 pending, 2 closed): root %d, nobody's first %d, second %d", rootState, firstState, secondState)
	}
	if n := ln.unownedN.Load(); n != 0 {
		t.Errorf("%d local connections of an unknown owner", n)
	}
	root.Close()
	second.Close()

	// A peer gone before its connection is accepted has no owner to
	// tell: it is counted under loopback alone, and reported.
	var told error
	ln.unowned = func(n uint64, err error) { told = err }
	dialAs(t, nobodyUID, addr).Close()
	gone := accept()
	defer gone.Close()
	if gone.key != "loopback" || ln.unownedN.Load() != 1 || told == nil {
		t.Errorf("peer gone: key %q, %d unknown, told %v; want loopback, 1, an error", gone.key, ln.unownedN.Load(), told)
	}
}
