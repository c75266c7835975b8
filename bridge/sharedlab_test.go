package bridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/runner"
)

// Two controllers with separate state files on the same lab hosts (the
// mistake issue 20 describes): the second one's test does not get the
// node the first one's test runs on. It fails naming the other
// controller's host, and the first test's process runs on untouched. Once
// the first test releases the node, the second controller gets it.
func TestSharedLab_twoControllersSeparateStates(t *testing.T) {
	c1 := newCLICluster(t, 1, nil)
	c1.bootstrap(t)
	c1.mustCLI(t, "agents", "start")
	t.Cleanup(func() { c1.cli(t, "agents", "stop") })
	c2 := clusterOn(t, c1.lab, nil)
	c2.bootstrap(t)
	c2.mustCLI(t, "agents", "start") // reuses the running agent
	h := c1.lab.Hosts[0]

	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	req := func(test string) runner.AllocRequest {
		return runner.AllocRequest{JobID: "job-" + test, TestID: test, Nodes: []runner.NodeSpec{{Tag: "a"}}}
	}
	first := openBackend(ctx, t, c1)
	p1, err := first.Allocate(ctx, req("1-first"))
	if err != nil {
		t.Fatal(err)
	}
	pid := startTestSleep(t, p1, h)

	// The second controller's state says the node is free; the node says
	// otherwise.
	var said []string
	r2 := req("2-second")
	r2.Waiting = func(msg string) { said = append(said, msg) }
	actx, acancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = openBackend(ctx, t, c2).Allocate(actx, r2)
	acancel()
	host, _ := os.Hostname()
	if err == nil || !errors.Is(err, cluster.ErrBusy) || !strings.Contains(err.Error(), "held by controller host "+host+" (partition "+p1.ID) {
		t.Fatalf("second controller's allocation: %v", err)
	}
	if len(said) == 0 || !strings.Contains(said[0], `node "`+h.Name+`" is held by controller host `+host) {
		t.Errorf("the waiting test's log lines do not name the other holder: %q", said)
	}
	if pids := netnsProcs(t, h, "sleep", "600"); len(pids) != 1 || pids[0] != pid {
		t.Fatalf("the first test's process was touched by the second controller: %v, want [%d]", pids, pid)
	}
	// status of the second controller shows the node as held elsewhere.
	if out := c2.mustCLI(t, "status"); !strings.Contains(out, h.Name+": held by another controller: partition "+p1.ID) {
		t.Errorf("status does not show the node held by the other controller:\n%s", out)
	}

	// Nor does the second controller's agent stop (a job's post-tests
	// hook) pull the agent from under the first test.
	code, out, errOut := c2.cli(t, "agents", "stop")
	if code != 0 || !strings.Contains(out+errOut, "left running: held by controller host "+host+" (partition "+p1.ID) {
		t.Errorf("agents stop of the second controller: exit %d\n%s%s", code, out, errOut)
	}
	if len(agentPIDs(t, h)) != 1 || len(netnsProcs(t, h, "sleep", "600")) != 1 {
		t.Fatal("the second controller's agents stop stopped the first test's agent or process")
	}

	// The first test ends and releases the node; the second controller
	// gets it once its note of the other holder ends.
	if err := first.Release(ctx, p1); err != nil {
		t.Fatal(err)
	}
	actx, acancel = context.WithTimeout(ctx, cluster.NodeLease+30*time.Second)
	defer acancel()
	p2, err := openBackend(ctx, t, c2).Allocate(actx, req("3-later"))
	if err != nil {
		t.Fatalf("after the first controller released the node: %v", err)
	}
	if len(p2.HandOver) != 1 || !strings.Contains(p2.HandOver[0], "owner "+p1.ID) {
		t.Errorf("hand-over report %q, want the first test's sleep", p2.HandOver)
	}
}

// A node whose agent cannot start is counted at each job's start and
// quarantined at the configured count; it is then skipped (its agent not
// started, never given to a test), shown in status, and back in rotation
// after node resume.
func TestSharedLab_agentThatCannotStartIsQuarantined(t *testing.T) {
	c := newCLICluster(t, 2, nil)
	c.bootstrap(t)
	good, bad := c.lab.Hosts[0], c.lab.Hosts[1]
	t.Cleanup(func() { c.cli(t, "agents", "stop") })
	var binPath string
	for _, n := range jsonOut(t, c.mustCLI(t, "node", "list", "--json")).Array() {
		if n.Get("name").String() == bad.Name {
			binPath = filepath.Join(n.Get("agent_base_dir").String(), bad.Name, "vtcluster")
		}
	}
	orig, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	// Lab hosts share this file system: the node's agent binary is broken
	// as a bad deploy or a full disk would leave it.
	if err := os.WriteFile(binPath+".new", []byte("#!/bin/sh\necho cannot start >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(binPath+".new", binPath); err != nil {
		t.Fatal(err)
	}
	hook := func(job string) (int, string) {
		code, _, errOut := c.cli(t, "hooks", "pre-tests", "--job-id", job, "--job-logdir", t.TempDir(), "--quarantine-after", "2")
		return code, errOut
	}
	if code, errOut := hook("j1"); code == 0 {
		t.Fatalf("first job started with a node whose agent cannot start:\n%s", errOut)
	}
	if out := c.mustCLI(t, "status"); !strings.Contains(out, bad.Name+": 1 failure(s) in a row, last: agent would not start") {
		t.Errorf("status after one failure:\n%s", out)
	}
	code, errOut := hook("j2")
	if code != 0 || !strings.Contains(errOut, "node "+bad.Name+" is quarantined") {
		t.Fatalf("second job: exit %d (want 0: the sick node is out, the others serve)\n%s", code, errOut)
	}
	st := jsonOut(t, c.mustCLI(t, "status", "--json"))
	for _, n := range st.Array() {
		if n.Get("node").String() == bad.Name && (!n.Get("quarantined").Bool() || !strings.Contains(n.Get("quarantine_reason").String(), "failed to serve 2 times in a row")) {
			t.Errorf("status --json of the quarantined node: %s", n.Raw)
		}
	}
	code, errOut = hook("j3")
	if code != 0 || !strings.Contains(errOut, "node "+bad.Name+" is quarantined (") {
		t.Fatalf("third job: exit %d\n%s", code, errOut)
	}

	// Tests never get it: a one-node test gets the good node, every time;
	// a two-node test waits and says why.
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cl, err := runner.OpenBackend(ctx, runner.RunConfig{StateDir: c.stateDir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	for i := range 2 {
		p, err := cl.Allocate(ctx, runner.AllocRequest{JobID: "j3", TestID: "t", Nodes: []runner.NodeSpec{{Tag: "a"}}})
		if err != nil {
			t.Fatal(err)
		}
		if p.Nodes[0].Name != good.Name {
			t.Fatalf("allocation %d got %s, the quarantined node", i, p.Nodes[0].Name)
		}
		cl.Release(ctx, p)
	}
	actx, acancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = cl.Allocate(actx, runner.AllocRequest{JobID: "j3", TestID: "t2", Nodes: []runner.NodeSpec{{Tag: "a"}, {Tag: "b"}}})
	acancel()
	if err == nil || !strings.Contains(err.Error(), `node "`+bad.Name+`" is quarantined: failed to serve 2 times in a row`) {
		t.Fatalf("two-node allocation with one node quarantined: %v", err)
	}

	// Fixed and resumed: back in rotation.
	if err := os.WriteFile(binPath+".new", orig, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(binPath+".new", binPath); err != nil {
		t.Fatal(err)
	}
	c.mustCLI(t, "node", "resume", bad.Name)
	if code, errOut := hook("j4"); code != 0 {
		t.Fatalf("job after resume: exit %d\n%s", code, errOut)
	}
	p, err := cl.Allocate(ctx, runner.AllocRequest{JobID: "j4", TestID: "t", Nodes: []runner.NodeSpec{{Tag: "a"}, {Tag: "b"}}})
	if err != nil {
		t.Fatalf("two-node allocation after resume: %v", err)
	}
	cl.Release(ctx, p)
}
