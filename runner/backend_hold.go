package runner

import (
	"context"

	"github.com/vtcluster/vtcluster/cluster"
)

var _ holder = (*backend)(nil)

// Hold records the hold in the state, where it outlives this process.
func (b *backend) Hold(ctx context.Context, p *Partition, req HoldRequest) ([]string, error) {
	// Renewals stop first, so that a late one cannot cut the hold short.
	b.stopRenewing(p.ID)
	held, err := cluster.HoldPartition(ctx, b.store, p.ID, cluster.Hold{Test: req.Test, Reason: req.Reason, ResultsDir: req.ResultsDir}, req.For)
	if err != nil {
		return nil, err
	}
	s, err := b.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	return cluster.ReachCommands(*held, s, b.cli), nil
}

// stateCommand is the vtcluster command line, global flags included,
// that reaches the state this runner uses.
func stateCommand(bin, state, dir, name string) []string {
	if bin == "" {
		bin = "vtcluster"
	}
	argv := []string{bin, "--state-dir", dir, "--cluster", name}
	if state != "" {
		argv = append(argv, "--state", state)
	}
	return argv
}
