//go:build !vtcluster_noetcd

package etcdstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
)

// Two controllers share etcd; each keeps a node cache. A change one makes
// through the store reaches the other's next read; a change behind
// nodes-changed's back (a writer that does not put it) is caught by the
// guard of the allocation that takes the node, and read afresh.
func TestEtcd_nodeCacheFollowsOtherWriters(t *testing.T) {
	members := startEtcd(t, 1)
	a := labStore(t, members, 2)
	b := openTestStore(t, members, "lab")
	ctx := context.Background()
	if s, err := b.Load(ctx); err != nil || len(s.Nodes) != 2 {
		t.Fatalf("b: %v %+v", err, s)
	}
	err := a.Update(ctx, func(s *cluster.State) error {
		s.Node("n1").Labels = map[string]any{"rack": "r7"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.Load(ctx)
	if err != nil || s.Node("n1").Labels["rack"] != "r7" {
		t.Fatalf("b did not see a's change: %v %+v", err, s)
	}
	register(t, a, "n2")
	if s, err := b.Load(ctx); err != nil || len(s.Nodes) != 3 {
		t.Fatalf("b did not see a's new node: %v %+v", err, s)
	}

	// Behind nodes-changed's back: n0's address changes.
	n0 := s.Node("n0")
	n0.Address = "10.77.0.1"
	val, err := json.Marshal(n0)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := b.cli.Get(ctx, b.nodeKey("n0"))
	if err != nil {
		t.Fatal(err)
	}
	var e entity
	if err := json.Unmarshal(kv.Kvs[0].Value, &e); err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(entity{Seq: e.Seq, Value: val})
	if _, err := b.cli.Put(ctx, b.nodeKey("n0"), string(rec)); err != nil {
		t.Fatal(err)
	}
	owner, err := cluster.CurrentOwner("job", "t")
	if err != nil {
		t.Fatal(err)
	}
	var seen string
	p, err := cluster.Allocate(ctx, b, cluster.AllocRequest{Owner: owner, Tags: []string{"x"}, Lease: time.Minute,
		Choose: func(idle []cluster.Node) (map[string]string, error) {
			for _, n := range idle {
				if n.Name == "n0" {
					seen = n.Address
					return map[string]string{"x": "n0"}, nil
				}
			}
			t.Error("n0 not offered")
			return nil, &cluster.NoMatchError{Tag: "x", Reason: cluster.ReasonNoNode}
		}})
	if err != nil || p.Nodes[0].Node != "n0" {
		t.Fatalf("allocate: %v %+v", err, p)
	}
	if seen != "10.77.0.1" {
		t.Errorf("the allocation committed on n0 as the cache held it (address %q), not as etcd did", seen)
	}
	if s, err := b.Load(ctx); err != nil || s.Node("n0").Address != "10.77.0.1" {
		t.Fatalf("b still holds the old n0: %v %+v", err, s)
	}
}
