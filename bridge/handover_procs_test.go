package bridge

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kolo/xmlrpc"
	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/cluster/lab"
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
	req := func(test string) runner.AllocRequest {
		return runner.AllocRequest{JobID: "job-1", TestID: test, Nodes: []runner.NodeSpec{{Tag: "a"}}}
	}

	first := openBackend(ctx, t, c)
	p1, err := first.Allocate(ctx, req("1-first"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p1.HandOver) != 0 {
		t.Fatalf("a clean node reported leftovers: %v", p1.HandOver)
	}
	left := startTestSleep(t, p1, h)
	// The link is lost: the test's teardown cannot reach the node, and
	// its partition is released without anything being stopped there.
	if err := first.Release(ctx, p1); err != nil {
		t.Fatal(err)
	}
	if len(netnsProcs(t, h, "sleep", "600")) != 1 {
		t.Fatal("precondition: the leftover should still run")
	}

	p2, err := openBackend(ctx, t, c).Allocate(ctx, req("2-second"))
	if err != nil {
		t.Fatal(err)
	}
	if pids := netnsProcs(t, h, "sleep", "600"); len(pids) != 0 {
		t.Fatalf("the earlier test's sleep still runs on the next test's node: %v", pids)
	}
	want := "stopped ['sleep', '600'] (pid " + strconv.Itoa(left) + ", owner " + p1.ID + ", exit status -15), left by an earlier test"
	if len(p2.HandOver) != 1 || !strings.Contains(p2.HandOver[0], want) || !strings.HasPrefix(p2.HandOver[0], "node "+h.Name+": ") {
		t.Fatalf("hand-over report %q, want one line containing %q", p2.HandOver, want)
	}
}

// openBackend opens the runner's backend on c's state, as a job does,
// closed when t ends.
func openBackend(ctx context.Context, t *testing.T, c *cliCluster) runner.Cluster {
	cl, err := runner.OpenBackend(ctx, runner.RunConfig{StateDir: c.stateDir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.(io.Closer).Close() })
	return cl
}

// startTestSleep starts `sleep 600` for partition p on its first node h,
// as a test body does (`vtcluster exec`, the Python API: through the
// test's agent proxy), and returns its pid once it runs.
func startTestSleep(t *testing.T, p *runner.Partition, h lab.Host) int {
	kc, err := xmlrpc.NewClient(p.Nodes[0].AgentURL, &http.Transport{ResponseHeaderTimeout: hangGuard})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	var id string
	if err := kc.Call("process.start", []any{[]any{"sleep", "600"}, map[string]any{"owner": p.ID}}, &id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the test's sleep 600 on the node", func() bool { return len(netnsProcs(t, h, "sleep", "600")) == 1 })
	return netnsProcs(t, h, "sleep", "600")[0]
}

// TestHandOver_agentKilledThenRestarted: what a SIGKILLed agent started
// does not outlive it. The command's first process dies with the agent
// (parent-death signal); the rest of its group is stopped by the next
// agent, from the record in the data dir, and the next agent logs it.
func TestHandOver_agentKilledThenRestarted(t *testing.T) {
	c := newCLICluster(t, 1, nil)
	c.bootstrap(t)
	c.mustCLI(t, "agents", "start")
	h := c.lab.Hosts[0]
	// The leader (sh) waits on a sleep in its group; a second sleep is
	// detached by the user and must survive everything.
	c.mustCLI(t, "call", h.Name, "process.start", `["sh", "-c", "setsid sleep 601 & sleep 600 & wait"]`, `{"owner": "p-killed"}`)
	waitFor(t, "both sleeps on the node", func() bool {
		return len(netnsProcs(t, h, "sleep", "600")) == 1 && len(netnsProcs(t, h, "sleep", "601")) == 1
	})
	detached := netnsProcs(t, h, "sleep", "601")[0]
	t.Cleanup(func() { _ = unix.Kill(detached, unix.SIGKILL) })
	left := netnsProcs(t, h, "sleep", "600")[0]
	for _, pid := range agentPIDs(t, h) {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the agent and its command's first process gone", func() bool {
		return len(agentPIDs(t, h)) == 0 && len(netnsProcs(t, h, "sh", "-c", "setsid sleep 601 & sleep 600 & wait")) == 0
	})
	if pids := netnsProcs(t, h, "sleep", "600"); len(pids) != 1 {
		t.Fatalf("precondition: the group member should outlive the agent alone, got %v", pids)
	}

	c.mustCLI(t, "agents", "start")
	if pids := netnsProcs(t, h, "sleep", "600"); len(pids) != 0 {
		t.Fatalf("what the dead agent started still runs after a new agent started: %v", pids)
	}
	if pids := netnsProcs(t, h, "sleep", "601"); len(pids) != 1 || pids[0] != detached {
		t.Fatalf("the process the user detached with setsid was stopped: %v", pids)
	}
	dir := t.TempDir()
	c.mustCLI(t, "logs", "fetch", "--dir", dir, h.Name)
	var logs strings.Builder
	files, _ := filepath.Glob(filepath.Join(dir, h.Name, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		logs.Write(b)
	}
	if !strings.Contains(logs.String(), "left by the previous agent") || !strings.Contains(logs.String(), "pids ["+strconv.Itoa(left)+"], started") {
		t.Fatalf("the new agent's log does not say what it stopped (%v):\n%s", files, logs.String())
	}
}
