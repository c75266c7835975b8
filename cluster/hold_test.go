package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// deadOwner is this process with another start time: to Owner.gone it is
// a process that has ended (its pid since reused).
func deadOwner(t *testing.T) Owner {
	t.Helper()
	o, err := CurrentOwner("job1", "1-test")
	if err != nil {
		t.Fatal(err)
	}
	o.PIDStart++
	if gone, _ := o.Gone(); !gone {
		t.Fatal("the fake dead owner is not seen as gone")
	}
	return o
}

func TestHoldPartition_outlivesItsOwnerUntilItsEnd(t *testing.T) {
	ctx := context.Background()
	st := newTestStore(t)
	registerNodes(t, st, 2)
	p, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"src", "dst"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := HoldPartition(ctx, st, p.ID, Hold{Test: "1-test", ResultsDir: "/r"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The runner that held it has ended.
	if err := st.Update(ctx, func(s *State) error { s.Partition(p.ID).Owner = deadOwner(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if gone, err := Reclaim(ctx, st, time.Now()); err != nil || len(gone) != 0 {
		t.Fatalf("a held partition of a dead owner was reclaimed: %v %v", gone, err)
	}
	// A renewal that was on its way must not cut the hold short.
	if r, err := Renew(ctx, st, p.ID, time.Minute); err != nil || time.Until(r.Expires) < 59*time.Minute {
		t.Fatalf("renew shortened the hold: %v %v", r, err)
	}
	s, _ := st.Load(ctx)
	if h := s.Held(time.Now()); len(h) != 1 || h[0].Hold.Test != "1-test" {
		t.Fatalf("Held = %+v", h)
	}
	gone, err := Reclaim(ctx, st, time.Now().Add(61*time.Minute))
	if err != nil || len(gone) != 1 {
		t.Fatalf("after its end the hold was not reclaimed: %v %v", gone, err)
	}
}

func TestHoldPartition_rejectsBadDurationsAndUnknownPartitions(t *testing.T) {
	ctx := context.Background()
	st := newTestStore(t)
	for _, d := range []time.Duration{0, -time.Second, MaxHold + time.Second} {
		if _, err := HoldPartition(ctx, st, "x", Hold{}, d); err == nil || !strings.Contains(err.Error(), "not between") {
			t.Errorf("hold for %s: %v", d, err)
		}
	}
	if _, err := HoldPartition(ctx, st, "0123", Hold{}, time.Minute); !errors.Is(err, ErrPartitionNotFound) {
		t.Errorf("unknown partition: %v", err)
	}
}

func TestReachCommands_quoteAndNameEveryNode(t *testing.T) {
	s := NewState()
	n := testNode("n1", "10.0.0.1")
	n.KeyFile, n.KnownHosts, n.ShellPort = "/keys/id ed", "/kh", 2222
	s.Nodes = append(s.Nodes, n)
	p := Partition{ID: "p1", Nodes: []Assignment{{Tag: "src", Node: "n1"}, {Tag: "dst", Node: "gone"}}, Hold: &Hold{ResultsDir: "/res/1-t"}}
	got := strings.Join(ReachCommands(p, s, []string{"/bin/vtcluster", "--cluster", "c"}), "\n")
	for _, want := range []string{
		"export 'VTCLUSTER_PARTITION_FILE=/res/1-t/partition.json'",
		"src = n1 (10.0.0.1):",
		"/bin/vtcluster --cluster c exec src -- sh -c 'ps -ef; ls -la /tmp'",
		"/bin/vtcluster --cluster c cp src:/etc/os-release .",
		"ssh -i '/keys/id ed' -p 2222 -o 'UserKnownHostsFile=/kh' root@10.0.0.1",
		"dst = gone: no longer registered",
		"end the hold: /bin/vtcluster --cluster c partition release p1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}
