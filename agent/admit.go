package agent

import (
	"context"
	"net"
	"net/http"
)

// What the agent's listener does for its own server, exported for the
// other HTTP endpoints of vtcluster that any local user can reach (the
// runner's per-test agent proxy): connection slots where unauthenticated
// connections cannot take those of authenticated ones.

// GuardConns wraps ln: at most pending connections that have not yet
// authenticated (Accept waits beyond that), perAddr of them from one
// address with loopback as one address, and from this host per address
// and local user (its oldest pending connection makes room for a new
// one), and admitted more once a request on them
// is admitted with Admit. Serve it with srv, which GuardConns fits with
// the ConnContext Admit needs.
func GuardConns(srv *http.Server, ln net.Listener, pending, admitted, perAddr int) net.Listener {
	srv.ConnContext = withConn
	return newGuardedListener(ln, pending, admitted, perAddr, nil, nil)
}

type connCtxKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	if gc, ok := c.(*guardedConn); ok {
		return context.WithValue(ctx, connCtxKey{}, gc)
	}
	return ctx
}

// Admit moves the connection of r, whose credential the caller checked,
// to the slots of authenticated connections; false when all of those are
// taken, and the request must be refused (503). A request served without
// a guarded listener is admitted.
func Admit(r *http.Request) bool {
	gc, ok := r.Context().Value(connCtxKey{}).(*guardedConn)
	if !ok {
		return true
	}
	return gc.l.admit(gc)
}

// Refuse answers status and msg without reading the request's body, and
// closes the connection, as the agent answers every refused request.
func Refuse(w http.ResponseWriter, status int, msg string) { refuse(w, status, msg) }
