package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func testOwner(tb testing.TB) Owner {
	tb.Helper()
	o, err := CurrentOwner("job-1", "1-test")
	if err != nil {
		tb.Fatal(err)
	}
	return o
}

// hold: allocate the given tags, print the partition id, then wait for
// stdin to close and release. Args: dir cluster lease tag...
var _ = registerTestHelper("hold", func(args []string) int {
	lease, err := time.ParseDuration(args[2])
	if err != nil {
		return helperFail("%v", err)
	}
	return holdPartition(args[0], args[1], "job-hold", AllocRequest{Tags: args[3:], Lease: lease})
})

// holdPartition is the body of the hold and queue-alloc helpers: it
// allocates req for job on the file store dir/name, prints the partition
// id, and releases it when stdin closes.
func holdPartition(dir, name, job string, req AllocRequest) int {
	st, err := OpenFileStore(dir, name)
	if err != nil {
		return helperFail("%v", err)
	}
	if req.Owner, err = CurrentOwner(job, ""); err != nil {
		return helperFail("%v", err)
	}
	ctx := context.Background()
	p, err := Allocate(ctx, st, req)
	if err != nil {
		return helperFail("%v", err)
	}
	fmt.Println(p.ID)
	io.Copy(io.Discard, os.Stdin)
	if err := Release(ctx, st, p.ID); err != nil {
		return helperFail("%v", err)
	}
	return 0
}

// alloc-worker: rounds of allocate, log, release, each allocation taking
// two random idle nodes. Args: dir cluster logfile rounds.
var _ = registerTestHelper("alloc-worker", func(args []string) int {
	st, err := OpenFileStore(args[0], args[1])
	if err != nil {
		return helperFail("%v", err)
	}
	logf, err := os.OpenFile(args[2], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return helperFail("%v", err)
	}
	rounds, _ := strconv.Atoi(args[3])
	owner, err := CurrentOwner("job-worker", "")
	if err != nil {
		return helperFail("%v", err)
	}
	tags := []string{"a", "b"}
	choose := func(idle []Node) (map[string]string, error) {
		if len(idle) < len(tags) {
			return nil, &NoMatchError{Tag: tags[len(idle)], Reason: ReasonTaken}
		}
		perm := rand.Perm(len(idle))
		return map[string]string{"a": idle[perm[0]].Name, "b": idle[perm[1]].Name}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	record := func(event, id string, nodes []Assignment) error {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return err
		}
		names := make([]string, len(nodes))
		for i, a := range nodes {
			names[i] = a.Node
		}
		// One write per line: O_APPEND keeps lines whole and in order.
		_, err := fmt.Fprintf(logf, "%s %d %d %s %s\n", event, ts.Nano(), os.Getpid(), id, strings.Join(names, ","))
		return err
	}
	for range rounds {
		p, err := Allocate(ctx, st, AllocRequest{Owner: owner, Tags: tags, Choose: choose, Lease: time.Minute, Wait: time.Minute})
		if err != nil {
			return helperFail("allocate: %v", err)
		}
		if err := record("acq", p.ID, p.Nodes); err != nil {
			return helperFail("%v", err)
		}
		if rand.IntN(4) == 0 {
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		}
		if err := record("rel", p.ID, p.Nodes); err != nil {
			return helperFail("%v", err)
		}
		if err := Release(ctx, st, p.ID); err != nil {
			return helperFail("release: %v", err)
		}
	}
	return 0
})

// TestAllocate_concurrentProcessesNeverDoubleBook runs several processes
// that allocate and release against one state file, each logging what it
// held, and checks that no node was ever held by two partitions at once.
//
// The log proves it without trusting clocks: a holder writes "acq" after
// its allocation is saved and "rel" before its release is saved, so if the
// store is exclusive, every node's lines alternate acq/rel of one
// partition. The monotonic timestamps are checked the same way.
func TestAllocate_concurrentProcessesNeverDoubleBook(t *testing.T) {
	const workers, rounds, nodes = 6, 40, 5
	st := newTestStore(t)
	registerNodes(t, st, nodes)
	logPath := filepath.Join(t.TempDir(), "holds.log")
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(st.Path())
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		cmd := helperCommand(t, "alloc-worker", dir, "test", logPath, strconv.Itoa(rounds))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cmd.Wait()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}

	type hold struct {
		id         string
		acq, rel   int64
		acqd, reld bool
	}
	holder := map[string]string{} // node -> partition holding it, by log order
	holds := map[string]*hold{}
	perNode := map[string][]*hold{}
	acquisitions := 0
	for n, line := range strings.Split(strings.TrimSpace(string(readFile(t, logPath))), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 {
			t.Fatalf("log line %d malformed: %q", n+1, line)
		}
		ts, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		id, names := f[3], strings.Split(f[4], ",")
		h := holds[id]
		if h == nil {
			h = &hold{id: id}
			holds[id] = h
		}
		switch f[0] {
		case "acq":
			acquisitions++
			if h.acqd {
				t.Fatalf("partition id %s allocated twice", id)
			}
			h.acq, h.acqd = ts, true
			for _, node := range names {
				if other := holder[node]; other != "" {
					t.Errorf("line %d: node %s given to %s while %s holds it", n+1, node, id, other)
				}
				holder[node] = id
				perNode[node] = append(perNode[node], h)
			}
		case "rel":
			h.rel, h.reld = ts, true
			for _, node := range names {
				if holder[node] != id {
					t.Errorf("line %d: %s releases node %s held by %q", n+1, id, node, holder[node])
				}
				holder[node] = ""
			}
		}
	}
	if acquisitions != workers*rounds {
		t.Errorf("%d acquisitions logged, want %d", acquisitions, workers*rounds)
	}
	for node, hs := range perNode {
		sort.Slice(hs, func(i, j int) bool { return hs[i].acq < hs[j].acq })
		for i := 1; i < len(hs); i++ {
			if prev := hs[i-1]; !prev.reld || prev.rel > hs[i].acq {
				t.Errorf("node %s: partition %s [%d,%d] overlaps %s from %d", node, prev.id, prev.acq, prev.rel, hs[i].id, hs[i].acq)
			}
		}
	}
	s, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Partitions) != 0 || len(s.Nodes) != nodes {
		t.Errorf("final state: %d partitions, %d nodes; want 0 and %d", len(s.Partitions), len(s.Nodes), nodes)
	}
}

// startPiped starts a helper command with pipes to its stdin (closing
// it tells the helper to end) and from its stdout.
func startPiped(tb testing.TB, c *exec.Cmd) (stdin io.WriteCloser, stdout io.ReadCloser) {
	tb.Helper()
	stdin, err := c.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if stdout, err = c.StdoutPipe(); err != nil {
		tb.Fatal(err)
	}
	if err := c.Start(); err != nil {
		tb.Fatal(err)
	}
	return stdin, stdout
}

// startHolder runs the "hold" helper and returns it with its partition id.
func startHolder(tb testing.TB, st *FileStore, lease string, tags ...string) (cmd interface {
	Wait() error
}, pid int, id string, stdin io.WriteCloser) {
	tb.Helper()
	c := helperCommand(tb, "hold", append([]string{filepath.Dir(st.Path()), "test", lease}, tags...)...)
	stdin, out := startPiped(tb, c)
	id = readLine(tb, bufio.NewReader(out))
	if !partitionIDRE.MatchString(id) {
		tb.Fatalf("holder printed %q, not a partition id", id)
	}
	return c, c.Process.Pid, id, stdin
}

func TestAllocate_reclaimsKilledOwner(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 2)
	cmd, pid, id, _ := startHolder(t, st, "1h", "a", "b")
	ctx := context.Background()

	_, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"x"}})
	var held *LeaseHeldError
	if !errors.Is(err, ErrBusy) || !errors.As(err, &held) || held.Owner.PID != pid || held.Partition != id {
		t.Fatalf("while the holder lives: got %v, want ErrBusy with a *LeaseHeldError naming pid %d", err, pid)
	}

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); !killedBySignal(err) {
		t.Fatalf("holder did not die of SIGKILL: %v", err)
	}
	p, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"x", "y"}})
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	parts, err := ListPartitions(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 1 || parts[0].ID != p.ID {
		t.Errorf("partitions = %+v, want only the new one", parts)
	}
}

// A killed owner stays a zombie until its parent reaps it, and kill(pid, 0)
// succeeds on zombies; the reclaim must not be fooled.
func TestAllocate_reclaimsZombieOwner(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 1)
	cmd, pid, _, _ := startHolder(t, st, "1h", "a")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Wait for the exit without reaping, so the child stays a zombie.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if state, _, err := procStat(pid); err != nil || state != 'Z' {
		t.Fatalf("holder is not a zombie: state %c, %v", state, err)
	}
	if _, err := Allocate(context.Background(), st, AllocRequest{Owner: testOwner(t), Tags: []string{"x"}}); err != nil {
		t.Errorf("zombie owner not reclaimed: %v", err)
	}
	cmd.Wait()
}

func TestAllocate_waitsForRelease(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 2)
	_, _, id, stdin := startHolder(t, st, "1h", "a", "b")

	// The holder is told to release only once Allocate says it waits, so
	// the wait really happens.
	var once sync.Once
	waited := false
	logger := slog.New(&funcHandler{fn: func(r slog.Record) {
		if r.Message == "waiting for idle nodes" {
			once.Do(func() { waited = true; stdin.Close() })
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"x", "y"}, Wait: 30 * time.Second, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if !waited {
		t.Error("Allocate succeeded without waiting although every node was held")
	}
	if p.ID == id {
		t.Error("got the holder's partition id")
	}
}

func TestAllocate_unsatisfiableFailsWithoutWaiting(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 1)
	logger := slog.New(&funcHandler{fn: func(r slog.Record) {
		if r.Message == "waiting for idle nodes" {
			t.Error("Allocate waits for a request no node can ever satisfy")
		}
	}})
	_, err := Allocate(context.Background(), st, AllocRequest{Owner: testOwner(t), Tags: []string{"a", "b"}, Wait: time.Hour, Logger: logger})
	var nm *NoMatchError
	if !errors.Is(err, ErrUnsatisfiable) || !errors.As(err, &nm) || nm.Tag != "b" || nm.Reason != ReasonTaken {
		t.Errorf("got %v, want ErrUnsatisfiable with a *NoMatchError for tag b", err)
	}
	t.Logf("message: %v", err)
}

func TestAllocate_waitEndsWithContext(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 1)
	if _, err := Allocate(context.Background(), st, AllocRequest{Owner: testOwner(t), Tags: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(&funcHandler{fn: func(r slog.Record) { cancel() }})
	_, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"a"}, Wait: time.Hour, Logger: logger})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestAllocate_leaseExpiryReclaims(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 1)
	ctx := context.Background()
	// An owner on another host can only lose its nodes by lease expiry.
	remote := Owner{Host: "elsewhere.invalid", PID: 1}
	p, err := Allocate(ctx, st, AllocRequest{Owner: remote, Tags: []string{"a"}, Lease: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(p.Expires) + 5*time.Millisecond)
	q, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"b"}})
	if err != nil {
		t.Fatalf("after the lease expired: %v", err)
	}
	if err := Release(ctx, st, p.ID); !errors.Is(err, ErrPartitionNotFound) {
		t.Errorf("expired partition still recorded: %v", err)
	}
	if err := Release(ctx, st, q.ID); err != nil {
		t.Fatal(err)
	}
}

func TestReclaim(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 5)
	ctx := context.Background()
	self := testOwner(t)
	_, start, err := procStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	reused := self
	reused.PIDStart = start + 1 // our pid, but "started" at another time: a recycled pid
	rebooted := self
	rebooted.BootID = "00000000-0000-0000-0000-000000000000"
	remoteDead := Owner{Host: "elsewhere.invalid", PID: 999999999}
	owners := map[string]Owner{"self": self, "reused": reused, "rebooted": rebooted, "remote": remoteDead}
	// Recorded directly: Allocate would reclaim the dead ones itself.
	ids := map[string]string{}
	err = st.Update(ctx, func(s *State) error {
		now := time.Now().UTC()
		for i, name := range []string{"self", "reused", "rebooted", "remote"} {
			ids[name] = newPartitionID()
			s.Partitions = append(s.Partitions, Partition{ID: ids[name], Owner: owners[name], Created: now, Renewed: now,
				Expires: now.Add(time.Hour), Nodes: []Assignment{{Tag: "t", Node: s.Nodes[i].Name}}})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Reclaim(ctx, st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, p := range got {
		gotIDs = append(gotIDs, p.ID)
	}
	want := []string{ids["reused"], ids["rebooted"]}
	slices.Sort(gotIDs)
	slices.Sort(want)
	if !slices.Equal(gotIDs, want) {
		t.Errorf("reclaimed %v, want the reused-pid and rebooted owners %v", gotIDs, want)
	}
	// Two hours on, every lease has run out.
	got, err = Reclaim(ctx, st, time.Now().Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("after expiry reclaimed %d partitions, want the remaining 2", len(got))
	}
	if parts, _ := ListPartitions(ctx, st); len(parts) != 0 {
		t.Errorf("partitions left: %+v", parts)
	}
}

func TestAllocate_busyReportsHolders(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 3)
	ctx := context.Background()
	remote := Owner{Host: "elsewhere.invalid", PID: 5, JobID: "j"}
	held, err := Allocate(ctx, st, AllocRequest{Owner: remote, Tags: []string{"a", "b"}, Lease: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"x", "y"}})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("got %v, want ErrBusy", err)
	}
	var lh *LeaseHeldError
	if !errors.As(err, &lh) || lh.Partition != held.ID || lh.Owner != remote || !lh.Expires.Equal(held.Expires) {
		t.Errorf("got %v, want a *LeaseHeldError for partition %s", err, held.ID)
	}
	if !strings.Contains(err.Error(), "elsewhere.invalid") {
		t.Errorf("message does not say who holds the nodes: %v", err)
	}
	t.Logf("message: %v", err)
}

func TestAllocate_rejectsBadChoices(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 3)
	ctx := context.Background()
	if _, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"held"}}); err != nil { // takes n1
		t.Fatal(err)
	}
	cases := map[string]map[string]string{
		"missing tag":  {"a": "n2"},
		"extra tag":    {"a": "n2", "b": "n3", "c": "n3"},
		"same node":    {"a": "n2", "b": "n2"},
		"busy node":    {"a": "n1", "b": "n2"},
		"unknown node": {"a": "n2", "b": "ghost"},
	}
	for name, choice := range cases {
		_, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"a", "b"},
			Choose: func([]Node) (map[string]string, error) { return choice, nil }})
		if err == nil || !strings.Contains(err.Error(), "chooser") {
			t.Errorf("%s: got %v, want a chooser error", name, err)
		}
	}
	boom := errors.New("selector syntax")
	_, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"a"}, Wait: time.Hour,
		Choose: func([]Node) (map[string]string, error) { return nil, boom }})
	if !errors.Is(err, boom) {
		t.Errorf("chooser error: got %v", err)
	}
	for name, req := range map[string]AllocRequest{
		"no tags":    {Owner: testOwner(t)},
		"dup tags":   {Owner: testOwner(t), Tags: []string{"a", "a"}},
		"bad tag":    {Owner: testOwner(t), Tags: []string{"a b"}},
		"no owner":   {Tags: []string{"a"}},
		"neg lease":  {Owner: testOwner(t), Tags: []string{"a"}, Lease: -1},
		"neg wait":   {Owner: testOwner(t), Tags: []string{"a"}, Wait: -1},
		"empty tag":  {Owner: testOwner(t), Tags: []string{""}},
		"slash tag":  {Owner: testOwner(t), Tags: []string{"a/b"}},
		"owner host": {Owner: Owner{PID: 1}, Tags: []string{"a"}},
	} {
		if _, err := Allocate(ctx, st, req); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if s, _ := st.Load(ctx); len(s.Partitions) != 1 {
		t.Errorf("failed requests left partitions: %+v", s.Partitions)
	}
}

func TestAllocate_recordsPartition(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 3)
	ctx := context.Background()
	owner := testOwner(t)
	before := time.Now()
	p, err := Allocate(ctx, st, AllocRequest{Owner: owner, Tags: []string{"src", "dst"}, Lease: time.Hour,
		Choose: func(idle []Node) (map[string]string, error) {
			return map[string]string{"src": idle[2].Name, "dst": idle[0].Name}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Assignment{{Tag: "src", Node: "n3"}, {Tag: "dst", Node: "n1"}}
	if !partitionIDRE.MatchString(p.ID) || p.Owner != owner || !slices.Equal(p.Nodes, want) ||
		p.Created.Before(before.Add(-time.Second)) || !p.Expires.Equal(p.Created.Add(time.Hour)) {
		t.Errorf("partition = %+v", p)
	}
	s, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.NodeByTag(p.ID, "src"); err != nil || n.Name != "n3" {
		t.Errorf("stored partition: NodeByTag(src) = %v, %v", n, err)
	}
	if idle := s.IdleNodes(time.Now()); len(idle) != 1 || idle[0].Name != "n2" {
		t.Errorf("idle = %+v, want only n2", idle)
	}
}

func TestRenew(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 1)
	ctx := context.Background()
	p, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"a"}, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Renew(ctx, st, p.ID, 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Expires.After(p.Expires.Add(2*time.Hour)) || r.Renewed.Before(p.Renewed) || !r.Created.Equal(p.Created) {
		t.Errorf("renewed %+v from %+v", r, p)
	}
	parts, err := ListPartitions(ctx, st)
	if err != nil || len(parts) != 1 || !parts[0].Expires.Equal(r.Expires) {
		t.Errorf("stored: %+v, %v", parts, err)
	}
	if _, err := Renew(ctx, st, strings.Repeat("f", 32), 0); !errors.Is(err, ErrPartitionNotFound) {
		t.Errorf("unknown id: got %v", err)
	}
}

func TestRelease_idempotent(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 1)
	ctx := context.Background()
	p, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := Release(ctx, st, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := Release(ctx, st, p.ID); !errors.Is(err, ErrPartitionNotFound) {
		t.Errorf("second release: got %v, want ErrPartitionNotFound", err)
	}
	if s, _ := st.Load(ctx); len(s.IdleNodes(time.Now())) != 1 {
		t.Error("node not idle after release")
	}
}

// funcHandler is a slog handler that hands each record to fn.
type funcHandler struct{ fn func(slog.Record) }

func (h *funcHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h *funcHandler) Handle(_ context.Context, r slog.Record) error { h.fn(r); return nil }
func (h *funcHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h *funcHandler) WithGroup(string) slog.Handler                 { return h }
