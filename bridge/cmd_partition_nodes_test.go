package bridge

import (
	"bytes"
	"context"
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

func TestCLI_call_paramsStdinChecked(t *testing.T) {
	call := func(stdin string, args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append([]string{"vtcluster", "--state-dir", t.TempDir(), "call"}, args...), strings.NewReader(stdin), &out, &errb)
		return code, errb.String()
	}
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"[]", []string{"--params-stdin", "n1", "core.is_alive", "1"}, "give no ARG"},
		{`{"a": 1}`, []string{"--params-stdin", "n1", "core.is_alive"}, "stdin is not one JSON array"},
		{`[1, {"__base64__": "%%%"}]`, []string{"--params-stdin", "n1", "core.is_alive"}, "$[1].__base64__"},
	} {
		if code, errOut := call(tc.stdin, tc.args...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("call %v <<< %s: exit %d, stderr %q; want 2 and %q", tc.args, tc.stdin, code, errOut, tc.want)
		}
	}
}

func TestCLI_callServe_manyCallsOneConnection(t *testing.T) {
	c := newCLICluster(t, 1, nil)
	c.bootstrap(t)
	c.mustCLI(t, "agents", "start")
	stdin := strings.Join([]string{
		`{"id": 1, "method": "examples.hello.ping"}`,
		`{"id": "two", "method": "process.run", "params": [["sh", "-c", "printf hi"], {"timeout": 10}]}`,
		`{"id": 3, "method": "no.such.method", "params": []}`,
		`{"id": 4, "method": "core.is_alive", "params": {"not": "a list"}}`,
		`{"id": 5}`,
		`not json`,
		"",
	}, "\n")
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"vtcluster", "--state-dir", c.stateDir, "call", "--serve", "node1"},
		strings.NewReader(stdin), &out, &errb)
	if code != 0 {
		t.Fatalf("call --serve: exit %d: %s", code, errb.String())
	}
	replies := map[string]gjson.Result{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		r := gjson.Parse(line)
		replies[r.Get("id").Raw] = r
	}
	if len(replies) != 6 {
		t.Fatalf("want one reply per request line, got:\n%s", out.String())
	}
	if got := replies["1"].Get("result").Str; got != "Pong from "+c.lab.Hosts[0].Hostname {
		t.Errorf("ping: %s", replies["1"].Raw)
	}
	if r := replies[`"two"`]; r.Get("result.stdout.__base64__").Str != "aGk=" || r.Get("result.exit_code").Int() != 0 {
		t.Errorf("process.run: %s", r.Raw)
	}
	if r := replies["3"]; r.Get("fault.exc_type").Str != "Exception" || !strings.Contains(r.Get("fault.tb_info").Str, "Traceback") {
		t.Errorf("unknown method: %s", r.Raw)
	}
	if r := replies["4"]; r.Get("error").Str != "params: want a JSON array" {
		t.Errorf("bad params: %s", r.Raw)
	}
	if r := replies["5"]; !strings.Contains(r.Get("error").Str, `want {"id"`) {
		t.Errorf("no method: %s", r.Raw)
	}
	if r := replies["null"]; !strings.HasPrefix(r.Get("error").Str, "request is not a JSON object") {
		t.Errorf("garbage line: %s", r.Raw)
	}
	if code, _, errOut := c.cli(t, "call", "--serve", "node1", "extra"); code != 2 || !strings.Contains(errOut, "want exactly NODE|TAG") {
		t.Errorf("call --serve with a method: exit %d, %s", code, errOut)
	}
	c.mustCLI(t, "agents", "stop")
}
