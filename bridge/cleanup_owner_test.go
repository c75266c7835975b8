package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A script's own partition is recognised through the usual wrappers: the
// shell that ran "partition create" may run "timeout 90 vtcluster agents
// cleanup" (timeout, not the shell, is then the parent). Another shell is
// refused with the way to claim it, and claiming it by --partition or
// $VTCLUSTER_PARTITION_ID works.
func TestCLI_agentsCleanup_ownPartitionThroughWrappers(t *testing.T) {
	c := newCLICluster(t, 2, nil)
	h1, h2 := c.lab.Hosts[0], c.lab.Hosts[1]
	c.bootstrap(t)
	c.startAgents(t)
	sel := func(hostname string) string {
		return fmt.Sprintf("[{'key': 'hostname', 'operator': '==', 'values': '%s'}]", hostname)
	}
	bash := func(script string, env ...string) (int, string) {
		t.Helper()
		cmd := exec.Command("bash", "-c", script, vtclusterBinary(t))
		cmd.Env = append(os.Environ(), append([]string{"VTCLUSTER_STATE_DIR=" + c.stateDir}, env...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("bash: %v", err)
		}
		return cmd.ProcessState.ExitCode(), out.String()
	}

	// The creating shell, through timeout: its own, cleaned up.
	code, out := bash(`set -e
id=$("$0" partition create --tag a --selectors "$SEL")
timeout 90 "$0" agents cleanup `+h1.Name+`
"$0" partition release "$id"`, "SEL="+sel(h1.Hostname))
	if code != 0 {
		t.Fatalf("cleanup from the creating shell through timeout: exit %d\n%s", code, out)
	}
	if pids := agentPIDs(t, h1); len(pids) != 0 {
		t.Errorf("agent of %s still runs after cleanup: %v", h1.Name, pids)
	}

	// Another shell's partition: refused, saying how to claim it; then
	// claimed by flag and by environment.
	_, id := startOwner(t, c.stateDir, "--tag", "a", "--selectors", sel(h2.Hostname))
	code, out = bash(`timeout 90 "$0" agents cleanup ` + h2.Name)
	if code != 1 || !strings.Contains(out, "is held by partition "+id) || !strings.Contains(out, "--partition "+id) || !strings.Contains(out, "VTCLUSTER_PARTITION_ID="+id) {
		t.Errorf("cleanup of another's partition: exit %d\n%s", code, out)
	}
	if len(agentPIDs(t, h2)) != 1 {
		t.Error("a refused cleanup touched the node")
	}
	if code, out = bash(`timeout 90 "$0" agents cleanup `+h2.Name, "VTCLUSTER_PARTITION_ID="+id); code != 0 {
		t.Errorf("cleanup claimed by $VTCLUSTER_PARTITION_ID: exit %d\n%s", code, out)
	}
	if code, out = bash(`timeout 90 "$0" agents cleanup --partition ` + id + ` ` + h2.Name); code != 0 {
		t.Errorf("cleanup claimed by --partition (already clean): exit %d\n%s", code, out)
	}
}
