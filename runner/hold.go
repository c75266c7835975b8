package runner

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/cluster"
)

// Hold on failure: with multihost.hold_on_failure set, a test that fails
// or errors keeps its partition (nodes, resources, VMs, and whatever its
// processes left running) for that long instead of tearing it down, and
// its debug.log says how to reach each node. The hold is a lease in the
// cluster state, not a process: it ends by itself when its time is up
// (the next allocation reclaims it), or with "vtcluster partition release".

// holder is implemented by clusters that can keep a failed test's
// partition.
type holder interface {
	// Hold keeps p as req says, stops renewing its lease (the hold's end
	// is now its lease) and returns the command lines that reach its
	// nodes.
	Hold(ctx context.Context, p *Partition, req HoldRequest) ([]string, error)
}

// HoldRequest says how long to keep a partition and for which test.
type HoldRequest struct {
	For                      time.Duration
	Test, Reason, ResultsDir string
}

// holdSetting reads multihost.hold_on_failure: a Go duration ("2h",
// "90m"), plain seconds, or 0, "", "no", "off", "false" for none.
func holdSetting(v any, dst *time.Duration) error {
	bad := func() error {
		return fmt.Errorf("runner: setting multihost.hold_on_failure: expected a duration such as 2h, 30m or 90s (at most %s), or 0 for none; got %s",
			cluster.MaxHold, py.Repr(v))
	}
	var d time.Duration
	switch v := v.(type) {
	case nil:
		return nil
	case bool:
		if v {
			return bad()
		}
	case int64:
		d = time.Duration(v) * time.Second
		if v > int64(cluster.MaxHold/time.Second) {
			return bad()
		}
	case float64:
		if math.IsNaN(v) || v > cluster.MaxHold.Seconds() {
			return bad()
		}
		d = time.Duration(v * float64(time.Second))
	case string:
		s := strings.ToLower(strings.TrimSpace(v))
		switch s {
		case "", "0", "no", "off", "false", "none":
			return nil
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return holdSetting(f, dst)
		}
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return bad()
		}
	default:
		return bad()
	}
	if d < 0 || d > cluster.MaxHold {
		return bad()
	}
	*dst = d
	return nil
}

// holdStage runs on the way out, after the failure bundle and before the
// resources and the partition are given back, which it stops by setting
// rs.held.
func (r *testRun) holdStage(ctx context.Context, rs *runState, out *outcome) {
	d := r.cfg.HoldOnFailure
	if d == 0 || !worthDebugging(ctx, *out) || rs.part.ID == "" {
		return
	}
	h, ok := rs.cl.(holder)
	if !ok {
		r.logf(ctx, "hold on failure: this cluster backend cannot keep partitions; tearing down as usual")
		return
	}
	hctx, cancel := teardownCtx(ctx, releaseTimeout)
	defer cancel()
	test := r.taskID
	if test == "" {
		test = r.test.Name
	}
	lines, err := h.Hold(hctx, rs.part, HoldRequest{For: d, Test: test, Reason: out.Reason, ResultsDir: r.outputDir})
	if err != nil {
		r.logf(ctx, "hold on failure: cannot keep partition %s (%v); tearing it down as usual", rs.part.ID, err)
		r.events.Add(Event{Kind: KindHold, Name: "hold failed", Detail: err.Error(), Severity: SeverityWarning})
		return
	}
	rs.held = true
	until := time.Now().Add(d).Format(time.DateTime)
	r.logf(ctx, "HOLD: the test ended %s: partition %s is kept for debugging until %s (multihost.hold_on_failure = %s), with its nodes, resources and VMs",
		strings.ToUpper(out.Result), rs.part.ID, until, d)
	for _, l := range lines {
		r.logf(ctx, "HOLD:   %s", l)
	}
	r.events.Add(Event{Kind: KindHold, Name: "held for debugging", Detail: "until " + until + "\n" + strings.Join(lines, "\n"), Severity: SeverityWarning})
}

// worthDebugging says whether a test's end calls for the failure bundle
// and a hold: it failed, errored (a lost node included), or ran into its
// own timeout (a hang is what one most wants to look at). A test stopped
// by a signal (Ctrl-C, the job's timeout) is not: someone wants it over.
func worthDebugging(ctx context.Context, out outcome) bool {
	switch out.Result {
	case resultFail, resultError:
		return true
	case resultInterrupted:
		return ctx.Err() == nil
	}
	return false
}

// keepHeld is the partition stage's teardown when the partition is held.
func (r *testRun) keepHeld(ctx context.Context, rs *runState) {
	r.logf(ctx, "partition %s is held for debugging: not released (see the HOLD lines above)", rs.part.ID)
}
