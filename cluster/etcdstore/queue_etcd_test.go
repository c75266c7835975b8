//go:build !vtcluster_noetcd

package etcdstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// The queue across controllers on etcd: a three-node request waiting
// behind a running test is served before two-node requests of other
// controllers that arrived after it, and every controller's `queue` view
// shows it waiting with the holder named.
func TestEtcd_queueServesBigRequestFirstAcrossControllers(t *testing.T) {
	members := startEtcd(t, 1)
	st := labStore(t, members, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	holder, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner("ctl-a", 1), Tags: []string{"a"}, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		job string
		p   *cluster.Partition
	}
	served := make(chan result, 3)
	start := func(job, host string, tags ...string) *Store {
		other := openTestStore(t, members, "lab")
		o := testOwner(host, 2)
		o.JobID = job
		go func() {
			p, err := cluster.Allocate(ctx, other, cluster.AllocRequest{Owner: o, Tags: tags, Lease: time.Minute, Wait: time.Minute})
			if err != nil {
				t.Errorf("%s: %v", job, err)
			}
			served <- result{job, p}
		}()
		return other
	}
	waitJobs := func(want ...string) {
		t.Helper()
		testutil.Poll(t, time.Minute, func() (bool, string) {
			v, err := cluster.Queue(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range v {
				got = append(got, e.Owner.JobID)
			}
			return slices.Equal(got, want), fmt.Sprintf("queue %v, want %v", got, want)
		})
	}
	start("big", "ctl-b", "x", "y", "z")
	waitJobs("big")
	start("small1", "ctl-c", "p", "q")
	waitJobs("big", "small1")
	small2 := start("small2", "ctl-d", "p", "q")
	waitJobs("big", "small1", "small2")
	// Seen from another controller's client, the holder is named.
	v, err := cluster.Queue(ctx, small2)
	if err != nil {
		t.Fatal(err)
	}
	held := holder.Nodes[0].Node
	if len(v) != 3 || v[0].Owner.JobID != "big" || !strings.Contains(v[0].Holders[held], "partition "+holder.ID+" of pid 1 on ctl-a") {
		t.Fatalf("queue view: %+v", v)
	}
	select {
	case r := <-served:
		t.Fatalf("%s served while big waits first", r.job)
	case <-time.After(500 * time.Millisecond):
	}
	if err := cluster.Release(ctx, st, holder.ID); err != nil {
		t.Fatal(err)
	}
	first := <-served
	if first.job != "big" {
		t.Fatalf("%s served first, want big", first.job)
	}
	waitJobs("small1", "small2")
	if err := cluster.Release(ctx, st, first.p.ID); err != nil {
		t.Fatal(err)
	}
	second := <-served
	if second.job != "small1" {
		t.Fatalf("%s served second, want small1", second.job)
	}
	cluster.Release(ctx, st, second.p.ID)
	third := <-served
	cluster.Release(ctx, st, third.p.ID)
	waitJobs()
}
