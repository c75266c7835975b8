package agent

import (
	"io"
	"net"
	"testing"
	"time"
)

// The oldest unauthenticated connection of an address makes room for its
// newest; an admitted connection no longer counts there and holds a slot
// of its own; each slot is released once.
func TestGuardedListener_pendingEvictionAndAdmission(t *testing.T) {
	ln, inner, accept := newLoopbackGuard(t, 8, 1, 2)
	var clients []net.Conn
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	first := dial()
	a := accept()
	dial()
	b := accept()
	dial() // a third from loopback: the first is closed for it
	c := accept()
	first.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := first.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("oldest pending connection: read %d, %v; want EOF", n, err)
	}
	ln.mu.Lock()
	q := ln.pending[b.key]
	ln.mu.Unlock()
	if len(q) != 2 || q[0] != b || q[1] != c || a.state != connClosed {
		t.Errorf("pending after eviction: %d conns, first evicted: %v", len(q), a.state == connClosed)
	}
	if !ln.admit(b) {
		t.Fatal("admit refused with a free admitted slot")
	}
	if !ln.admit(b) {
		t.Fatal("a second request on an admitted connection was refused")
	}
	if ln.admit(c) {
		t.Error("admitted past the admitted cap")
	}
	if len(ln.sem) != 1 || len(ln.admitted) != 1 {
		t.Errorf("slots: %d pending, %d admitted; want 1 and 1", len(ln.sem), len(ln.admitted))
	}
	b.Close()
	b.Close()
	c.Close()
	if len(ln.sem) != 0 || len(ln.admitted) != 0 {
		t.Errorf("slots after close: %d pending, %d admitted; want none", len(ln.sem), len(ln.admitted))
	}
}

// newLoopbackGuard is a guarded listener on a loopback port, closed at
// the test's end, with what it listens on and a function accepting
// one connection from it.
func newLoopbackGuard(t *testing.T, pendingCap, admittedCap, perIP int) (*guardedListener, net.Listener, func() *guardedConn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newGuardedListener(inner, pendingCap, admittedCap, perIP, nil, nil)
	t.Cleanup(func() { ln.Close() })
	accept := func() *guardedConn {
		t.Helper()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c.(*guardedConn)
	}
	return ln, inner, accept
}
