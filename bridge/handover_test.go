package bridge

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster/lab"
)

// setLink takes a lab host's link to the bridge down or up from the root
// namespace, as a pulled cable would: the host keeps running.
func setLink(tb testing.TB, h lab.Host, up bool) {
	tb.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command("ip", "link", "set", h.Veth, state).CombinedOutput(); err != nil {
		tb.Fatalf("ip link set %s %s: %v\n%s", h.Veth, state, err, out)
	}
}

// A job's post hook with one node's link down ends in seconds, names the
// node once, and still fetches the logs of and stops the other agents.
func TestCLI_hooksPostTests_lostNodeDoesNotHoldTheJob(t *testing.T) {
	c := newCLICluster(t, 2, nil)
	live, lost := c.lab.Hosts[0], c.lab.Hosts[1]
	c.bootstrap(t)
	logdir := t.TempDir()
	c.mustCLI(t, "hooks", "pre-tests", "--job-id", "job1", "--job-logdir", logdir)
	t.Cleanup(func() {
		setLink(t, lost, true)
		c.cli(t, "agents", "stop")
	})
	setLink(t, lost, false)

	start := time.Now()
	code, _, errOut := c.cli(t, "hooks", "post-tests", "--job-id", "job1", "--job-logdir", logdir)
	took := time.Since(start)
	t.Logf("post-tests with %s down took %s", lost.Name, took)
	if code != 1 {
		t.Errorf("post-tests exit %d, want 1 (a node was not cleaned up); stderr:\n%s", code, errOut)
	}
	// The job must end within 20 s of its last test; the hook is most of
	// what runs after it.
	if took > 10*time.Second {
		t.Errorf("post-tests took %s with %s's link down; stderr:\n%s", took, lost.Name, errOut)
	}
	if n := strings.Count(errOut, `"`+lost.Name+`"`) + strings.Count(errOut, " "+lost.Name+":"); n != 1 {
		t.Errorf("the lost node is named %d times, want once; stderr:\n%s", n, errOut)
	}
	if !strings.Contains(errOut, "unreachable") {
		t.Errorf("stderr does not say the node is unreachable:\n%s", errOut)
	}
	if _, err := os.Stat(filepath.Join(logdir, "cluster", live.Name, "agent.log")); err != nil {
		t.Errorf("the live node's agent log was not fetched: %v", err)
	}
	if pids := agentPIDs(t, live); len(pids) != 0 {
		t.Errorf("the live node's agent still runs: %v", pids)
	}
	if pids := agentPIDs(t, lost); len(pids) != 1 {
		t.Errorf("the lost node's agent: %v, want it left alone (unreachable)", pids)
	}
}

// agents cleanup stops the agent and removes its directory, refuses while
// a live partition holds the node, and node remove --cleanup does both.
func TestCLI_agentsCleanup_andNodeRemoveCleanup(t *testing.T) {
	c := newCLICluster(t, 2, nil)
	h1, h2 := c.lab.Hosts[0], c.lab.Hosts[1]
	c.bootstrap(t)
	c.mustCLI(t, "agents", "start")
	t.Cleanup(func() { c.cli(t, "agents", "stop") })
	agentDir := func(h lab.Host) string {
		out := c.mustCLI(t, "node", "list", "--json")
		for _, n := range jsonOut(t, out).Array() {
			if n.Get("name").String() == h.Name {
				return filepath.Join(n.Get("agent_base_dir").String(), h.Name)
			}
		}
		t.Fatalf("node %s not listed", h.Name)
		return ""
	}
	dirExists := func(h lab.Host, dir string) bool {
		// Lab hosts share the controller's file system; only the
		// network is theirs.
		_, err := os.Stat(dir)
		return err == nil
	}
	d1 := agentDir(h1)
	if !dirExists(h1, d1) {
		t.Fatalf("agent dir %s not deployed", d1)
	}

	// Held by a live partition (this test process owns it): refused,
	// nothing touched.
	owner, id := startOwner(t, c.stateDir, "--tag", "a", "--selectors",
		fmt.Sprintf("[{'key': 'hostname', 'operator': '==', 'values': '%s'}]", h1.Hostname))
	code, _, errOut := c.cli(t, "agents", "cleanup", h1.Name)
	if code != 1 || !strings.Contains(errOut, "is held by partition "+id) {
		t.Errorf("cleanup of a held node: exit %d, stderr:\n%s", code, errOut)
	}
	if len(agentPIDs(t, h1)) != 1 || !dirExists(h1, d1) {
		t.Error("a refused cleanup touched the node")
	}
	killOwner(t, owner)

	out := c.mustCLI(t, "agents", "cleanup", "--json", h1.Name)
	res := jsonOut(t, out)
	if !res.Get("0.ok").Bool() || res.Get("0.node").String() != h1.Name {
		t.Errorf("cleanup --json: %s", out)
	}
	if pids := agentPIDs(t, h1); len(pids) != 0 {
		t.Errorf("agent still runs after cleanup: %v", pids)
	}
	if dirExists(h1, d1) {
		t.Errorf("%s still exists after cleanup", d1)
	}
	// Cleaning up a node already clean is not an error.
	c.mustCLI(t, "agents", "cleanup", h1.Name)

	d2 := agentDir(h2)
	c.mustCLI(t, "node", "remove", "--cleanup", h2.Name)
	if pids := agentPIDs(t, h2); len(pids) != 0 || dirExists(h2, d2) {
		t.Errorf("node remove --cleanup left agent %v / dir exists %v", pids, dirExists(h2, d2))
	}
	if out := c.mustCLI(t, "node", "list", "--json"); strings.Contains(out, `"`+h2.Name+`"`) {
		t.Errorf("node still registered:\n%s", out)
	}
}
