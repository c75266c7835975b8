package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/etcdstore"
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
	// cli is the vtcluster command line that names this state, for the
	// commands printed when a partition is held (backend_hold.go).
	cli []string

	// Shared-lab behaviour (backend_owner.go): how often a waiting test
	// says why, how many failures quarantine a node, and the renewals of
	// the nodes' own holds by partition id.
	reportEvery     time.Duration
	quarantineAfter int
	nodeHolds       map[string]context.CancelFunc

	// nodeLostAfter is Watch's deadline (multihost.node_lost_after);
	// zero means healthDeadline.
	nodeLostAfter time.Duration

	// holder is the job's SSH connection holder, if it has one
	// (backend_holder.go).
	holder      *cluster.Holder
	holderTried bool
	// logMarks are where each node's service log stood when the test got
	// the node: Collect takes what it gained since (backend_exec.go).
	logMarks map[string]logMark
}

var _ Cluster = (*backend)(nil)
var _ io.Closer = (*backend)(nil)

// OpenBackend is the ClusterFactory the vtcluster binary uses. Its
// warnings go to log (the test's debug.log, see warnLogger).
func OpenBackend(_ context.Context, cfg RunConfig, log *slog.Logger) (Cluster, error) {
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
		log:       log,
		conns:     map[string]*cluster.NodeConn{},
		owners:    map[string]string{},
		renewals:  map[string]context.CancelFunc{},
		leaseLost: map[string]chan error{},
		lost:      map[string]error{},
		cli:       stateCommand(cfg.Binary, cmp.Or(cfg.State, os.Getenv(etcdstore.EnvState)), dir, name),

		reportEvery: waitReportEvery, quarantineAfter: cfg.QuarantineAfter,
		nodeLostAfter: cfg.NodeLostAfter,
	}, nil
}

// allocate reserves one node per tag, choosing among idle nodes with every
// tag's selectors at once, and keeps the lease renewed until Release.
// Allocate (backend_owner.go) calls it again when a node's agent says
// another controller holds it.
func (b *backend) allocate(ctx context.Context, req AllocRequest) (*Partition, error) {
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
	endLoad := timeSpan(ctx, "partition: load state")
	s, err := b.store.Load(ctx)
	endLoad()
	if err != nil {
		return nil, err
	}
	if len(s.Nodes) == 0 {
		return nil, cluster.ErrNoNodes
	}
	var reserve func(*cluster.State, *cluster.Partition) error
	if len(req.Resources) > 0 {
		reserve = resmgr.Reserve(req.Resources)
	}
	endAlloc := timeSpan(ctx, "partition: store allocate")
	// The records of the chosen nodes, as they were when chosen: no need
	// to read the whole state again.
	var chosenFrom []cluster.Node
	p, err := cluster.Allocate(ctx, b.store, cluster.AllocRequest{
		Owner: owner, Tags: tags, Lease: lease, Wait: wait, Logger: b.log, Reserve: reserve,
		Want: treqs, Priority: req.Priority, OnWait: waitReporter(req.Waiting), ReportEvery: b.reportEvery,
		Choose: preferOthers(req.Avoid, func(idle []cluster.Node) (map[string]string, error) {
			chosenFrom = idle
			cands := make([]cluster.Candidate, len(idle))
			for i, n := range idle {
				cands[i] = cluster.Candidate{Name: n.Name, Props: nodeProps(n)}
			}
			return cluster.Assign(treqs, cands)
		}),
	})
	endAlloc()
	if err != nil {
		return nil, err
	}
	endSweep := timeSpan(ctx, "partition: sweep")
	b.sweep(ctx)
	endSweep()
	b.keepRenewed(p.ID, lease)
	out := &Partition{ID: p.ID}
	ok := false
	defer func() {
		if !ok {
			b.Release(context.WithoutCancel(ctx), out)
		}
	}()
	for _, a := range p.Nodes {
		i := slices.IndexFunc(chosenFrom, func(n cluster.Node) bool { return n.Name == a.Node })
		if i < 0 {
			return nil, fmt.Errorf("node %q vanished from the state", a.Node)
		}
		n := &chosenFrom[i]
		endConn := timeSpan(ctx, "partition: connect")
		nc, err := b.connect(ctx, req.JobID, *n)
		endConn()
		if err != nil {
			return nil, b.nodeFailed(ctx, n.Name, err)
		}
		b.mu.Lock()
		b.conns[n.Name] = nc
		b.owners[n.Name] = p.ID
		b.mu.Unlock()
		// Before the hand-over, whose records belong to this test.
		b.markServiceLog(ctx, nc)
		// The node itself must agree first: another controller's test
		// may hold it (backend_owner.go).
		if err := cluster.AcquireNode(ctx, nc, p.ID, owner, cluster.StoreName(b.store), cluster.NodeLease); err != nil {
			return nil, b.nodeFailed(ctx, n.Name, err)
		}
		endHand := timeSpan(ctx, "partition: hand-over")
		stopped, err := handOver(ctx, nc, p.ID)
		endHand()
		if err != nil {
			return nil, b.nodeFailed(ctx, n.Name, err)
		}
		out.HandOver = append(out.HandOver, stopped...)
		u, err := b.agentProxy(nc)
		if err != nil {
			return nil, err
		}
		out.Nodes = append(out.Nodes, PartitionNode{Tag: a.Tag, Name: n.Name, Address: n.Host(), AgentURL: u, Properties: nodeProps(*n)})
	}
	ok = true
	b.keepNodesHeld(p.ID)
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

func nodeProps(n cluster.Node) map[string]any { return n.SelectorProps() }

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

// partitionConns yields p's nodes in order with their connections; a node
// that has none (lost, or not in this test's partition) is skipped, its
// error appended to *errs unless errs is nil.
func (b *backend) partitionConns(p *Partition, errs *[]error) iter.Seq2[PartitionNode, *cluster.NodeConn] {
	return func(yield func(PartitionNode, *cluster.NodeConn) bool) {
		for _, pn := range p.Nodes {
			nc, err := b.conn(pn.Name)
			if err != nil {
				if errs != nil {
					*errs = append(*errs, err)
				}
				continue
			}
			if !yield(pn, nc) {
				return
			}
		}
	}
}

// Release stops renewing, gives the nodes back and closes connections.
func (b *backend) Release(ctx context.Context, p *Partition) error {
	if p == nil || p.ID == "" {
		return nil
	}
	b.stopRenewing(p.ID)
	b.releaseNodes(ctx, p.ID)
	endRel := timeSpan(ctx, "partition: store release")
	err := cluster.Release(ctx, b.store, p.ID)
	endRel()
	if errors.Is(err, cluster.ErrPartitionNotFound) {
		err = nil // reclaimed already: nothing of ours is held
	}
	return err
}

// stopRenewing ends the renewal of partition id's lease.
func (b *backend) stopRenewing(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cancel := b.renewals[id]; cancel != nil {
		cancel()
		delete(b.renewals, id)
	}
	delete(b.leaseLost, id)
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
