package runner

// Steps that act on a test's VMs:
//
//	{"vm": "vm1", "wait_console": "tick [0-9]+", "timeout": 60}
//	{"vm": "vm1", "qmp": "query-status", "arguments": {...}, "expect": {"status": "running"}}
//	{"vm": "vm1", "migrate": "dst", "max_bandwidth": 1000000000, "downtime_limit_ms": 300,
//	 "timeout": 120, "port": 1}
//
// wait_console matches from where the previous wait on the same VM (on
// the same node) matched. expect passes when the QMP return holds it: an
// object every key of which matches, recursively; other values equal.
// migrate's target defaults to the VM's migrate_to (mig_dest_node_<vm>);
// port replaces the destination's listening port in the URI, to test a
// migration that cannot connect.

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/agent/vm"
)

// VMStep is a step on a VM.
type VMStep struct {
	VM   string
	Kind string // wait_console, qmp or migrate
	// Pattern is wait_console's regular expression (RE2).
	Pattern string
	// Command, Arguments (JSON object text, "" for none) and Expect (JSON
	// text, "" for no check) are qmp's.
	Command, Arguments, Expect string
	// To, MaxBandwidth, DowntimeLimitMs and Port are migrate's.
	To              string
	MaxBandwidth    int64
	DowntimeLimitMs int64
	Port            int
	Timeout         time.Duration
}

const (
	defaultConsoleWait = 60 * time.Second
	defaultMigrateWait = 120 * time.Second
)

func (l *specLoader) vmStep(v *jsonValue, p string, t *Test) Step {
	st := &VMStep{}
	kinds := 0
	for _, m := range v.Members {
		at := jsonPath(p, m.Key)
		switch m.Key {
		case "vm":
			st.VM = l.str(m.Value, at)
			if _, ok := t.vmSpec(st.VM); m.Value.Kind == py.JSONString && !ok {
				l.errorf(at, "the test declares no VM %q", st.VM)
			}
		case "wait_console":
			kinds++
			st.Kind, st.Pattern = m.Key, l.str(m.Value, at)
			if _, err := regexp.Compile(st.Pattern); err != nil {
				l.errorf(at, "not a regular expression: %v", err)
			}
		case "qmp":
			kinds++
			st.Kind, st.Command = m.Key, l.str(m.Value, at)
		case "arguments":
			if m.Value.Kind != py.JSONObject {
				l.errorf(at, "expected an object, got %s", m.Value.Describe())
			}
			st.Arguments, _ = compact(m.Value)
		case "expect":
			st.Expect, _ = compact(m.Value)
		case "migrate":
			kinds++
			st.Kind, st.To = m.Key, l.str(m.Value, at)
			if m.Value.Kind == py.JSONString && !t.hasTag(st.To) {
				l.errorf(at, "unknown node tag %q (%s)", st.To, t.nodeList())
			}
		case "max_bandwidth":
			st.MaxBandwidth = int64(l.intIn(m.Value, at, 1, 1<<40))
		case "downtime_limit_ms":
			st.DowntimeLimitMs = int64(l.intIn(m.Value, at, 1, 3600000))
		case "port":
			st.Port = l.intIn(m.Value, at, 1, 65535)
		case "timeout":
			st.Timeout = l.seconds(m.Value, at)
		default:
			l.errorf(at, "unknown key (a VM step has vm, one of wait_console, qmp, migrate, and: timeout, arguments, expect, max_bandwidth, downtime_limit_ms, port)")
		}
	}
	if kinds != 1 {
		l.errorf(p, "a VM step does exactly one of wait_console, qmp and migrate")
	}
	if s, ok := t.vmSpec(st.VM); ok && st.Kind == "migrate" && st.To == "" {
		st.To = s.MigrateTo
	}
	return Step{VM: st}
}

// runVMStep runs step n on a VM; ok is false when the test must stop.
func (r *testRun) runVMStep(ctx context.Context, cl Cluster, p *Partition, n int, st *VMStep) (outcome, bool) {
	vc, ok := cl.(agentCaller)
	if !ok || r.vms == nil {
		return outcome{Result: resultError, Reason: "runner: this test has VMs but the cluster backend cannot reach the agents' vm service"}, false
	}
	tag := r.vms.where(st.VM)
	node, _ := p.Node(tag)
	call := func(ctx context.Context, method string, args ...any) (any, error) {
		return vc.CallAgent(ctx, node, method, args...)
	}
	prefix := fmt.Sprintf("step %d: vm %s on %s (%s)", n, st.VM, tag, node.Name)
	failf := func(format string, args ...any) (outcome, bool) {
		if ctx.Err() != nil {
			return interruptOutcome(ctx), false
		}
		return outcome{Result: resultFail, Reason: prefix + ": " + fmt.Sprintf(format, args...)}, false
	}
	switch st.Kind {
	case "wait_console":
		d := st.Timeout
		if d == 0 {
			d = defaultConsoleWait
		}
		r.logf(ctx, "%s: waiting up to %s s for %s on the console", prefix, seconds(d), py.Repr(st.Pattern))
		v, err := call(ctx, "vm.wait_console", st.VM, st.Pattern, d.Seconds(), r.vms.offset(st.VM))
		if err != nil {
			return failf("%s", faultText(err))
		}
		m, err := vm.Decode[vm.ConsoleMatch](v)
		if err != nil {
			return failf("%v", err)
		}
		if !m.Matched {
			return failf("%s did not appear on the console within %s s", py.Repr(st.Pattern), seconds(d))
		}
		r.vms.setOffset(st.VM, m.Offset)
		r.logf(ctx, "%s: console: %s", prefix, m.Line)
	case "qmp":
		r.logf(ctx, "%s: QMP %s %s", prefix, st.Command, st.Arguments)
		qctx, cancel := ctx, context.CancelFunc(func() {})
		if st.Timeout > 0 {
			qctx, cancel = context.WithTimeout(ctx, st.Timeout)
		}
		v, err := call(qctx, "vm.qmp", st.VM, st.Command, st.Arguments)
		cancel()
		if err != nil {
			return failf("QMP %s: %s", st.Command, faultText(err))
		}
		ret, _ := v.(string)
		r.logf(ctx, "%s: QMP %s returned %s", prefix, st.Command, ret)
		if st.Expect != "" {
			var got, want any
			if err := json.Unmarshal([]byte(ret), &got); err != nil {
				return failf("QMP %s returned no JSON: %v", st.Command, err)
			}
			_ = json.Unmarshal([]byte(st.Expect), &want)
			if !jsonContains(got, want) {
				return failf("QMP %s returned %s, which does not match the expected %s", st.Command, ret, st.Expect)
			}
		}
	case "migrate":
		if st.To == "" {
			return outcome{Result: resultError, Reason: prefix + ": migrate names no destination (give \"migrate\": TAG or the VM's migrate_to)"}, false
		}
		if st.To == tag {
			return failf("the VM already runs on %s", tag)
		}
		spec, _ := r.test.vmSpec(st.VM)
		dest, _ := p.Node(st.To)
		dspec, err := spec.resolve(p, st.To)
		if err != nil {
			return outcome{Result: resultError, Reason: prefix + ": " + err.Error()}, false
		}
		d := st.Timeout
		if d == 0 {
			d = defaultMigrateWait
		}
		mctx, cancel := context.WithTimeout(ctx, d+destRunningTimeout)
		defer cancel()
		res, err := MigrateVM(mctx, MigrateRequest{
			VM: st.VM, From: r.vmNode(vc, node), To: r.vmNode(vc, dest), DestSpec: dspec, Port: st.Port,
			Options: vm.MigrateOptions{MaxBandwidth: st.MaxBandwidth, DowntimeLimitMs: st.DowntimeLimitMs, TimeoutS: d.Seconds()},
			Logf:    func(format string, args ...any) { r.logf(ctx, format, args...) },
		})
		if res.URI != "" {
			// The destination was started: it is the test's to stop,
			// whatever came of the migration.
			r.vms.addPlace(st.VM, st.To)
		}
		if err != nil {
			if ctx.Err() != nil {
				return interruptOutcome(ctx), false
			}
			return outcome{Result: resultFail, Reason: fmt.Sprintf("step %d: %v", n, err)}, false
		}
		r.vms.migrated(st.VM, st.To, res)
		r.reportMigrations(ctx)
	}
	return outcome{}, true
}

func (r *testRun) vmNode(vc agentCaller, n PartitionNode) VMNode {
	return VMNode{Tag: n.Tag, Name: n.Name, Address: n.Address,
		Call: func(ctx context.Context, method string, args ...any) (any, error) {
			return vc.CallAgent(ctx, n, method, args...)
		}}
}

// jsonContains: want's object keys all match in got, recursively; other
// values are equal.
func jsonContains(got, want any) bool {
	wm, ok := want.(map[string]any)
	if !ok {
		return reflect.DeepEqual(got, want)
	}
	gm, ok := got.(map[string]any)
	if !ok {
		return false
	}
	for k, wv := range wm {
		gv, ok := gm[k]
		if !ok || !jsonContains(gv, wv) {
			return false
		}
	}
	return true
}
