package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/internal/testutil"
)

// queue-alloc: allocate the given tags, waiting up to a minute, with a
// priority; print the partition id, then release when stdin closes.
// Args: dir cluster job priority tag...
var _ = registerTestHelper("queue-alloc", func(args []string) int {
	prio, _ := strconv.Atoi(args[3])
	return holdPartition(args[0], args[1], args[2], AllocRequest{Tags: args[4:], Priority: prio, Lease: time.Hour, Wait: time.Minute})
})

type queued struct {
	job   string
	out   chan string // the partition id, once served
	stdin io.WriteCloser
}

func startQueued(tb testing.TB, st *FileStore, job string, prio int, tags ...string) *queued {
	tb.Helper()
	c := helperCommand(tb, "queue-alloc", append([]string{filepath.Dir(st.Path()), "test", job, strconv.Itoa(prio)}, tags...)...)
	stdin, out := startPiped(tb, c)
	q := &queued{job: job, out: make(chan string, 1), stdin: stdin}
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		q.out <- strings.TrimSpace(line)
	}()
	return q
}

// waitQueue waits until the queue holds exactly jobs, in that order.
func waitQueue(tb testing.TB, st Store, jobs ...string) []QueueView {
	tb.Helper()
	var v []QueueView
	testutil.Poll(tb, time.Minute, func() (bool, string) {
		var err error
		if v, err = Queue(context.Background(), st); err != nil {
			tb.Fatal(err)
		}
		var got []string
		for _, e := range v {
			got = append(got, e.Owner.JobID)
		}
		return slices.Equal(got, jobs), fmt.Sprintf("queue is %v, want %v", got, jobs)
	})
	return v
}

func served(tb testing.TB, q *queued) string {
	tb.Helper()
	select {
	case id := <-q.out:
		if !partitionIDRE.MatchString(id) {
			tb.Fatalf("%s printed %q, not a partition id (it failed)", q.job, id)
		}
		return id
	case <-time.After(time.Minute):
		tb.Fatalf("%s was not served", q.job)
	}
	return ""
}

func notServed(tb testing.TB, qs ...*queued) {
	tb.Helper()
	for _, q := range qs {
		select {
		case id := <-q.out:
			tb.Fatalf("%s was served (%q) before the requests queued ahead of it", q.job, id)
		default:
		}
	}
}

// A three-node request queued behind a running test is served before the
// two-node requests that arrived after it, although each of those would
// have found enough idle nodes first; across processes on one state file.
func TestAllocate_queueServesBigRequestBeforeLaterSmallOnes(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 3)
	_, _, holder, holderIn := startHolder(t, st, "1h", "a")
	big := startQueued(t, st, "big", 0, "x", "y", "z")
	waitQueue(t, st, "big")
	small1 := startQueued(t, st, "small1", 0, "p", "q")
	waitQueue(t, st, "big", "small1")
	small2 := startQueued(t, st, "small2", 0, "p", "q")
	v := waitQueue(t, st, "big", "small1", "small2")

	// The view names who holds what the first request needs.
	if v[0].Position != 1 || len(v[0].Fit["x"]) != 3 {
		t.Errorf("queue view of big: %+v", v[0])
	}
	s, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	heldNode := s.Partition(holder).Nodes[0].Node
	if h := v[0].Holders[heldNode]; !strings.Contains(h, "partition "+holder) {
		t.Errorf("holder of %s shown as %q", heldNode, h)
	}
	// The small ones wait although two nodes are idle: they are kept
	// for big.
	time.Sleep(300 * time.Millisecond)
	notServed(t, small1, small2)

	holderIn.Close()
	served(t, big)
	waitQueue(t, st, "small1", "small2")
	notServed(t, small1, small2)
	big.stdin.Close()
	served(t, small1)
	waitQueue(t, st, "small2")
	small1.stdin.Close()
	served(t, small2)
	small2.stdin.Close()
	waitQueue(t, st)
}

// Rank: priority first, then arrival; each QueueAgeing waited counts as
// one priority level, so an old low-priority request is not passed for
// ever by newer high-priority ones.
func TestQueue_rankPriorityAndAgeing(t *testing.T) {
	now := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	old := QueueEntry{ID: "a", Priority: 0, Since: now.Add(-10 * QueueAgeing)}
	newHigh := QueueEntry{ID: "b", Priority: 5, Since: now}
	newLow := QueueEntry{ID: "c", Priority: 0, Since: now}
	older := QueueEntry{ID: "d", Priority: 0, Since: now.Add(-time.Second)}
	if !queueAhead(&newHigh, &newLow, now) {
		t.Error("higher priority not ahead")
	}
	if !queueAhead(&old, &newHigh, now) {
		t.Errorf("a request waiting 10 ageing periods (rank %d) is behind priority 5", old.Rank(now))
	}
	if !queueAhead(&older, &newLow, now) || queueAhead(&newLow, &older, now) {
		t.Error("equal rank: earlier arrival not first")
	}
}

// Nodes kept for a request ahead: one that fits takes exactly its nodes;
// one that does not keeps only nodes its selectors accept, one per tag.
func TestQueue_keptForRequestsAhead(t *testing.T) {
	s := NewState()
	for i, arch := range []string{"x86_64", "x86_64", "aarch64", "aarch64"} {
		h := DefaultHostConfig(fmt.Sprintf("n%d", i+1))
		h.Address = fmt.Sprintf("192.0.2.%d", i+1)
		h.Labels = map[string]any{"cpu_arch": arch}
		if err := s.RegisterNode(h.Node(), false); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	arm := "[{'key': 'cpu_arch', 'operator': '==', 'values': 'aarch64'}]"
	// Three arm nodes wanted, two exist idle: it keeps both, not the x86.
	s.Queue = []QueueEntry{{ID: "00000001", Owner: Owner{Host: "h", PID: 1}, Since: now.Add(-time.Minute), Expires: now.Add(time.Minute),
		Tags: []QueueTag{{Tag: "a", Selectors: arm}, {Tag: "b", Selectors: arm}, {Tag: "c", Selectors: arm}}}}
	me := &queueTicket{id: "me"}
	kept := s.keptForQueue(me, s.Nodes, now)
	if len(kept) != 2 || kept["n3"] == "" || kept["n4"] == "" {
		t.Errorf("kept %v, want n3 and n4", kept)
	}
	// One that fits takes only what it needs.
	s.Queue[0].Tags = s.Queue[0].Tags[:1]
	kept = s.keptForQueue(me, s.Nodes, now)
	if len(kept) != 1 || kept["n3"] == "" {
		t.Errorf("kept %v, want n3", kept)
	}
	// A request with a higher priority is not held back by it.
	me.priority = 10
	if kept = s.keptForQueue(me, s.Nodes, now); len(kept) != 0 {
		t.Errorf("kept %v for a lower-ranked request", kept)
	}
}

// A quarantined node is given to no test, and named when a request waits
// for it; resume returns it.
func TestAllocate_quarantinedNodeSkippedUntilResumed(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 2)
	ctx := context.Background()
	s, _ := st.Load(ctx)
	bad := s.Nodes[0].Name
	for i := range 2 {
		q, err := RecordFailure(ctx, st, bad, "agent would not start", 3)
		if err != nil || q {
			t.Fatalf("failure %d: quarantined %v, %v", i+1, q, err)
		}
	}
	if q, err := RecordFailure(ctx, st, bad, "agent would not start", 3); err != nil || !q {
		t.Fatalf("third failure: quarantined %v, %v", q, err)
	}
	for range 3 {
		p, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"a"}})
		if err != nil {
			t.Fatal(err)
		}
		if p.Nodes[0].Node == bad {
			t.Fatal("a quarantined node was given out")
		}
		Release(ctx, st, p.ID)
	}
	_, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"a", "b"}})
	var ue *UnavailableError
	if !errors.Is(err, ErrBusy) || !errors.As(err, &ue) || ue.Node != bad || !strings.Contains(err.Error(), "quarantined: failed to serve 3 times in a row, last: agent would not start") {
		t.Fatalf("two nodes with one quarantined: %v", err)
	}
	if was, err := ResumeNode(ctx, st, bad); err != nil || !was {
		t.Fatalf("resume: %v %v", was, err)
	}
	p, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"a", "b"}})
	if err != nil {
		t.Fatalf("after resume: %v", err)
	}
	Release(ctx, st, p.ID)
	if s, _ := st.Load(ctx); len(s.NodeHealth) != 0 || len(s.Queue) != 0 {
		t.Errorf("left in the state: health %v, queue %v", s.NodeHealth, s.Queue)
	}
	if _, err := ResumeNode(ctx, st, "nosuch"); !errors.Is(err, ErrNodeNotFound) {
		t.Errorf("resume of an unknown node: %v", err)
	}
}
