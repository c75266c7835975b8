package bridge

import (
	"strings"
	"testing"
)

// A busy cluster: without --wait the error says how to wait; with it, the
// error says the wait ran out, not to add the flag that was given.
func TestCLI_partitionCreate_busyMessageNamesTheWait(t *testing.T) {
	c := newCLICluster(t, 1, nil)
	c.bootstrap(t)
	startOwner(t, c.stateDir, "--tag", "a")
	code, _, errOut := c.cli(t, "partition", "create", "--tag", "b")
	if code != 1 || !strings.Contains(errOut, "(wait with --wait DURATION)") {
		t.Errorf("busy, no --wait: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = c.cli(t, "partition", "create", "--tag", "b", "--wait", "1s")
	if code != 1 || !strings.Contains(errOut, "still busy after --wait 1s") || strings.Contains(errOut, "wait with --wait") {
		t.Errorf("busy after --wait 1s: exit %d, stderr %q", code, errOut)
	}
	// The wait is reported as a line for a person, its reasons below it,
	// not as slog's key=value text with escaped newlines.
	if !strings.Contains(errOut, "vtcluster: waiting for idle nodes (tags: b; wait_seconds: 1)\n  node \"node1\" is held by") {
		t.Errorf("waiting message: %q", errOut)
	}
}
