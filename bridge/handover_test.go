package bridge

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/kolo/xmlrpc"

	"github.com/vtcluster/vtcluster/runner"
)

// TestHandOver_earlierTestsLeftoverIsStopped: a test starts `sleep 600` on
// its node and its teardown never reaches the node (a lost link: the
// partition is dropped, nothing is stopped there). The next test on that
// node finds nothing of it running, and its log names what was stopped.
func TestHandOver_earlierTestsLeftoverIsStopped(t *testing.T) {
	c := newCLICluster(t, 1, nil)
	c.bootstrap(t)
	c.mustCLI(t, "agents", "start")
	h := c.lab.Hosts[0]
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	open := func() runner.Cluster {
		cl, err := runner.OpenBackend(ctx, runner.RunConfig{StateDir: c.stateDir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.(io.Closer).Close() })
		return cl
	}
	req := func(test string) runner.AllocRequest {
		return runner.AllocRequest{JobID: "job-1", TestID: test, Nodes: []runner.NodeSpec{{Tag: "a"}}}
	}

	first := open()
	p1, err := first.Allocate(ctx, req("1-first"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p1.HandOver) != 0 {
		t.Fatalf("a clean node reported leftovers: %v", p1.HandOver)
	}
	// The body starts a process for its partition, as `vtcluster exec`
	// and the Python API do, through the test's agent proxy.
	kc, err := xmlrpc.NewClient(p1.Nodes[0].AgentURL, &http.Transport{ResponseHeaderTimeout: hangGuard})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	var id string
	if err := kc.Call("process.start",
		[]any{[]any{"sleep", "600"}, map[string]any{"owner": p1.ID}}, &id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "sleep 600 on the node", func() bool { return len(netnsProcs(t, h, "sleep", "600")) == 1 })
	left := netnsProcs(t, h, "sleep", "600")[0]
	// The link is lost: the test's teardown cannot reach the node, and
	// its partition is released without anything being stopped there.
	if err := first.Release(ctx, p1); err != nil {
		t.Fatal(err)
	}
	if len(netnsProcs(t, h, "sleep", "600")) != 1 {
		t.Fatal("precondition: the leftover should still run")
	}

	p2, err := open().Allocate(ctx, req("2-second"))
	if err != nil {
		t.Fatal(err)
	}
	if pids := netnsProcs(t, h, "sleep", "600"); len(pids) != 0 {
		t.Fatalf("the earlier test's sleep still runs on the next test's node: %v", pids)
	}
	want := "stopped [sleep 600] (pid " + strconv.Itoa(left) + ", owner " + p1.ID + ", exit status -15), left by an earlier test"
	if len(p2.HandOver) != 1 || !strings.Contains(p2.HandOver[0], want) || !strings.HasPrefix(p2.HandOver[0], "node "+h.Name+": ") {
		t.Fatalf("hand-over report %q, want one line containing %q", p2.HandOver, want)
	}
}
