package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// debugCluster is the fake cluster with what a failed test's teardown
// uses besides it: a hold, and calls to the nodes' agents answered as
// the agent would.
type debugCluster struct {
	*fakeCluster
	mu    sync.Mutex
	holds []HoldRequest
	calls []string
}

func (d *debugCluster) Hold(_ context.Context, p *Partition, req HoldRequest) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.holds = append(d.holds, req)
	return []string{"src = node1 (192.0.2.1):", "  vtcluster exec src -- sh", "end the hold: vtcluster partition release " + p.ID}, nil
}

func (d *debugCluster) CallAgent(_ context.Context, node PartitionNode, method string, args ...any) (any, error) {
	d.mu.Lock()
	d.calls = append(d.calls, node.Tag+" "+method)
	d.mu.Unlock()
	switch method {
	case "core.is_alive":
		return true, nil
	case "core.get_service_log_filename":
		return "/data/log/service.log", nil
	case "core.get_log_dir":
		return "/data/log", nil
	case "process.list":
		return []any{map[string]any{"owner": "0123456789abcdef0123456789abcdef", "pid": int64(4242), "running": true, "argv": []any{"sleep", "60"}, "exit_code": nil},
			map[string]any{"owner": "someone else", "pid": int64(7), "running": true, "argv": []any{"other"}}}, nil
	case "process.run":
		argv := args[0].([]any)
		var out string
		switch argv[0] {
		case "tail":
			out = "2000-01-01 00:00:00,000 old INFO | before the test\n" + time.Now().Format("2006-01-02 15:04:05") + ",000 a INFO | during " + argv[len(argv)-1].(string) + "\n"
		case "find":
			out = "/data/vm1/console.log\n/data/../escape/console\n"
		case "ps":
			out = "  PID  PPID  PGID USER STAT ELAPSED COMMAND\n 4242 1 4242 root S 00:01 sleep 60\n 7 1 7 root S 00:01 other\n"
		default:
			out = "output of " + argv[0].(string) + "\n"
		}
		return map[string]any{"exit_code": int64(0), "stdout": []byte(out), "stderr": []byte{}}, nil
	}
	return nil, nil
}

func runWithConfig(t *testing.T, spec, test string, cl Cluster, config string) ([]map[string]any, string) {
	t.Helper()
	s := newUnixStatusServer(t)
	out := filepath.Join(t.TempDir(), "out")
	var stderr bytes.Buffer
	Main(context.Background(), Options{
		Args: []string{runnerArgv0, "task-run", "-i", "1-" + test, "-j", "job", "-u", spec, "test=" + test,
			"output_dir=" + out, "-s", s.URI, "-c", config},
		Stderr: &stderr, Environ: os.Environ(),
		NewCluster: func(context.Context, RunConfig, *slog.Logger) (Cluster, error) { return cl, nil },
	})
	msgs := s.waitFor(hasFinished)
	return msgs, out
}

func TestHoldOnFailure_keepsTheFailedTestsPartitionAndSaysHowToReachIt(t *testing.T) {
	spec := writeSpec(t, twoNodeSpec)
	cl := &debugCluster{fakeCluster: &fakeCluster{nodes: twoNodes()}}
	msgs, out := runWithConfig(t, spec, "stepfail", cl, `{"multihost.hold_on_failure": "1h"}`)
	log := logText(msgs)
	if got := cl.releasedIDs(); len(got) != 0 {
		t.Errorf("a held partition was released: %v", got)
	}
	if len(cl.holds) != 1 || cl.holds[0].For != time.Hour || cl.holds[0].Test != "1-stepfail" || cl.holds[0].ResultsDir != out {
		t.Fatalf("holds = %+v", cl.holds)
	}
	for _, want := range []string{"HOLD: the test ended FAIL: partition 0123456789abcdef0123456789abcdef is kept for debugging until",
		"HOLD:     vtcluster exec src -- sh", "is held for debugging: not released", "timeline of this test (open in a browser): " + filepath.Join(out, "timeline.html")} {
		if !strings.Contains(log, want) {
			t.Errorf("debug log lacks %q:\n%s", want, log)
		}
	}

	// The bundle: both nodes asked, files written, only this test's
	// processes, a console name from the node made harmless.
	for _, f := range []string{"src/agent-service.log", "dst/dmesg.txt", "src/processes.txt", "dst/network.txt", "src/console/vm1_console.log", "README.txt"} {
		if _, err := os.Stat(filepath.Join(out, "failure", f)); err != nil {
			t.Errorf("bundle: %v", err)
		}
	}
	procs, _ := os.ReadFile(filepath.Join(out, "failure", "src", "processes.txt"))
	if !strings.Contains(string(procs), "4242 1 4242 root") || strings.Contains(string(procs), "other") {
		t.Errorf("processes.txt:\n%s", procs)
	}
	agentLog, _ := os.ReadFile(filepath.Join(out, "failure", "src", "agent-service.log"))
	if strings.Contains(string(agentLog), "before the test") || !strings.Contains(string(agentLog), "during /data/log/service.log") {
		t.Errorf("agent-service.log is not the test's window:\n%s", agentLog)
	}
	entries, _ := os.ReadDir(filepath.Join(out, "failure", "src", "console"))
	for _, e := range entries {
		if strings.Contains(e.Name(), "..") || strings.Contains(e.Name(), "/") {
			t.Errorf("console file named %q", e.Name())
		}
	}

	// The record: the failing step an error on its node, the hold, the bundle.
	var rec Record
	data, err := os.ReadFile(filepath.Join(out, "events.json"))
	if err != nil || json.Unmarshal(data, &rec) != nil {
		t.Fatalf("events.json: %v", err)
	}
	kinds := map[string]bool{}
	var failed []string
	for _, e := range rec.Events {
		kinds[e.Kind] = true
		if e.Kind == KindStep && e.Severity == SeverityError {
			failed = append(failed, e.Name+" "+e.Tag+" "+e.Node)
		}
	}
	if strings.Join(failed, ",") != "step 1 src node1" {
		t.Errorf("failed steps = %v", failed)
	}
	for _, k := range []string{KindAllocation, KindHandOver, KindBody, KindBundle, KindHold, KindTeardown, KindResult} {
		if !kinds[k] {
			t.Errorf("no %s event in %v", k, kinds)
		}
	}
	if rec.Result != "fail" || len(rec.Nodes) != 2 || rec.Nodes[1].Node != "node2" {
		t.Errorf("record: %s %+v", rec.Result, rec.Nodes)
	}
}

func TestHoldOnFailure_passingTestIsReleasedWithoutBundle(t *testing.T) {
	spec := writeSpec(t, twoNodeSpec)
	cl := &debugCluster{fakeCluster: &fakeCluster{nodes: twoNodes()}}
	_, out := runWithConfig(t, spec, "ok", cl, `{"multihost.hold_on_failure": "1h"}`)
	if len(cl.holds) != 0 || len(cl.releasedIDs()) != 1 {
		t.Errorf("holds %v, released %v", cl.holds, cl.releasedIDs())
	}
	// The VMs' teardown lists each node's VMs (vm.list) on every path;
	// any other agent call would be the bundle's.
	bundleCalls := slices.DeleteFunc(slices.Clone(cl.calls), func(c string) bool { return strings.HasSuffix(c, " vm.list") })
	if _, err := os.Stat(filepath.Join(out, "failure")); err == nil || len(bundleCalls) != 0 {
		t.Errorf("a passing test got a failure bundle (calls %v)", cl.calls)
	}
	if _, err := os.Stat(filepath.Join(out, "timeline.html")); err != nil {
		t.Errorf("a passing test has no timeline: %v", err)
	}
}

func TestHoldOnFailure_badSettingErrorsTheTest(t *testing.T) {
	spec := writeSpec(t, twoNodeSpec)
	cl := &debugCluster{fakeCluster: &fakeCluster{nodes: twoNodes()}}
	msgs, _ := runWithConfig(t, spec, "ok", cl, `{"multihost.hold_on_failure": "forever"}`)
	last := msgs[len(msgs)-1]
	if last["result"] != "error" || !strings.Contains(last["fail_reason"].(string), "multihost.hold_on_failure") {
		t.Errorf("finished = %v", last)
	}
}

// A test that runs into its own timeout is what one most wants to look
// at: it is bundled and held. One stopped by a signal is not.
func TestHoldOnFailure_aTestTimeoutIsHeld(t *testing.T) {
	spec := writeSpec(t, `{"tests": [{"name": "hangs", "nodes": {"src": null},
  "body": {"steps": [{"on": "src", "run": ["sleep", "30"]}]}, "timeout": 0.5}]}`)
	cl := &debugCluster{fakeCluster: &fakeCluster{nodes: twoNodes()}}
	msgs, out := runWithConfig(t, spec, "hangs", cl, `{"multihost.hold_on_failure": "10m"}`)
	if last := msgs[len(msgs)-1]; last["result"] != "interrupted" {
		t.Fatalf("finished = %v", last)
	}
	if len(cl.holds) != 1 || len(cl.releasedIDs()) != 0 {
		t.Errorf("holds %v, released %v", cl.holds, cl.releasedIDs())
	}
	if _, err := os.Stat(filepath.Join(out, "failure", "src", "processes.txt")); err != nil {
		t.Errorf("no bundle for a hung test: %v", err)
	}
}
