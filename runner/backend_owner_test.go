package runner

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/lab"
)

// On real lab hosts: the liveness probes of a running test hold its nodes
// on the agents (owner.show names the partition), and a node lost during
// the test counts against it, here quarantining it at the first failure.
func TestBackend_probesHoldNodesAndLostNodeIsCounted(t *testing.T) {
	l := lab.Start(t, 2)
	b, part := labBackend(t, l)
	ctx := t.Context()
	st, err := cluster.OpenFileStore(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	for _, nc := range b.conns {
		n := nc.Node()
		if err := st.Update(ctx, func(s *cluster.State) error { return s.RegisterNode(n, false) }); err != nil {
			t.Fatal(err)
		}
	}
	b.store, b.quarantineAfter = st, 1
	victim, survivor := part.Nodes[0], part.Nodes[1]
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := b.Watch(wctx, part)

	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := cluster.NodeHolderOf(ctx, b.conns[survivor.Name])
		if err != nil {
			t.Fatal(err)
		}
		if h != nil && h.ID == part.ID && time.Until(h.Expires) > cluster.NodeLease/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the probes do not hold the node on its agent: %+v", h)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if _, err := l.Exec(ctx, 0, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		if !strings.Contains(err.Error(), `node "`+victim.Name+`"`) {
			t.Fatalf("lost: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the cut node was not reported")
	}
	for {
		s, err := st.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h := s.Health(victim.Name); h != nil && h.Quarantined {
			if !strings.Contains(h.QuarantineReason, "failed to serve 1 times in a row, last: node \""+victim.Name+"\"") || !strings.Contains(h.QuarantineReason, "lost") {
				t.Errorf("quarantine reason %q", h.QuarantineReason)
			}
			if s.Health(survivor.Name) != nil {
				t.Errorf("the survivor has a health record: %+v", s.Health(survivor.Name))
			}
			return
		}
		if time.Now().After(deadline.Add(time.Minute)) {
			t.Fatalf("the lost node was not counted: %+v", s.NodeHealth)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
