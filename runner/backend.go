package runner

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/logframe"
	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/etcdstore"
	"github.com/vtcluster/vtcluster/cluster/sshx"
	"github.com/vtcluster/vtcluster/resmgr"
)

// renewEvery is the fraction of the lease after which it is renewed, so a
// slow renewal still lands well before expiry.
const renewEvery = 3

// backend is the Cluster of a vtcluster state directory: partitions in the
// shared state file, nodes reached over SSH (or directly), logs through the
// agents' log redirection, commands through their process service.
type backend struct {
	store cluster.Store
	log   *slog.Logger

	mu       sync.Mutex
	conns    map[string]*cluster.NodeConn // by node name, for this test
	owners   map[string]string            // partition id by node name: the owner of what Exec starts
	proxies  []*http.Server
	renewals map[string]context.CancelFunc
	// leaseLost receives, once, why a partition's lease was lost.
	leaseLost map[string]chan error
	// lost are nodes Watch found dead; teardown does not wait on them.
	lost   map[string]error
	closed bool
}

var _ Cluster = (*backend)(nil)
var _ io.Closer = (*backend)(nil)

// OpenBackend is the ClusterFactory the vtcluster binary uses.
func OpenBackend(_ context.Context, cfg RunConfig) (Cluster, error) {
	// Avocado's settings win; otherwise the same environment variables
	// and defaults as the vtcluster CLI, which the runner inherits from
	// the avocado process.
	// etcd credentials come only from the environment, never from
	// Avocado's settings, which end up in job logs.
	dir := cmp.Or(cfg.StateDir, os.Getenv(cluster.EnvStateDir), cluster.DefaultStateDir())
	name := cmp.Or(cfg.Cluster, os.Getenv(cluster.EnvCluster), cluster.DefaultClusterName)
	timeout, err := etcdstore.TimeoutFromEnv()
	if err != nil {
		return nil, err
	}
	st, err := etcdstore.OpenState(etcdstore.Selection{
		State: cmp.Or(cfg.State, os.Getenv(etcdstore.EnvState)), StateDir: dir, Cluster: name,
		Creds: etcdstore.CredentialsFromEnv(), Timeout: timeout,
	})
	if err != nil {
		return nil, err
	}
	return &backend{
		store:     st,
		log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		conns:     map[string]*cluster.NodeConn{},
		owners:    map[string]string{},
		renewals:  map[string]context.CancelFunc{},
		leaseLost: map[string]chan error{},
		lost:      map[string]error{},
	}, nil
}

// Allocate reserves one node per tag, choosing among idle nodes with every
// tag's selectors at once, and keeps the lease renewed until Release.
func (b *backend) Allocate(ctx context.Context, req AllocRequest) (*Partition, error) {
	owner, err := cluster.CurrentOwner(req.JobID, req.TestID)
	if err != nil {
		return nil, err
	}
	treqs := make([]cluster.TagRequest, len(req.Nodes))
	tags := make([]string, len(req.Nodes))
	for i, ns := range req.Nodes {
		tags[i] = ns.Tag
		treqs[i].Tag = ns.Tag
		if strings.TrimSpace(ns.Selectors) != "" {
			sels, err := cluster.ParseSelectors(ns.Selectors)
			if err != nil {
				return nil, fmt.Errorf("node %q: %w", ns.Tag, err)
			}
			treqs[i].Selectors = sels
		}
	}
	lease := req.Lease
	if lease <= 0 {
		lease = cluster.DefaultLease
	}
	wait := time.Duration(0)
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	s, err := b.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	if len(s.Nodes) == 0 {
		return nil, cluster.ErrNoNodes
	}
	var reserve func(*cluster.State, *cluster.Partition) error
	if len(req.Resources) > 0 {
		reserve = resmgr.Reserve(wants(req.Resources))
	}
	p, err := cluster.Allocate(ctx, b.store, cluster.AllocRequest{
		Owner: owner, Tags: tags, Lease: lease, Wait: wait, Logger: b.log, Reserve: reserve,
		Choose: func(idle []cluster.Node) (map[string]string, error) {
			cands := make([]cluster.Candidate, len(idle))
			for i, n := range idle {
				cands[i] = cluster.Candidate{Name: n.Name, Props: nodeProps(n)}
			}
			return cluster.Assign(treqs, cands)
		},
	})
	if err != nil {
		return nil, err
	}
	b.sweep(ctx)
	b.keepRenewed(p.ID, lease)
	out := &Partition{ID: p.ID}
	ok := false
	defer func() {
		if !ok {
			b.Release(context.WithoutCancel(ctx), out)
		}
	}()
	s, err = b.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range p.Nodes {
		n := s.Node(a.Node)
		if n == nil {
			return nil, fmt.Errorf("node %q vanished from the state", a.Node)
		}
		nc, err := cluster.Connect(ctx, *n, cluster.ConnectOptions{Logger: b.log})
		if err != nil {
			return nil, err
		}
		b.mu.Lock()
		b.conns[n.Name] = nc
		b.owners[n.Name] = p.ID
		b.mu.Unlock()
		stopped, err := handOver(ctx, nc, p.ID)
		if err != nil {
			return nil, err
		}
		out.HandOver = append(out.HandOver, stopped...)
		u, err := b.agentProxy(nc)
		if err != nil {
			return nil, err
		}
		out.Nodes = append(out.Nodes, PartitionNode{Tag: a.Tag, Name: n.Name, Address: n.Host(), AgentURL: u, Properties: nodeProps(*n)})
	}
	ok = true
	return out, nil
}

// handOver makes the node clean for partition id: its agent stops every
// process started for another owner (an earlier test whose teardown could
// not reach the node, say) and says what they were, for the test's log.
func handOver(ctx context.Context, nc *cluster.NodeConn, id string) ([]string, error) {
	v, err := nc.Call(ctx, "process.stop_others", id)
	if err != nil {
		return nil, fmt.Errorf("node %q: stopping what earlier tests left running: %w", nc.Node().Name, err)
	}
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		st, _ := x.(map[string]any)
		get := func(k string) any { return st[k] }
		owner, _ := get("owner").(string)
		if owner == "" {
			owner = "no owner"
		} else {
			owner = "owner " + owner
		}
		var argv []string
		for _, a := range asList(get("argv")) {
			s, _ := a.(string)
			argv = append(argv, py.Repr(s))
		}
		out = append(out, fmt.Sprintf("node %s: stopped [%s] (pid %v, %s, exit status %v), left by an earlier test",
			nc.Node().Name, strings.Join(argv, ", "), get("pid"), owner, get("exit_code")))
	}
	return out, nil
}

// asList reads an XML-RPC array as the client decodes it.
func asList(v any) []any {
	switch l := v.(type) {
	case []any:
		return l
	case []string:
		out := make([]any, len(l))
		for i, s := range l {
			out[i] = s
		}
		return out
	}
	return nil
}

func nodeProps(n cluster.Node) map[string]any {
	props := map[string]any{}
	for k, v := range n.Properties {
		props[k] = v
	}
	for k, v := range n.Labels {
		if _, ok := props[k]; !ok {
			props[k] = v
		}
	}
	return props
}

// keepRenewed renews the partition's lease until Release; if this process
// dies the lease runs out and the next allocation reclaims the nodes. If
// the lease can no longer be renewed (the store says the partition is
// gone, or renewals failed until the lease ran out, as when etcd is
// unreachable), the nodes may be given to another test: Watch then ends
// this test, naming the cause.
func (b *backend) keepRenewed(id string, lease time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	lost := make(chan error, 1)
	b.mu.Lock()
	b.renewals[id] = cancel
	b.leaseLost[id] = lost
	b.mu.Unlock()
	go func() {
		t := time.NewTicker(lease / renewEvery)
		defer t.Stop()
		held := time.Now().Add(lease)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				rctx, rcancel := context.WithTimeout(ctx, lease/renewEvery)
				_, err := cluster.Renew(rctx, b.store, id, lease)
				rcancel()
				switch {
				case err == nil:
					held = time.Now().Add(lease)
				case ctx.Err() != nil:
					return
				case errors.Is(err, cluster.ErrPartitionNotFound) || time.Now().After(held):
					lost <- fmt.Errorf("partition %s lost: its lease could not be renewed: %w", id, err)
					return
				default:
					b.log.Warn("lease renewal failed", "partition", id, "err", err)
				}
			}
		}
	}()
}

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
	go srv.Serve(&capListener{Listener: ln, slots: make(chan struct{}, maxProxyConns)})
	b.mu.Lock()
	b.proxies = append(b.proxies, srv)
	b.mu.Unlock()
	u := url.URL{Scheme: "http", User: url.UserPassword(proxyUser, secret), Host: ln.Addr().String(), Path: "/"}
	return u.String(), nil
}

// maxProxyConns bounds the connections one agent proxy serves at once: a
// body uses a few, and every user of the host can open more.
const maxProxyConns = 64

// capListener closes connections that arrive while all its slots are
// taken, so what a flood of connections costs is bounded.
type capListener struct {
	net.Listener
	slots chan struct{}
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &slotConn{Conn: c, release: sync.OnceFunc(func() { <-l.slots })}, nil
		default:
			c.Close()
		}
	}
}

type slotConn struct {
	net.Conn
	release func()
}

func (c *slotConn) Close() error {
	c.release()
	return c.Conn.Close()
}

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
	// The refused request's body is not read; the connection goes with it.
	refuse := func(code int, msg string) {
		w.Header().Set("Connection", "close")
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="vtcluster agent proxy"`)
		}
		http.Error(w, msg, code)
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

func (b *backend) conn(name string) (*cluster.NodeConn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.lost[name]; err != nil {
		return nil, err
	}
	nc := b.conns[name]
	if nc == nil {
		return nil, fmt.Errorf("node %q is not in this test's partition", name)
	}
	return nc, nil
}

// StartLogs asks each node's agent to stream its log records to a log
// server of this test. The server opens no socket of its own: in tunnel
// mode the stream comes through an SSH remote forward of a Unix socket in
// the agent's 0700 directory, which no other user of the node can reach,
// so nothing is opened on the controller or on the node's network; in
// direct mode a listener on the interface that routes to the node takes
// connections from the partition's node addresses only.
func (b *backend) StartLogs(ctx context.Context, p *Partition, sink LogSink) (func(), error) {
	cfg := cluster.DefaultLogServerConfig()
	cfg.NoListener = true
	cfg.MaxConns = 4 * len(p.Nodes) // an agent reconnecting while its old connection winds down
	cfg.Logger = b.log
	cfg.OnRecord = func(tag, _ string, rec *logframe.LogRecord) {
		node := ""
		if pn, ok := p.Node(tag); ok {
			node = pn.Name
		}
		sink(LogRecord{Tag: tag, Node: node, Logger: rec.Name, Level: rec.Levelname, Text: cluster.UnifiedLine(tag, hostOf(p, tag), rec)})
	}
	srv, err := cluster.NewLogServer(cfg)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		srv.Close()
		return nil, err
	}
	var cleanups []func(context.Context)
	var started []*cluster.NodeConn
	var errs []error
	for _, pn := range p.Nodes {
		nc, err := b.conn(pn.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cleanup, err := b.startNodeLogs(ctx, nc, pn.Tag, srv)
		if cleanup != nil {
			cleanups = append(cleanups, cleanup)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("node %q: %w", pn.Name, err))
			continue
		}
		started = append(started, nc)
	}
	stop := sync.OnceFunc(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for _, nc := range started {
			if _, err := b.conn(nc.Node().Name); err != nil {
				continue // lost: nothing to stop there, and no time to waste
			}
			_, _ = nc.Call(sctx, "core.stop_log_redirection")
		}
		for _, c := range cleanups {
			c(sctx)
		}
		srv.Close()
	})
	if len(started) == 0 && len(errs) > 0 {
		stop()
		return nil, errors.Join(errs...)
	}
	for _, err := range errs {
		sink(LogRecord{Level: "WARNING", Text: "log forwarding: " + err.Error()})
	}
	return stop, nil
}

func hostOf(p *Partition, tag string) string {
	if pn, ok := p.Node(tag); ok {
		return pn.Address
	}
	return ""
}

// startNodeLogs opens the way from the node's agent to srv and points the
// agent at it. The returned cleanup (non-nil even with an error once
// something was opened) closes that way again.
func (b *backend) startNodeLogs(ctx context.Context, nc *cluster.NodeConn, tag string, srv *cluster.LogServer) (func(context.Context), error) {
	n := nc.Node()
	if n.AgentBind != cluster.AgentBindDirect {
		ssh, err := nc.SSH(ctx)
		if err != nil {
			return nil, err
		}
		sock, err := cluster.NewLogSocketPath(n)
		if err != nil {
			return nil, err
		}
		ln, err := ssh.ListenRemoteUnix(ctx, sock)
		if err != nil {
			return nil, err
		}
		go serveLogListener(ln, srv, tag, nil)
		cleanup := func(ctx context.Context) {
			ln.Close()
			// sshd may leave the socket file behind; it is ours to remove.
			_ = ssh.Run(ctx, []string{"rm", "-f", "--", sock}, sshx.RunOptions{})
		}
		if _, err := nc.Call(ctx, "core.start_log_redirection_unix", sock); err != nil {
			return cleanup, err
		}
		return cleanup, nil
	}
	// Direct mode: the agent connects to us over the network, from the
	// address we reach it by; listen on the interface that routes there,
	// and serve only that node's addresses.
	allowed, err := net.DefaultResolver.LookupNetIP(ctx, "ip", n.Host())
	if err != nil {
		return nil, err
	}
	probe, err := net.Dial("udp", net.JoinHostPort(n.Host(), "9"))
	if err != nil {
		return nil, err
	}
	local := probe.LocalAddr().(*net.UDPAddr).IP
	probe.Close()
	ln, err := net.Listen("tcp", net.JoinHostPort(local.String(), "0"))
	if err != nil {
		return nil, err
	}
	go serveLogListener(ln, srv, tag, allowed)
	cleanup := func(context.Context) { ln.Close() }
	if _, err := nc.Call(ctx, "core.start_log_redirection", local.String(), ln.Addr().(*net.TCPAddr).Port); err != nil {
		return cleanup, err
	}
	return cleanup, nil
}

// serveLogListener hands ln's connections to srv as records of tag, until
// ln is closed. With allowed set, a connection from another address is
// closed unread.
func serveLogListener(ln net.Listener, srv *cluster.LogServer, tag string, allowed []netip.Addr) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if allowed != nil && !peerAllowed(c.RemoteAddr(), allowed) {
			c.Close()
			continue
		}
		go srv.ServeConn(c, tag)
	}
}

func peerAllowed(a net.Addr, allowed []netip.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return false
	}
	for _, ip := range allowed {
		if ip.Unmap() == ap.Addr().Unmap() {
			return true
		}
	}
	return false
}

// Exec runs argv on the node through the agent's process service.
func (b *backend) Exec(ctx context.Context, node PartitionNode, argv []string, opts ExecOptions) (ExecResult, error) {
	nc, err := b.conn(node.Name)
	if err != nil {
		return ExecResult{}, err
	}
	b.mu.Lock()
	owner := b.owners[node.Name]
	b.mu.Unlock()
	o := map[string]any{"log_output": true, "owner": owner}
	if opts.Timeout > 0 {
		o["timeout"] = opts.Timeout.Seconds()
	}
	if len(opts.Env) > 0 {
		env := map[string]any{}
		for k, v := range opts.Env {
			env[k] = v
		}
		o["env"] = env
	}
	args := make([]any, len(argv))
	for i, a := range argv {
		args[i] = a
	}
	// The agent enforces the timeout; give the call a little longer.
	cctx := ctx
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, opts.Timeout+30*time.Second)
		defer cancel()
	}
	v, err := nc.Call(cctx, "process.run", args, o)
	if err != nil {
		return ExecResult{}, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return ExecResult{}, fmt.Errorf("node %q: process.run returned %T", node.Name, v)
	}
	res := ExecResult{}
	if code, ok := py.Int(m["exit_code"]); ok {
		res.ExitCode = int(code)
	}
	res.Stdout, _ = m["stdout"].([]byte)
	res.Stderr, _ = m["stderr"].([]byte)
	res.StdoutTruncated, _ = m["stdout_truncated"].(bool)
	res.StderrTruncated, _ = m["stderr_truncated"].(bool)
	res.TimedOut, _ = m["timed_out"].(bool)
	if d, ok := m["duration"].(float64); ok {
		res.Duration = time.Duration(d * float64(time.Second))
	}
	return res, nil
}

// Collect fetches each node's service log and the paths the test asked
// for into dir/<tag>/.
func (b *backend) Collect(ctx context.Context, p *Partition, paths map[string][]string, dir string) error {
	var errs []error
	for _, pn := range p.Nodes {
		nc, err := b.conn(pn.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		local := filepath.Join(dir, pn.Tag)
		if err := os.MkdirAll(local, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		want := append([]string(nil), paths[pn.Tag]...)
		if v, err := nc.Call(ctx, "core.get_service_log_filename"); err == nil {
			if s, ok := v.(string); ok && s != "" {
				want = append([]string{s}, want...)
			}
		}
		if n := nc.Node(); n.Unauthenticated() {
			if len(paths[pn.Tag]) > 0 {
				errs = append(errs, fmt.Errorf("node %q: files cannot be fetched from a direct-mode node without SSH", pn.Name))
			}
			continue
		}
		ssh, err := nc.SSH(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rp := range want {
			name := path.Base(path.Clean(rp))
			if name == "/" || name == "." || name == ".." {
				errs = append(errs, fmt.Errorf("node %q: cannot collect %q", pn.Name, rp))
				continue
			}
			if err := ssh.CopyFrom(ctx, rp, filepath.Join(local, name)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Release stops renewing, gives the nodes back and closes connections.
func (b *backend) Release(ctx context.Context, p *Partition) error {
	if p == nil || p.ID == "" {
		return nil
	}
	b.mu.Lock()
	if cancel := b.renewals[p.ID]; cancel != nil {
		cancel()
		delete(b.renewals, p.ID)
	}
	delete(b.leaseLost, p.ID)
	b.mu.Unlock()
	err := cluster.Release(ctx, b.store, p.ID)
	if errors.Is(err, cluster.ErrPartitionNotFound) {
		err = nil // reclaimed already: nothing of ours is held
	}
	return err
}

// Close shuts the agent proxies and node connections of this test.
func (b *backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for _, cancel := range b.renewals {
		cancel()
	}
	for _, srv := range b.proxies {
		srv.Close()
	}
	for _, nc := range b.conns {
		nc.Close()
	}
	etcdstore.CloseStore(b.store)
	return nil
}

// Health checks of a test's nodes: a node whose agent stops answering
// (host down, agent killed, network cut) ends the test instead of letting
// it run into its timeout.
//
// A node is lost when healthDeadline has passed since the sending of the
// last probe it answered. That deadline is one timer, armed anew by each
// answer: how long probes take, how late they start on a loaded machine,
// or whether a probe to a black hole ever returns does not move it. At
// most one probe per node is in flight, so slow ones cannot pile up.
const (
	healthInterval = time.Second
	healthDeadline = 6 * time.Second
)

// Watch reports the first node of p that is lost, until ctx ends. A lost
// node's connection is closed at once, so that nothing of the test's
// teardown (log forwarding, process calls, the agent proxy) waits on it.
func (b *backend) Watch(ctx context.Context, p *Partition) <-chan error {
	lost := make(chan error, 1)
	report := func(nc *cluster.NodeConn, err error) {
		b.mu.Lock()
		b.lost[nc.Node().Name] = err
		b.mu.Unlock()
		select {
		case lost <- err:
		default:
		}
		nc.Close()
	}
	b.mu.Lock()
	leaseLost := b.leaseLost[p.ID]
	b.mu.Unlock()
	if leaseLost != nil {
		go func() {
			select {
			case err := <-leaseLost:
				select {
				case lost <- err:
				default:
				}
			case <-ctx.Done():
			}
		}()
	}
	for _, pn := range p.Nodes {
		nc, err := b.conn(pn.Name)
		if err != nil {
			continue
		}
		go func() {
			if err := watchNode(ctx, nc); err != nil {
				report(nc, fmt.Errorf("node %q (tag %s) lost: %w", pn.Name, pn.Tag, err))
			}
		}()
	}
	return lost
}

// watchNode probes nc's agent until ctx ends (nil) or the node is lost
// (why).
func watchNode(ctx context.Context, nc *cluster.NodeConn) error {
	var sshDone <-chan struct{}
	if nc.Node().AgentBind != cluster.AgentBindDirect {
		// Dials again only if the connection died since the allocation;
		// the node gets no more time for that than for an answer.
		sctx, cancel := context.WithTimeout(ctx, healthDeadline)
		ssh, err := nc.SSH(sctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("its SSH connection is gone: %w", err)
		}
		sshDone = ssh.Done()
	}
	type answer struct {
		sent time.Time
		err  error
	}
	answers := make(chan answer, 1)
	probe := func() {
		sent := time.Now()
		// A probe outliving the deadline is of no use: the node is lost by then.
		cctx, cancel := context.WithTimeout(ctx, healthDeadline)
		_, err := nc.Call(cctx, "core.is_alive")
		cancel()
		answers <- answer{sent, err}
	}
	lastOK := time.Now()
	var lastErr error
	deadline := time.NewTimer(healthDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(healthInterval)
	defer tick.Stop()
	inFlight := true
	go probe()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sshDone:
			return errors.New("its SSH connection closed")
		case a := <-answers:
			inFlight = false
			if a.err != nil {
				lastErr = a.err
				continue
			}
			lastOK, lastErr = a.sent, nil
			deadline.Reset(time.Until(lastOK.Add(healthDeadline)))
		case <-tick.C:
			if !inFlight {
				inFlight = true
				go probe()
			}
		case <-deadline.C:
			// The runner itself may have been starved past the deadline
			// with the answer waiting: an answer sent in time counts.
			select {
			case a := <-answers:
				inFlight = false
				if a.err == nil && time.Since(a.sent) < healthDeadline {
					lastOK = a.sent
					deadline.Reset(time.Until(lastOK.Add(healthDeadline)))
					continue
				}
				if a.err != nil {
					lastErr = a.err
				}
			default:
			}
			if ctx.Err() != nil {
				return nil
			}
			why := fmt.Sprintf("its agent has not answered for %s", time.Since(lastOK).Round(100*time.Millisecond))
			if lastErr != nil {
				return fmt.Errorf("%s: %w", why, lastErr)
			}
			return errors.New(why)
		}
	}
}
