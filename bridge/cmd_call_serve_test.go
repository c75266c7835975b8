package bridge

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

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
