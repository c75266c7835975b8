package bridge

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCLI_resourceParamsFromStdin: pools and resources defined from a JSON
// object on stdin (what avocado_multihost.vt_resmgr sends) land in the state
// as with argv; bad objects are usage errors that name the flag.
func TestCLI_resourceParamsFromStdin(t *testing.T) {
	state := t.TempDir()
	run := func(stdin string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append([]string{"vtcluster", "--state-dir", state}, args...), strings.NewReader(stdin), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errOut := run(`{"type": "filesystem", "path": "/srv/p1"}`,
		"pool", "create", "p1", "--params-stdin", "--json")
	if code != 0 || !strings.Contains(out, `"uuid"`) {
		t.Fatalf("pool create --params-stdin: exit %d: %s%s", code, out, errOut)
	}
	if code, out, errOut = run("", "pool", "info", "p1", "--request", "spec.path"); code != 0 || strings.TrimSpace(out) != `{"path": "/srv/p1"}` {
		t.Fatalf("pool info: exit %d: %s%s", code, out, errOut)
	}
	code, out, errOut = run(`{"image_size": "1M", "image_format": "raw", "storage_type": "filesystem", "n": 3}`,
		"resource", "create", "d1", "--params-stdin")
	if code != 0 {
		t.Fatalf("resource create --params-stdin: exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	if code, out, _ = run("", "resource", "info", id, "--request", "spec"); code != 0 ||
		!strings.Contains(out, `"size":"1048576"`) || !strings.Contains(out, `"filename":"image.raw"`) {
		t.Errorf("resource info: exit %d: %s", code, out)
	}
	if code, out, errOut = run(`{"storage_type": "nfs"}`, "pool", "select", "--params-stdin"); code != 2 || !strings.Contains(errOut, "pool select") {
		t.Errorf("pool select of a missing type: exit %d: %s%s", code, out, errOut)
	}

	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{`[1]`, []string{"resource", "create", "d2", "--params-stdin"}, "--params-stdin: stdin is not one JSON object"},
		{`{"a": 1} {}`, []string{"resource", "create", "d2", "--params-stdin"}, "stdin is not one JSON object"},
		{`null`, []string{"resource", "create", "d2", "--params-stdin"}, "stdin is not one JSON object"},
		{`{"image_size": ["1M"]}`, []string{"resource", "create", "d2", "--params-stdin"}, `key "image_size": want a string, number or bool`},
		{`{}`, []string{"resource", "create", "d2", "--params-stdin", "--param", "a=b"}, "give no --param"},
		{`{}`, []string{"pool", "create", "p2", "{}", "--params-stdin"}, "NAME (the parameters come from stdin)"},
		{strings.Repeat(" ", maxStdinObject+1), []string{"pool", "select", "--params-stdin"}, "more than"},
		{`{"node": "node1"}`, []string{"resource", "update", id, "allocate", "--arguments-stdin"}, "give the node with --node"},
		{`{"size": "2M"}`, []string{"resource", "update", id, "resize", "--arguments-stdin", "--size", "3M"}, "give one"},
	} {
		if code, _, errOut := run(tc.stdin, tc.args...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v <<< %.40s: exit %d, stderr %q; want 2 and %q", tc.args, tc.stdin, code, errOut, tc.want)
		}
	}
}
