package runner

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

const specDir = "../testdata/multihost"

func TestLoadSpecFile_local(t *testing.T) {
	f, err := LoadSpecFile(filepath.Join(specDir, "local.json"))
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(specDir)
	if f.Dir != abs {
		t.Errorf("Dir = %q, want %q", f.Dir, abs)
	}
	pass, err := f.Test("pass")
	if err != nil {
		t.Fatal(err)
	}
	if len(pass.Nodes) != 0 || !reflect.DeepEqual(pass.Body.Command, []string{"./bodies/report.sh", "hello"}) ||
		pass.Body.Env["GREETING"] != "hi" {
		t.Errorf("pass = %+v", pass)
	}
	if want := map[string][]string{"fast": nil, "arch": {"x86_64"}}; !reflect.DeepEqual(pass.Tags, want) {
		t.Errorf("tags = %#v, want %#v", pass.Tags, want)
	}
	to, _ := f.Test("timeout")
	if to.Timeout != 500*time.Millisecond {
		t.Errorf("timeout = %v", to.Timeout)
	}
	if got := f.Identifier(pass); got != filepath.Join(specDir, "local.json")+":pass" {
		t.Errorf("Identifier = %q", got)
	}
	if _, err := f.Test("nope"); err == nil || !strings.Contains(err.Error(), `no test named "nope"`) {
		t.Errorf("missing test: %v", err)
	}
	if _, err := f.Test(""); err == nil {
		t.Error("empty name accepted for a file with several tests")
	}
}

func TestLoadSpecFile_nodesAndSteps(t *testing.T) {
	f, err := LoadSpecFile(filepath.Join(specDir, "nodes.json"))
	if err != nil {
		t.Fatal(err)
	}
	tt := f.Tests[0]
	want := []NodeSpec{
		{"src", "[{'key': 'arch', 'operator': '==', 'values': 'x86_64'}]"},
		{"dst", `[{"key": "kvm", "operator": "==", "values": true}]`},
		{"obs", ""},
	}
	if !reflect.DeepEqual(tt.Nodes, want) {
		t.Errorf("nodes = %#v", tt.Nodes)
	}
	if got := tt.Body.Steps[1].On; !reflect.DeepEqual(got, []string{"src", "dst", "obs"}) {
		t.Errorf(`"*" expanded to %v`, got)
	}
	if !tt.Body.Steps[1].Parallel || tt.Body.Steps[1].Timeout != 10*time.Second {
		t.Errorf("step 2 = %+v", tt.Body.Steps[1])
	}
	if !reflect.DeepEqual(tt.Collect, map[string][]string{"src": {"/var/log/messages"}}) {
		t.Errorf("collect = %v", tt.Collect)
	}
}

func TestLoadSpecFile_upstreamParams(t *testing.T) {
	f, err := LoadSpecFile(filepath.Join(specDir, "upstream-params.json"))
	if err != nil {
		t.Fatal(err)
	}
	tt, err := f.Test("")
	if err != nil {
		t.Fatal(err)
	}
	want := []NodeSpec{{"node1", "[{'key': 'cpu_vendor_id', 'operator': 'eq', 'values': 'GenuineIntel'}]"}, {"node2", ""}}
	if !reflect.DeepEqual(tt.Nodes, want) {
		t.Errorf("nodes = %#v", tt.Nodes)
	}
	// Step targets follow the test's node order, not the order written.
	if got := tt.Body.Steps[0].On; !reflect.DeepEqual(got, []string{"node1", "node2"}) {
		t.Errorf("on = %v", got)
	}
}

// Each bad/<case>.json has a golden <case>.err with the full error text;
// go test ./runner -run LoadSpecFile_bad -update rewrites them.
func TestLoadSpecFile_bad(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(specDir, "bad", "*.json"))
	if len(files) == 0 {
		t.Fatal("no bad spec fixtures")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := LoadSpecFile(file)
			if err == nil {
				t.Fatal("accepted")
			}
			var se *specError
			if !errors.As(err, &se) || se.File != file {
				t.Errorf("error is not a *SpecError naming the file: %#v", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".json") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run with -update to create it)", rerr)
			}
			if got != string(want) {
				t.Errorf("got:\n%swant:\n%s", got, want)
			}
		})
	}
}

func TestLoadSpecFile_missingFile(t *testing.T) {
	_, err := LoadSpecFile(filepath.Join(t.TempDir(), "none.json"))
	if err == nil || !strings.Contains(err.Error(), "none.json: no such file or directory") {
		t.Errorf("got %v", err)
	}
}

func TestParsePlaceholders(t *testing.T) {
	known := func(tag string) bool { return tag == "src" || tag == "dst-1" }
	p := &Partition{Nodes: []PartitionNode{
		{Tag: "src", Name: "n1", Address: "10.0.0.1", Properties: map[string]any{"hostname": "h1", "cpu_count": int64(4), "kvm": true}},
		{Tag: "dst-1", Name: "n2", Address: "10.0.0.2"},
	}}
	cases := []struct{ in, want string }{
		{"{dst-1.address}", "10.0.0.2"},
		{"--peer={dst-1.address}:{src.name}", "--peer=10.0.0.2:n1"},
		{"{src.hostname}/{src.cpu_count}/{src.kvm}", "h1/4/true"},
		{"{{src.address}}", "{src.address}"},
		{`{"json": 1}`, `{"json": 1}`},
		{"awk '{print $1}'", "awk '{print $1}'"},
		{"{src.}", "{src.}"},
		{"$(rm -rf /) {src.address}", "$(rm -rf /) 10.0.0.1"},
	}
	for _, c := range cases {
		if _, err := parsePlaceholders(c.in, known); err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		got, err := expandArgv([]string{c.in}, p)
		if err != nil || got[0] != c.want {
			t.Errorf("%q -> %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := parsePlaceholders("{nope.address}", known); err == nil {
		t.Error("unknown tag accepted")
	}
	if _, err := expandArgv([]string{"{src.memory}"}, p); err == nil || !strings.Contains(err.Error(), `no property "memory"`) {
		t.Errorf("unknown property: %v", err)
	}
}

func TestEnvTag(t *testing.T) {
	for in, want := range map[string]string{"src": "SRC", "dst-1": "DST_1", "a_b": "A_B"} {
		if got := envTag(in); got != want {
			t.Errorf("EnvTag(%q) = %q, want %q", in, got, want)
		}
	}
}
