package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
)

// Health checks of a test's nodes: a node whose agent stops answering
// (host down, agent killed, network cut) ends the test instead of letting
// it run into its timeout.
//
// A node is lost when healthDeadline (multihost.node_lost_after) has
// passed since the sending of the last probe it answered. That deadline
// is one timer, armed anew by each answer: how long probes take, how
// late they start on a loaded machine, or whether a probe to a black hole
// ever returns does not move it. At most one probe per node is in
// flight, so slow ones cannot pile up.
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
		if _, taken := cluster.AsNodeTaken(err); !taken && b.store != nil {
			b.nodeLost(nc.Node().Name, err)
		}
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
	for pn, nc := range b.partitionConns(p, nil) {
		go func() {
			if err := watchNode(ctx, nc, p.ID, cmp.Or(b.nodeLostAfter, healthDeadline)); err != nil {
				EventsFrom(ctx).Add(Event{Tag: pn.Tag, Node: pn.Name, Kind: KindNodeLost, Name: "node lost", Detail: err.Error(), Severity: SeverityError})
				report(nc, fmt.Errorf("node %q (tag %s) lost: %w", pn.Name, pn.Tag, err))
			}
		}()
	}
	return lost
}

// watchNode probes nc's agent until ctx ends (nil) or the node is lost
// (why). Each probe renews partition id's hold on the node's agent
// (cluster.RenewNode), so the node refuses other controllers for as long
// as this test runs, and no longer once it stops probing.
func watchNode(ctx context.Context, nc *cluster.NodeConn, id string, healthDeadline time.Duration) error {
	var sshDone <-chan struct{}
	if nc.Node().AgentBind != cluster.AgentBindDirect {
		// Dials again only if the connection died since the allocation;
		// the node gets no more time for that than for an answer.
		sctx, cancel := context.WithTimeout(ctx, healthDeadline)
		link, err := nc.Link(sctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("its SSH connection is gone: %w", err)
		}
		sshDone = link.Done()
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
		err := cluster.RenewNode(cctx, nc, id, cluster.NodeLease)
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
			if taken, ok := cluster.AsNodeTaken(a.err); ok {
				// Another owner holds the node now (this one stopped
				// renewing for longer than the lease): it is not ours.
				return taken
			}
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
			// A node that is only slow (starved of CPU) looks the same:
			// say how to give it longer.
			why := fmt.Sprintf("its agent has not answered for %s (a node too busy to answer in time: raise multihost.node_lost_after, now %s)",
				time.Since(lastOK).Round(100*time.Millisecond), healthDeadline)
			if lastErr != nil {
				return fmt.Errorf("%s: %w", why, lastErr)
			}
			return errors.New(why)
		}
	}
}
