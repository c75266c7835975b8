package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A clock the test moves, so lease expiry is checked without sleeping.
type ownerClock struct{ t time.Time }

func (c *ownerClock) now() time.Time { return c.t }

func newOwnerSvc(tb testing.TB, path string, clk *ownerClock) *OwnerService {
	tb.Helper()
	s, err := NewOwnerService(path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	s.now = clk.now
	return s
}

var ctlA = map[string]any{"host": "ctl-a", "pid": int64(100), "pid_start": "42", "job_id": "job-a", "test_id": "1-a"}
var ctlB = map[string]any{"host": "ctl-b", "pid": int64(200), "job_id": "job-b"}

// The node refuses a second owner while the first one's lease runs,
// naming the holder; renewals keep it; the lease's end, a release or a
// replace of a holder found dead lets the next one in. The record
// survives a restart of the agent.
func TestOwnerService_defendsTheNode(t *testing.T) {
	path := filepath.Join(t.TempDir(), OwnerRecordName)
	clk := &ownerClock{t: time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)}
	s := newOwnerSvc(t, path, clk)
	proc, _ := newProcSvc(t, nil)
	proc.GuardHandOver(s.CheckHandOver)

	// Free node: the old protocol (stop_others alone) still works.
	mustCall(t, proc, "stop_others", "p0")
	mustCall(t, s, "acquire", "pa", ctlA, int64(30))
	// The holder itself may hand over to itself (idempotent retry).
	mustCall(t, s, "acquire", "pa", ctlA, int64(30))
	mustCall(t, proc, "stop_others", "pa")

	_, err := callMethod(t, s, "acquire", "pb", ctlB, int64(30))
	procWantFault(t, err, NodeHeldFault, "held by owner 'pa' of controller host ctl-a (pid 100, job 'job-a', test '1-a')")
	_, err = callMethod(t, proc, "stop_others", "pb")
	procWantFault(t, err, NodeHeldFault, "refusing to hand it to owner 'pb'")

	// Renewed past its first expiry: still held.
	clk.t = clk.t.Add(25 * time.Second)
	mustCall(t, s, "renew", "pa", int64(30))
	clk.t = clk.t.Add(25 * time.Second)
	if _, err := callMethod(t, s, "acquire", "pb", ctlB, int64(30)); err == nil {
		t.Fatal("a renewed lease was taken over")
	}

	// The agent restarts: the record keeps the holder.
	s = newOwnerSvc(t, path, clk)
	proc.GuardHandOver(s.CheckHandOver)
	_, err = callMethod(t, proc, "stop_others", "pb")
	procWantFault(t, err, NodeHeldFault, "owner 'pa'")
	if h := procMember(t, mustCall(t, s, "show"), "host"); h != "ctl-a" {
		t.Errorf("show after restart: host %v", h)
	}

	// A caller that proved the holder dead replaces it at once.
	mustCall(t, s, "acquire", "pc", ctlB, int64(30), "pa")
	// The old owner's renewals now fail: it has lost the node.
	_, err = callMethod(t, s, "renew", "pa", int64(30))
	procWantFault(t, err, NodeHeldFault, "owner 'pc'")
	// A release by someone else changes nothing; by the holder, frees it.
	if v := mustCall(t, s, "release", "pa"); v != false {
		t.Errorf("release by a non-holder: %v", v)
	}
	if v := mustCall(t, s, "release", "pc"); v != true {
		t.Errorf("release by the holder: %v", v)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("record left after release: %v", err)
	}
	mustCall(t, s, "acquire", "pb", ctlB, int64(30))

	// A holder that stops renewing (its controller died) loses the node
	// when its lease ends.
	clk.t = clk.t.Add(31 * time.Second)
	mustCall(t, s, "acquire", "pd", ctlA, int64(30))
	mustCall(t, proc, "stop_others", "pd")
}

// A renewal that reaches the agent after the hold's release (the
// runner's last health probe, sent before the release but served after it
// on its own connection, as a CPU-starved agent does) is refused and the
// node stays free; a lease that merely ran out is still taken back by its
// renewing owner.
func TestOwnerService_lateRenewalDoesNotHoldAReleasedNode(t *testing.T) {
	clk := &ownerClock{t: time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)}
	s := newOwnerSvc(t, filepath.Join(t.TempDir(), OwnerRecordName), clk)
	mustCall(t, s, "acquire", "pa", ctlA, int64(30))
	if got := mustCall(t, s, "release", "pa"); got != true {
		t.Fatalf("release: %v", got)
	}
	_, err := callMethod(t, s, "renew", "pa", int64(30))
	if err == nil || !strings.Contains(err.Error(), NodeReleasedFault) {
		t.Fatalf("renewal after the release: %v; want a %s fault", err, NodeReleasedFault)
	}
	if s.cur != nil {
		t.Fatalf("the late renewal held the released node again: %+v", s.cur)
	}
	// Another owner gets the node at once.
	mustCall(t, s, "acquire", "pb", ctlB, int64(30))
	mustCall(t, s, "release", "pb")

	// Not released, only expired: the renewing owner holds it again.
	mustCall(t, s, "acquire", "pc", ctlA, int64(30))
	clk.t = clk.t.Add(time.Minute)
	mustCall(t, s, "renew", "pc", int64(30))
	if s.cur == nil || s.cur.ID != "pc" || !clk.t.Before(s.cur.Expires) {
		t.Fatalf("an expired lease was not renewed: %+v", s.cur)
	}
	// Only the last releasedKept ids are remembered.
	for i := range releasedKept + 1 {
		id := fmt.Sprintf("q%d", i)
		mustCall(t, s, "acquire", id, ctlA, int64(30), "pc")
		mustCall(t, s, "release", id)
	}
	if len(s.released) != releasedKept || slices.Contains(s.released, "q0") {
		t.Errorf("remembered %v; want the last %d", s.released, releasedKept)
	}
}

func TestOwnerService_badArguments(t *testing.T) {
	s := newOwnerSvc(t, filepath.Join(t.TempDir(), OwnerRecordName), &ownerClock{t: time.Now()})
	for _, tc := range []struct {
		args    []any
		exc, in string
	}{
		{[]any{"p", ctlA, int64(0)}, "ValueError", "lease_seconds must be within"},
		{[]any{"p", ctlA, int64(7200)}, "ValueError", "lease_seconds must be within"},
		{[]any{"p", ctlA, "30"}, "TypeError", "must be int or float"},
		{[]any{"p", "ctl", int64(30)}, "TypeError", "argument 'holder' must be dict"},
		{[]any{"", ctlA, int64(30)}, "ValueError", "owner id is empty"},
	} {
		_, err := callMethod(t, s, "acquire", tc.args...)
		procWantFault(t, err, tc.exc, tc.in)
	}
	// A record that cannot be read keeps the agent from starting rather
	// than leaving the node open to anyone.
	bad := filepath.Join(t.TempDir(), OwnerRecordName)
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewOwnerService(bad, nil); err == nil {
		t.Error("a corrupt owner record was accepted")
	}
}
