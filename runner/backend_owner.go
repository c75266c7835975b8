package runner

// The shared lab, seen from a test's backend: a node whose agent says that
// another controller's test holds it is skipped (and named) rather than
// handed over, the nodes' own holds are renewed for as long as the test
// has them, a waiting test says why in its log, and nodes that fail to
// serve are counted towards quarantine (cluster/quarantine.go).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
)

// waitReportEvery is how often a waiting test repeats in its log why it
// waits.
const waitReportEvery = 30 * time.Second

// InfraPrefix starts the reason of a test that failed because of the lab
// (a node lost, an agent down, a hand-over refused, no node in time), not
// because of what it tests.
const InfraPrefix = "infrastructure: "

// InfraClass is the fail_class of an infrastructure failure in the test's
// result, so that reports can sort them from the tests' own failures.
const InfraClass = "InfrastructureError"

// infraError marks an error as an infrastructure failure, of node when
// one node caused it.
type infraError struct {
	err  error
	node string
}

func (e *infraError) Error() string { return e.err.Error() }
func (e *infraError) Unwrap() error { return e.err }

// isInfra reports whether err is an infrastructure failure: one marked so
// here, or the cluster saying no node came free in time.
func isInfra(err error) bool {
	var ie *infraError
	return errors.As(err, &ie) || errors.Is(err, cluster.ErrBusy)
}

// Allocate allocates (see allocate); a node that another controller's test
// holds, by its agent's word, is recorded in the state as taken for a
// while, so that this and every other process of this state skips it,
// and the allocation is tried again until ctx ends.
func (b *backend) Allocate(ctx context.Context, req AllocRequest) (*Partition, error) {
	for {
		p, err := b.allocate(ctx, req)
		taken, ok := cluster.AsNodeTaken(err)
		if !ok {
			return p, err
		}
		until := time.Now().Add(cluster.NodeLease)
		if nerr := cluster.NoteTaken(context.WithoutCancel(ctx), b.store, taken.Node, taken.Holder, until); nerr != nil {
			return nil, errors.Join(err, nerr)
		}
		if req.Waiting != nil {
			req.Waiting(fmt.Sprintf("%v; trying other nodes or waiting for it", taken))
		}
		if ctx.Err() != nil {
			return nil, &infraError{err: err, node: taken.Node}
		}
	}
}

// nodeFailed counts err against node when it is the node's fault (it did
// not answer, its hand-over failed), never when another controller holds
// it, and returns err marked as an infrastructure failure.
func (b *backend) nodeFailed(ctx context.Context, node string, err error) error {
	if _, ok := cluster.AsNodeTaken(err); ok || ctx.Err() != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if q, rerr := cluster.RecordFailure(rctx, b.store, node, err.Error(), b.quarantineAfter); rerr == nil && q {
		err = fmt.Errorf("%w (node %s is now quarantined)", err, node)
	}
	return &infraError{err: err, node: node}
}

// keepNodesHeld renews the partition's hold on its nodes' agents until
// Release, between allocation and the test's watch (whose probes renew it
// too) and after it.
func (b *backend) keepNodesHeld(id string) {
	ctx, cancel := context.WithCancel(context.Background())
	b.mu.Lock()
	if b.nodeHolds == nil {
		b.nodeHolds = map[string]context.CancelFunc{}
	}
	b.nodeHolds[id] = cancel
	b.mu.Unlock()
	go func() {
		t := time.NewTicker(cluster.NodeLease / 6)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, nc := range b.connsOf(id) {
				rctx, rcancel := context.WithTimeout(ctx, cluster.NodeLease/6)
				if err := cluster.RenewNode(rctx, nc, id, cluster.NodeLease); err != nil && ctx.Err() == nil {
					b.log.Warn("renewing the node's hold failed", "node", nc.Node().Name, "err", err)
				}
				rcancel()
			}
		}
	}()
}

// connsOf returns the live connections of partition id's nodes.
func (b *backend) connsOf(id string) []*cluster.NodeConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*cluster.NodeConn
	for name, owner := range b.owners {
		if owner == id && b.lost[name] == nil && b.conns[name] != nil {
			out = append(out, b.conns[name])
		}
	}
	return out
}

// releaseNodes stops renewing the nodes' holds and ends them, so another
// controller may have the nodes at once. A node it cannot reach is left
// to its lease.
func (b *backend) releaseNodes(ctx context.Context, id string) {
	b.mu.Lock()
	if cancel := b.nodeHolds[id]; cancel != nil {
		cancel()
		delete(b.nodeHolds, id)
	}
	b.mu.Unlock()
	var served []string
	for _, nc := range b.connsOf(id) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := cluster.ReleaseNode(rctx, nc, id); err != nil {
			b.log.Warn("ending the node's hold failed", "node", nc.Node().Name, "err", err)
		}
		cancel()
		served = append(served, nc.Node().Name)
	}
	if len(served) > 0 {
		// They served this test: their run of failures ends.
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := cluster.RecordServed(rctx, b.store, served...); err != nil {
			b.log.Warn("recording the nodes' health failed", "err", err)
		}
	}
}

// nodeLost counts a node lost during a test against it.
func (b *backend) nodeLost(name string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, rerr := cluster.RecordFailure(ctx, b.store, name, err.Error(), b.quarantineAfter); rerr != nil {
		b.log.Warn("recording the node's failure failed", "node", name, "err", rerr)
	}
}

// waitReporter words a waiting allocation for the test's log.
func waitReporter(say func(string)) func(cluster.Waiting) {
	if say == nil {
		return nil
	}
	return func(w cluster.Waiting) {
		why := "no node is free"
		if w.Why != nil {
			why = strings.ReplaceAll(w.Why.Error(), "\n", "; ")
		}
		say(fmt.Sprintf("waiting for nodes since %s, position %d of %d in the queue (`vtcluster queue` shows it): %s",
			w.Since.Format(time.RFC3339), w.Position, w.Queued, why))
	}
}
