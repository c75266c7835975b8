package runner

import (
	"context"

	"github.com/vtcluster/vtcluster/cluster"
)

// connect reaches node n for this test: through the job's SSH connection
// holder when the job has one (the pre-tests hook starts it), so the test
// pays no SSH handshake of its own; otherwise over a connection of its
// own, as a runner started outside a job does.
func (b *backend) connect(ctx context.Context, jobID string, n cluster.Node) (*cluster.NodeConn, error) {
	opts := cluster.ConnectOptions{Logger: b.log}
	if n.AgentBind != cluster.AgentBindDirect {
		if h := b.jobHolder(ctx, jobID); h != nil {
			return cluster.ConnectHeld(n, h, opts)
		}
	}
	return cluster.Connect(ctx, n, opts)
}

// jobHolder returns the job's holder, or nil when none answers.
func (b *backend) jobHolder(ctx context.Context, jobID string) *cluster.Holder {
	if jobID == "" {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.holderTried {
		b.holderTried = true
		if sock, err := cluster.HolderSocket(jobID); err == nil {
			b.holder, err = cluster.OpenHolder(ctx, sock)
			if err != nil {
				b.log.Debug("no SSH connection holder; connecting directly", "err", err)
			}
		}
	}
	return b.holder
}
