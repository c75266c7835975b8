package runner

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/etcdstore"
	"github.com/vtcluster/vtcluster/cluster/etcdstore/etcdtest"
)

// A test whose partition lease can no longer be renewed (here: released
// behind its back, as a lost lease looks to the owner) ends as ERROR
// naming the cause, since its nodes may already serve another test.
func TestBackend_lostLeaseEndsTheTest(t *testing.T) {
	members := etcdtest.Start(t, 1)
	t.Setenv(etcdstore.EnvState, etcdtest.URL(members))
	cl, err := OpenBackend(context.Background(), RunConfig{Cluster: "lab"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b := cl.(*backend)
	defer b.Close()
	ctx := context.Background()
	err = b.store.Update(ctx, func(s *cluster.State) error {
		n := cluster.DefaultHostConfig("n1")
		n.Address = "192.0.2.1"
		return s.RegisterNode(n.Node(), false)
	})
	if err != nil {
		t.Fatal(err)
	}
	owner, err := cluster.CurrentOwner("job", "1-test")
	if err != nil {
		t.Fatal(err)
	}
	const lease = 3 * time.Second
	p, err := cluster.Allocate(ctx, b.store, cluster.AllocRequest{Owner: owner, Tags: []string{"a"}, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	b.keepRenewed(p.ID, lease)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lost := b.Watch(wctx, &Partition{ID: p.ID})

	// Renewals keep it past its lease.
	time.Sleep(lease + time.Second)
	s, err := b.store.Load(ctx)
	if err != nil || s.Partition(p.ID) == nil {
		t.Fatalf("renewed partition gone: %v", err)
	}
	if err := cluster.Release(ctx, b.store, p.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		if !strings.Contains(err.Error(), "partition "+p.ID+" lost: its lease could not be renewed") {
			t.Errorf("lost lease reported as %v", err)
		}
	case <-wctx.Done():
		t.Fatal("a lost lease did not end the test")
	}
}
