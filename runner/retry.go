package runner

// Retrying a test once after an infrastructure failure (opt-in:
// multihost.retry_infra): a node lost, an agent down, a hand-over refused
// or no node in time says nothing about the code under test, so the test
// runs again, on other nodes when there are any. Once only: a second
// infrastructure failure is reported as such.

import (
	"context"
	"errors"
	"slices"

	"github.com/vtcluster/vtcluster/cluster"
)

// executeRetrying runs the stages, and with RetryInfra runs them once more
// after an infrastructure failure.
func (r *testRun) executeRetrying(ctx context.Context) outcome {
	out := r.execute(ctx)
	if !r.cfg.RetryInfra || out.Class != InfraClass || ctx.Err() != nil {
		return out
	}
	r.logf(ctx, "%s; running the test once more, on other nodes where possible (multihost.retry_infra)", out.Reason)
	again := r.execute(ctx)
	if again.Class == InfraClass {
		again.Reason += " (on the retry; the first attempt failed with: " + out.Reason + ")"
	}
	return again
}

// noteTried records the nodes of an allocation, or the node an allocation
// failed on, for a retry to avoid.
func (r *testRun) noteTried(p *Partition, err error) {
	if p != nil {
		for _, n := range p.Nodes {
			r.tried = append(r.tried, n.Name)
		}
	}
	var ie *infraError
	if errors.As(err, &ie) && ie.node != "" {
		r.tried = append(r.tried, ie.node)
	}
}

// preferOthers wraps a chooser so that it picks among the nodes not in
// avoid first, and among all only when those cannot serve.
func preferOthers(avoid []string, choose func([]cluster.Node) (map[string]string, error)) func([]cluster.Node) (map[string]string, error) {
	if len(avoid) == 0 {
		return choose
	}
	return func(idle []cluster.Node) (map[string]string, error) {
		others := slices.DeleteFunc(slices.Clone(idle), func(n cluster.Node) bool { return slices.Contains(avoid, n.Name) })
		if m, err := choose(others); err == nil {
			return m, nil
		}
		return choose(idle)
	}
}
