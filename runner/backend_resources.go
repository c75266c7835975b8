package runner

import (
	"context"
	"fmt"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/resmgr"
)

var _ resourceCluster = (*backend)(nil)

// sweepTimeout bounds the removal of reclaimed partitions' resources that
// each allocation does; what is left is tried again by the next one.
const sweepTimeout = 20 * time.Second

// manager is the resource manager on this backend's store, reaching nodes
// through the test's connections when it has them.
func (b *backend) manager() *resmgr.Manager {
	return resmgr.NewManager(b.store, func(ctx context.Context, n cluster.Node) (resmgr.Conn, error) {
		b.mu.Lock()
		nc, lost := b.conns[n.Name], b.lost[n.Name]
		b.mu.Unlock()
		if lost != nil {
			// Its resources stay claimed and are swept once it is back.
			return nil, fmt.Errorf("node %s was lost: %w", n.Name, lost)
		}
		if nc != nil {
			return sharedConn{nc}, nil
		}
		return cluster.Connect(ctx, n, cluster.ConnectOptions{Logger: b.log})
	}, b.log)
}

// sharedConn is a test connection the manager must not close.
type sharedConn struct{ *cluster.NodeConn }

func (sharedConn) Close() error { return nil }

// AcquireResources binds and allocates what Allocate reserved.
func (b *backend) AcquireResources(ctx context.Context, p *Partition, _ []ResourceSpec) ([]acquiredResource, error) {
	m := b.manager()
	defer m.Close()
	return m.Acquire(ctx, p.ID)
}

// ReleaseResources removes the partition's resources on the nodes; what
// fails stays claimed and is swept after the partition is released.
func (b *backend) ReleaseResources(ctx context.Context, p *Partition) error {
	m := b.manager()
	defer m.Close()
	return m.ReleasePartition(ctx, p.ID)
}

// sweep removes what reclaimed partitions left (a runner killed with
// SIGKILL never released its volumes and taps); failures only log, the
// next allocation tries again.
func (b *backend) sweep(ctx context.Context) {
	// A node that stays down must not hold every allocation up for long.
	ctx, cancel := context.WithTimeout(ctx, sweepTimeout)
	defer cancel()
	m := b.manager()
	defer m.Close()
	if err := m.Sweep(ctx); err != nil {
		b.log.Warn("removing resources of reclaimed partitions", "err", err)
	}
}
