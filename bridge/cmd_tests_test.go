package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func runVT(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"vtcluster"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestTestsList_json(t *testing.T) {
	code, out, stderr := runVT(t, "tests", "list", "--json", "../testdata/multihost/nodes.json", "../testdata/multihost/local.json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(got) != 8 {
		t.Fatalf("%d entries", len(got))
	}
	want := map[string]any{
		"file": "../testdata/multihost/nodes.json", "name": "ping", "uri": "../testdata/multihost/nodes.json",
		"identifier": "../testdata/multihost/nodes.json:ping", "tags": map[string]any{},
		"nodes": []any{"src", "dst", "obs"}, "timeout": 600.0,
	}
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("got  %v\nwant %v", got[0], want)
	}
	if tags := got[1]["tags"]; !reflect.DeepEqual(tags, map[string]any{"fast": nil, "arch": []any{"x86_64"}}) {
		t.Errorf("tags of local.json:pass = %v", tags)
	}
	if got[1]["timeout"] != nil {
		t.Errorf("timeout without one set = %v", got[1]["timeout"])
	}
}

func TestTestsList_badFileExits1NamingFileAndPath(t *testing.T) {
	code, out, stderr := runVT(t, "tests", "list", "--json", "../testdata/multihost/local.json", "../testdata/multihost/bad/bad-selector.json")
	if code != 1 || out != "" || !strings.Contains(stderr, "../testdata/multihost/bad/bad-selector.json:3:36: tests[1].nodes.src:") {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, out, stderr)
	}
}

func TestTestsList_noFilesIsUsageError(t *testing.T) {
	if code, _, _ := runVT(t, "tests", "list"); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}

func TestTestsList_text(t *testing.T) {
	code, out, _ := runVT(t, "tests", "list", "../testdata/multihost/upstream-params.json")
	if code != 0 || out != "../testdata/multihost/upstream-params.json:migrate  (nodes: node1, node2)\n" {
		t.Errorf("exit %d: %q", code, out)
	}
}
