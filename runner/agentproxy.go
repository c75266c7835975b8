package runner

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/cluster"
)

// agentProxy serves the node's agent on a loopback port of this host, so
// that a test body in any language can use a plain XML-RPC client
// (Python's xmlrpc.client included) whatever the node's transport, and
// without ever seeing the agent's token. Loopback is open to every user of
// this host, so the proxy demands a secret of its own, made for this test
// and handed only to the body (partition.json, 0600, and its environment):
// the URL it returns is http://vtc:SECRET@127.0.0.1:PORT/.
func (b *backend) agentProxy(nc *cluster.NodeConn) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	secret := rand.Text()
	target, _ := url.Parse("http://agent/")
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = nc.Agent().RoundTripper()
	srv := &http.Server{
		Handler:           &proxyGuard{secret: sha256.Sum256([]byte(secret)), host: ln.Addr().String(), next: rp},
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10, // XML-RPC clients send a handful of short headers
		IdleTimeout:       2 * time.Minute,
	}
	go srv.Serve(agent.GuardConns(srv, ln, proxyPendingConns, proxyAdmittedConns, proxyPendingConns/2))
	b.mu.Lock()
	b.proxies = append(b.proxies, srv)
	b.mu.Unlock()
	u := url.URL{Scheme: "http", User: url.UserPassword(proxyUser, secret), Host: ln.Addr().String(), Path: "/"}
	return u.String(), nil
}

// The proxy's connection slots: every user of the host can open
// connections to it, and those without the secret only ever take pending
// slots (the oldest of which a new connection pushes out), never the ones
// of connections that showed it: a body uses a few.
const (
	proxyPendingConns  = 256
	proxyAdmittedConns = 64
)

// proxyUser is the Basic-auth user name of the agent proxy's URL; only the
// password (the secret) is checked, as for the agent's token.
const proxyUser = "vtc"

// proxyGuard admits to the agent proxy only requests carrying the test's
// secret, and none that a web browser could have sent on a page's behalf
// (cross-site POSTs and DNS rebinding): XML-RPC clients send neither
// Origin nor Sec-Fetch-* headers, and name the proxy by its own address.
type proxyGuard struct {
	secret [sha256.Size]byte
	host   string // 127.0.0.1:PORT
	next   http.Handler
}

func (g *proxyGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The refused request's body is not read, nor drained: the
	// connection goes with it at once.
	refuse := func(code int, msg string) {
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="vtcluster agent proxy"`)
		}
		agent.Refuse(w, code, msg)
	}
	if r.Header.Get("Origin") != "" || hasSecFetch(r.Header) {
		refuse(http.StatusForbidden, "requests from web pages are refused")
		return
	}
	if !g.hostAllowed(r.Host) {
		refuse(http.StatusForbidden, "unexpected Host header")
		return
	}
	_, pass, ok := r.BasicAuth()
	got := sha256.Sum256([]byte(pass))
	if !ok || subtle.ConstantTimeCompare(got[:], g.secret[:]) != 1 {
		refuse(http.StatusUnauthorized, "this test's agent proxy secret is required")
		return
	}
	if !agent.Admit(r) {
		refuse(http.StatusServiceUnavailable, "every connection slot of this proxy is in use; retry later")
		return
	}
	// The secret is for this proxy only; the agent gets its own credential
	// from the transport, if it needs one.
	r.Header.Del("Authorization")
	g.next.ServeHTTP(w, r)
}

func (g *proxyGuard) hostAllowed(host string) bool {
	if host == g.host {
		return true
	}
	_, port, _ := net.SplitHostPort(g.host)
	return host == "localhost:"+port
}

func hasSecFetch(h http.Header) bool {
	for k := range h {
		if strings.HasPrefix(k, "Sec-Fetch-") {
			return true
		}
	}
	return false
}
