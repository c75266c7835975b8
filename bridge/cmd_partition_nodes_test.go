package bridge

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestCLI_partition_addRemoveNode(t *testing.T) {
	state := t.TempDir()
	registerLabelledNodes(t, state)
	me := strconv.Itoa(os.Getpid())
	run := func(args ...string) (int, string, string) {
		return runMain(t, append([]string{"--state-dir", state, "partition"}, args...)...)
	}
	const id = "0123456789abcdef0123456789abcdef"
	code, out, errOut := run("add", "--owner-pid", me, "--json", id, "src=n1")
	if code != 0 || gjson.Get(out, "id").Str != id || gjson.Get(out, "nodes.0.tag").Str != "src" || gjson.Get(out, "owner.pid").Int() != int64(os.Getpid()) {
		t.Fatalf("add creating the partition: exit %d, %s%s", code, out, errOut)
	}
	if code, _, errOut = run("add", "--owner-pid", me, id, "dst=n2"); code != 0 {
		t.Fatalf("add to the partition: exit %d, %s", code, errOut)
	}
	// Refusals leave the state as it was: a taken tag, a node held by
	// another partition, an unknown node, a malformed id or pair.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{id, "src=n3"}, `already has tag "src"`},
		{[]string{"fedcba9876543210fedcba9876543210", "x=n2"}, `node "n2" is held by partition ` + id},
		{[]string{id, "x=n9"}, `node "n9"`},
		{[]string{"not-an-id", "x=n3"}, "is not 32 lowercase hex digits"},
		{[]string{id, "n3"}, `"n3" is not TAG=NODE`},
	} {
		code, _, errOut := run(append([]string{"add", "--owner-pid", me}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("add %v: exit %d, stderr %q; want it to mention %q", tc.args, code, errOut, tc.want)
		}
	}
	_, out, _ = run("list", "--json")
	if n := gjson.Get(out, "#").Int(); n != 1 || gjson.Get(out, "0.nodes.#").Int() != 2 {
		t.Fatalf("after refusals: %s", out)
	}
	if code, _, errOut = run("remove-node", id, "n3"); code == 0 || !strings.Contains(errOut, `"n3" is not in partition`) {
		t.Errorf("removing a node not in it: exit %d, %s", code, errOut)
	}
	if code, _, errOut = run("remove-node", id, "n1"); code != 0 {
		t.Fatalf("remove-node n1: exit %d, %s", code, errOut)
	}
	if code, _, errOut = run("remove-node", id, "n2"); code != 0 || !strings.Contains(errOut, "empty and was released") {
		t.Fatalf("remove-node n2: exit %d, %s", code, errOut)
	}
	if _, out, _ = run("list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("partitions left: %s", out)
	}
}
