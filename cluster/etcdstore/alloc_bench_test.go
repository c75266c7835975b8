//go:build !vtcluster_noetcd

package etcdstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/etcdstore/etcdtest"
)

// BenchmarkPartitionCreateRelease is what every test pays the store: one
// partition of one node allocated (choosing among the idle nodes as the
// runner does) and released, on a lab of 16 and of 1,024 registered nodes,
// on the file store and on etcd. Allocation should not grow with the lab:
// `make bench-compare` prints the 1,024/16 ratio of each store.
func BenchmarkPartitionCreateRelease(b *testing.B) {
	for _, store := range []string{"file", "etcd"} {
		for _, nodes := range []int{16, 1024} {
			b.Run(fmt.Sprintf("store=%s/nodes=%d", store, nodes), func(b *testing.B) {
				var st cluster.Store
				switch store {
				case "file":
					fs, err := cluster.OpenFileStore(b.TempDir(), "bench")
					if err != nil {
						b.Fatal(err)
					}
					st = fs
				case "etcd":
					if testing.Short() {
						b.Skip("no etcd server under -short")
					}
					members := etcdtest.Start(b, 1)
					cfg, err := ParseURL(etcdtest.URL(members))
					if err != nil {
						b.Fatal(err)
					}
					cfg.Cluster = "bench"
					cfg.Timeout = 10 * time.Second
					es, err := Open(cfg)
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { es.Close() })
					st = es
				}
				benchAllocateRelease(b, st, nodes)
			})
		}
	}
}

func benchAllocateRelease(b *testing.B, st cluster.Store, count int) {
	ctx := context.Background()
	// In batches: etcd takes at most 128 operations (and guards) in one transaction.
	for from := 0; from < count; from += 50 {
		err := st.Update(ctx, func(s *cluster.State) error {
			for i := from; i < min(from+50, count); i++ {
				h := cluster.DefaultHostConfig(fmt.Sprintf("node%04d", i))
				n := h.Node()
				n.Address = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
				n.Labels = map[string]any{"rack": fmt.Sprintf("r%d", i%8)}
				// What a started agent's properties look like.
				n.Properties = map[string]any{"hostname": n.Name, "arch": "x86_64", "cpu_count": int64(8),
					"memory_gb": int64(32), "kernel": "6.18.0", "os": "Debian GNU/Linux 13"}
				if err := s.RegisterNode(n, false); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	owner, err := cluster.CurrentOwner("bench-job", "1-test")
	if err != nil {
		b.Fatal(err)
	}
	reqs := []cluster.TagRequest{{Tag: "n"}}
	b.ResetTimer()
	for range b.N {
		p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: owner, Tags: []string{"n"}, Lease: time.Minute,
			Choose: func(idle []cluster.Node) (map[string]string, error) {
				cands := make([]cluster.Candidate, len(idle))
				for i, n := range idle {
					cands[i] = cluster.Candidate{Name: n.Name, Props: n.Properties}
				}
				return cluster.Assign(reqs, cands)
			}})
		if err != nil {
			b.Fatal(err)
		}
		if err := cluster.Release(ctx, st, p.ID); err != nil {
			b.Fatal(err)
		}
	}
}
