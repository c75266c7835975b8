package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/logframe"
	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/logserver"
)

// StartLogs asks each node's agent to stream its log records to a log
// server of this test. The server opens no socket of its own: in tunnel
// mode the stream comes through an SSH remote forward of a Unix socket in
// the agent's 0700 directory, which no other user of the node can reach,
// so nothing is opened on the controller or on the node's network; in
// direct mode a listener on the interface that routes to the node takes
// connections from the partition's node addresses only.
func (b *backend) StartLogs(ctx context.Context, p *Partition, sink LogSink) (func(), error) {
	cfg := logserver.DefaultConfig()
	cfg.NoListener = true
	cfg.MaxConns = 4 * len(p.Nodes) // an agent reconnecting while its old connection winds down
	cfg.Logger = b.log
	cfg.OnRecord = func(tag, _ string, rec *logframe.LogRecord) {
		node := ""
		if pn, ok := p.Node(tag); ok {
			node = pn.Name
		}
		sink(LogRecord{Tag: tag, Node: node, Logger: rec.Name, Level: rec.Levelname, Text: logserver.UnifiedLine(tag, hostOf(p, tag), rec)})
	}
	srv, err := logserver.New(cfg)
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
	for pn, nc := range b.partitionConns(p, &errs) {
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
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
		for _, nc := range started {
			if _, err := b.conn(nc.Node().Name); err != nil {
				continue // lost: nothing to stop there, and no time to waste
			}
			endStop := timeSpan(ctx, "logs: stop redirection")
			_, _ = nc.Call(sctx, "core.stop_log_redirection")
			endStop()
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
func (b *backend) startNodeLogs(ctx context.Context, nc *cluster.NodeConn, tag string, srv *logserver.Server) (func(context.Context), error) {
	n := nc.Node()
	if n.AgentBind != cluster.AgentBindDirect {
		link, err := nc.Link(ctx)
		if err != nil {
			return nil, err
		}
		sock, err := cluster.NewLogSocketPath(n)
		if err != nil {
			return nil, err
		}
		endListen := timeSpan(ctx, "logs: remote listen")
		ln, err := link.ListenRemoteUnix(ctx, sock)
		endListen()
		if err != nil {
			return nil, err
		}
		go serveLogListener(ln, srv, tag, nil)
		cleanup := func(ctx context.Context) {
			// Also removes the socket file, which sshd leaves behind.
			defer timeSpan(ctx, "logs: close remote socket")()
			ln.Close()
		}
		defer timeSpan(ctx, "logs: start redirection")()
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
func serveLogListener(ln net.Listener, srv *logserver.Server, tag string, allowed []netip.Addr) {
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
