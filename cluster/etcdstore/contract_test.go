//go:build !vtcluster_noetcd

package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
)

// storeFactory opens a fresh, empty store for one subtest; every call
// opens another client of the same store, as another process would.
type storeFactory func(t *testing.T) func() cluster.Store

// stores are the stores the contract holds for: the same test runs on
// both.
func stores() map[string]storeFactory {
	return map[string]storeFactory{
		"file": func(t *testing.T) func() cluster.Store {
			dir := t.TempDir()
			return func() cluster.Store {
				st, err := cluster.OpenFileStore(dir, "contract")
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
		},
		"etcd": func(t *testing.T) func() cluster.Store {
			members := startEtcd(t, 1)
			return func() cluster.Store { return openTestStore(t, members, "contract") }
		},
	}
}

func testNode(name string) cluster.Node {
	h := cluster.DefaultHostConfig(name)
	h.Address = "192.0.2.1"
	return h.Node()
}

func testOwner(host string, pid int) cluster.Owner {
	return cluster.Owner{Host: host, PID: pid, JobID: "job", TestID: "1-test"}
}

func register(t *testing.T, st cluster.Store, names ...string) {
	t.Helper()
	err := st.Update(context.Background(), func(s *cluster.State) error {
		for _, n := range names {
			if err := s.RegisterNode(testNode(n), false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func names(nodes []cluster.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	return out
}

// TestStoreContract is what every cluster.Store promises, run on the file
// store and on etcd alike.
func TestStoreContract(t *testing.T) {
	for name, factory := range stores() {
		t.Run(name, func(t *testing.T) {
			open := factory(t)
			ctx := context.Background()

			t.Run("empty", func(t *testing.T) {
				s, err := open().Load(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if s.Version != cluster.StateVersion || len(s.Nodes) != 0 || len(s.Partitions) != 0 {
					t.Fatalf("empty store loads as %+v", s)
				}
			})

			t.Run("nodes keep registration order, labels and types", func(t *testing.T) {
				st := open()
				register(t, st, "zeta", "alpha", "mid")
				err := st.Update(ctx, func(s *cluster.State) error {
					n := s.Node("alpha")
					n.Labels = map[string]any{"cpus": int64(8), "ratio": 1.5, "rack": "b"}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				s, err := open().Load(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if got := names(s.Nodes); !slices.Equal(got, []string{"zeta", "alpha", "mid"}) {
					t.Errorf("nodes %v, want registration order zeta alpha mid", got)
				}
				l := s.Node("alpha").Labels
				if l["cpus"] != int64(8) || l["ratio"] != 1.5 || l["rack"] != "b" {
					t.Errorf("labels came back as %#v", l)
				}
			})

			t.Run("fields outside nodes and partitions are kept", func(t *testing.T) {
				st := open()
				o := testOwner("elsewhere", 42)
				if err := st.Update(ctx, func(s *cluster.State) error { s.AddAgentUser(o); return nil }); err != nil {
					t.Fatal(err)
				}
				s, err := open().Load(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(s.AgentUsers) != 1 || s.AgentUsers[0] != o {
					t.Errorf("agent users %+v, want [%+v]", s.AgentUsers, o)
				}
			})

			t.Run("fn error saves nothing", func(t *testing.T) {
				st := open()
				boom := errors.New("boom")
				err := st.Update(ctx, func(s *cluster.State) error {
					s.RegisterNode(testNode("ghost"), false)
					return boom
				})
				if !errors.Is(err, boom) {
					t.Fatalf("Update returned %v, want fn's error", err)
				}
				s, _ := open().Load(ctx)
				if s.Node("ghost") != nil {
					t.Error("a failed Update saved its change")
				}
			})

			t.Run("invalid state is refused", func(t *testing.T) {
				st := open()
				now := time.Now()
				err := st.Update(ctx, func(s *cluster.State) error {
					for _, id := range []string{"00000000000000000000000000000001", "00000000000000000000000000000002"} {
						s.Partitions = append(s.Partitions, cluster.Partition{ID: id, Owner: testOwner("h", 1),
							Nodes: []cluster.Assignment{{Tag: "a", Node: "zeta"}}, Created: now, Renewed: now, Expires: now.Add(time.Minute)})
					}
					return nil
				})
				if err == nil {
					t.Fatal("two partitions sharing a node were saved")
				}
				s, _ := open().Load(ctx)
				if len(s.Partitions) != 0 {
					t.Errorf("partitions after a refused Update: %+v", s.Partitions)
				}
			})

			t.Run("allocate renew release", func(t *testing.T) {
				st := open()
				p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner("ctl-a", 100), Tags: []string{"src", "dst"}, Lease: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				other := open()
				s, err := other.Load(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got := s.Partition(p.ID)
				if got == nil || got.Owner.Host != "ctl-a" || len(got.Nodes) != 2 {
					t.Fatalf("another client sees %+v", got)
				}
				if left := time.Until(got.Expires); left < 55*time.Second || left > 61*time.Second {
					t.Errorf("lease left %s, want about a minute", left)
				}
				idle := names(s.IdleNodes(time.Now()))
				if len(idle) != 1 {
					t.Errorf("idle nodes %v, want the one not allocated", idle)
				}
				// Busy: the third tag has no node.
				_, err = cluster.Allocate(ctx, other, cluster.AllocRequest{Owner: testOwner("ctl-b", 200), Tags: []string{"a", "b"}})
				var held *cluster.LeaseHeldError
				if !errors.Is(err, cluster.ErrBusy) || !errors.As(err, &held) || held.Owner.Host != "ctl-a" {
					t.Errorf("second allocation: %v, want ErrBusy naming ctl-a", err)
				}
				r, err := cluster.Renew(ctx, other, p.ID, 2*time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if left := time.Until(r.Expires); left < 115*time.Second {
					t.Errorf("renewed lease left %s, want about two minutes", left)
				}
				s, _ = open().Load(ctx)
				if left := time.Until(s.Partition(p.ID).Expires); left < 110*time.Second || left > 121*time.Second {
					t.Errorf("renewed lease seen by another client: %s left", left)
				}
				if err := cluster.Release(ctx, st, p.ID); err != nil {
					t.Fatal(err)
				}
				if err := cluster.Release(ctx, other, p.ID); !errors.Is(err, cluster.ErrPartitionNotFound) {
					t.Errorf("second release: %v, want ErrPartitionNotFound", err)
				}
				if _, err := cluster.Renew(ctx, other, p.ID, time.Minute); !errors.Is(err, cluster.ErrPartitionNotFound) {
					t.Errorf("renew after release: %v, want ErrPartitionNotFound", err)
				}
			})

			t.Run("a hold is seen by other clients with its end as the lease", func(t *testing.T) {
				st := open()
				register(t, st, "held-node")
				p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner("ctl-a", 100), Tags: []string{"src"}, Lease: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := cluster.HoldPartition(ctx, st, p.ID, cluster.Hold{Test: "1-test", ResultsDir: "/r"}, time.Hour); err != nil {
					t.Fatal(err)
				}
				s, err := open().Load(ctx)
				if err != nil {
					t.Fatal(err)
				}
				held := s.Held(time.Now())
				if len(held) != 1 || held[0].Hold.Test != "1-test" || held[0].Hold.ResultsDir != "/r" {
					t.Fatalf("another client sees holds %+v", held)
				}
				if left := time.Until(held[0].Expires); left < 59*time.Minute || left > 61*time.Minute {
					t.Errorf("hold left %s, want about an hour", left)
				}
				if err := cluster.Release(ctx, open(), p.ID); err != nil {
					t.Fatal(err)
				}
			})

			t.Run("unregister refuses a held node", func(t *testing.T) {
				st := open()
				p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner("ctl-a", 100), Tags: []string{"x"}, Lease: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				node := p.Nodes[0].Node
				err = open().Update(ctx, func(s *cluster.State) error { return s.UnregisterNode(node, time.Now(), false) })
				var held *cluster.LeaseHeldError
				if !errors.As(err, &held) {
					t.Fatalf("unregister of a held node: %v", err)
				}
				if err := open().Update(ctx, func(s *cluster.State) error { return s.UnregisterNode(node, time.Now(), true) }); err != nil {
					t.Fatal(err)
				}
				s, _ := open().Load(ctx)
				if s.Node(node) != nil || s.Partition(p.ID) != nil {
					t.Errorf("forced unregister left node %v partition %v", s.Node(node), s.Partition(p.ID))
				}
				register(t, st, node)
			})

			t.Run("rules across partitions are serialised", func(t *testing.T) {
				// Each writer adds a partition on its own node only if
				// there is none yet: a rule no per-node guard sees.
				register(t, open(), "r1", "r2", "r3")
				var wg sync.WaitGroup
				for i, n := range []string{"r1", "r2", "r3"} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						now := time.Now()
						err := open().Update(ctx, func(s *cluster.State) error {
							if len(s.Partitions) > 0 {
								return nil
							}
							s.Partitions = append(s.Partitions, cluster.Partition{ID: fmt.Sprintf("%032x", i+1), Owner: testOwner("h", 1),
								Nodes: []cluster.Assignment{{Tag: "a", Node: n}}, Created: now, Renewed: now, Expires: now.Add(time.Minute)})
							return nil
						})
						if err != nil {
							t.Error(err)
						}
					}()
				}
				wg.Wait()
				s, err := open().Load(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(s.Partitions) != 1 {
					t.Errorf("%d partitions, want exactly one", len(s.Partitions))
				}
				for _, p := range s.Partitions {
					if err := cluster.Release(ctx, open(), p.ID); err != nil {
						t.Fatal(err)
					}
				}
			})

			t.Run("concurrent allocations never double-book", func(t *testing.T) {
				const workers, rounds = 6, 8
				var mu sync.Mutex
				holder := map[string]string{}
				var wg sync.WaitGroup
				errs := make(chan error, workers)
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						st := open() // its own client, like another controller
						for range rounds {
							p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner(fmt.Sprintf("ctl-%d", w), 1000+w), Tags: []string{"a", "b"}, Lease: time.Minute, Wait: time.Minute})
							if err != nil {
								errs <- err
								return
							}
							mu.Lock()
							for _, a := range p.Nodes {
								if h := holder[a.Node]; h != "" {
									errs <- fmt.Errorf("node %s given to %s while %s holds it", a.Node, p.ID, h)
								}
								holder[a.Node] = p.ID
							}
							mu.Unlock()
							time.Sleep(5 * time.Millisecond)
							mu.Lock()
							for _, a := range p.Nodes {
								holder[a.Node] = ""
							}
							mu.Unlock()
							if err := cluster.Release(ctx, st, p.ID); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
				s, _ := open().Load(ctx)
				if len(s.Partitions) != 0 {
					t.Errorf("partitions left: %v", slices.Collect(maps.Keys(holder)))
				}
			})
		})
	}
}

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		os.Exit(runHelper(name))
	}
	os.Exit(m.Run())
}
