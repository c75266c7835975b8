package bridge

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"
)

// walkCommands calls fn on every command of the tree with its full path.
func walkCommands(c *cli.Command, path []string, fn func(path []string, c *cli.Command)) {
	path = append(path[:len(path):len(path)], c.Name)
	fn(path, c)
	for _, sub := range c.Commands {
		walkCommands(sub, path, fn)
	}
}

func TestRootCommand_treeIsWellFormed(t *testing.T) {
	root := rootCommand(&env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard})
	walkCommands(root, nil, func(path []string, c *cli.Command) {
		name := strings.Join(path, " ")
		if strings.TrimSpace(c.Usage) == "" {
			t.Errorf("%s: empty Usage", name)
		}
		for _, text := range []string{c.Usage, c.UsageText, c.ArgsUsage, c.Description} {
			if strings.Contains(text, "\t") {
				t.Errorf("%s: help text contains a tab: %q", name, text)
			}
		}
		seen := map[string]bool{}
		for _, sub := range c.Commands {
			for _, n := range append([]string{sub.Name}, sub.Aliases...) {
				if seen[n] {
					t.Errorf("%s: two subcommands named %q", name, n)
				}
				seen[n] = true
			}
		}
		flags := map[string]bool{}
		for _, f := range c.Flags {
			// urfave/cli splits slice values on commas by default, which
			// would cut selector lists and KEY=VALUE pairs apart.
			if _, ok := f.(*cli.StringSliceFlag); ok && !c.DisableSliceFlagSeparator {
				t.Errorf("%s --%s: a slice flag on a command that splits values on commas", name, f.Names()[0])
			}
			for _, n := range f.Names() {
				if flags[n] {
					t.Errorf("%s: two flags named --%s", name, n)
				}
				flags[n] = true
			}
		}
	})
}

// TestRootCommand_helpEverywhere runs --help on every command, as a user
// would, and checks that it succeeds and prints the command's usage.
func TestRootCommand_helpEverywhere(t *testing.T) {
	root := rootCommand(&env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard})
	var paths [][]string
	walkCommands(root, nil, func(path []string, c *cli.Command) {
		if !c.Hidden {
			paths = append(paths, path[1:])
		}
	})
	for _, p := range paths {
		t.Run(strings.Join(append([]string{"vtcluster"}, p...), "_"), func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append(append([]string{"vtcluster"}, p...), "--help")
			code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
			}
			help := out.String()
			if !strings.Contains(help, "USAGE:") {
				t.Fatalf("no USAGE section:\n%s", help)
			}
			if strings.Contains(help, "\t") {
				t.Errorf("help contains a tab:\n%s", help)
			}
		})
	}
}

// Every environment variable a controller flag reads is named in the help,
// so users can find it there.
func TestRootCommand_helpNamesEnvVars(t *testing.T) {
	for _, c := range []struct {
		args []string
		envs []string
	}{
		{[]string{"--help"}, []string{envStateDir, envCluster}},
		{[]string{"bootstrap", "--help"}, []string{envStateDir, envCluster, envParallel, envConnectTimeout, envTimeout, envAgentBinary}},
		{[]string{"exec", "--help"}, []string{envExecTimeout, envConnectTimeout}},
	} {
		code, out, errOut := runMain(t, c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errOut)
		}
		for _, env := range c.envs {
			if !strings.Contains(out, "$"+env) {
				t.Errorf("%v: help does not name %s:\n%s", c.args, env, out)
			}
		}
	}
}

func TestMain_usageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"bootstrap"}, // --vt-cluster-config is required
		{"call", "node1"},
		{"call", "--state-dir", dir, "node1", "examples.hello.ping", "not-json"},
		{"exec", "node1"},
		{"exec", "--state-dir", dir, "--timeout", "soon", "node1", "--", "true"},
		{"node", "add", "--state-dir", dir, "n1"},
		{"node", "add", "--state-dir", dir, "--address", "10.0.0.1", "--label", "kvm=yes", "n1"},
		{"node", "list", "--state-dir", dir, "extra"},
		{"partition", "release", "--state-dir", dir},
		{"select", "--state-dir", dir},
		{"status", "--parallel", "0", "--state-dir", dir},
		{"no-such-command"},
	} {
		code, _, errOut := runMain(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr:\n%s", args, code, errOut)
		}
		if strings.TrimSpace(errOut) == "" {
			t.Errorf("%v: no message on stderr", args)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]string{"90": "1m30s", "2.5": "2.5s", "1m30s": "1m30s", " 5m ": "5m0s", "0": "0s"} {
		d, err := parseDuration(in)
		if err != nil || d.String() != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, in := range []string{"", "soon", "-1", "-5s", "1e300"} {
		if _, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) succeeded", in)
		}
	}
}

func TestParseJSONArg_roundTrip(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`"text"`, `"text"`},
		{`42`, `42`},
		{`-9223372036854775808`, `-9223372036854775808`},
		{`1.5`, `1.5`},
		{`1e3`, `1000`},
		{`true`, `true`},
		{`null`, `null`},
		{`["a", 1, {"k": false}]`, `["a",1,{"k":false}]`},
		{`{"__base64__": "aGVsbG8="}`, `{"__base64__":"aGVsbG8="}`},
		{`{"__datetime__": "2026-11-22T01:02:03"}`, `{"__datetime__":"2026-11-22T01:02:03"}`},
		{`{"__float__": "-inf"}`, `{"__float__":"-inf"}`},
		{`{"__base64__": "aGk=", "other": 1}`, `{"__base64__":"aGk=","other":1}`}, // two keys: a plain struct
	} {
		v, err := parseJSONArg(c.in)
		if err != nil {
			t.Errorf("parseJSONArg(%s): %v", c.in, err)
			continue
		}
		out, err := toJSONValue(v)
		if err != nil {
			t.Errorf("toJSONValue(%#v): %v", v, err)
			continue
		}
		var b bytes.Buffer
		if err := writeJSON(&b, out); err != nil {
			t.Fatal(err)
		}
		got := strings.Join(strings.Fields(b.String()), "")
		if got != c.want {
			t.Errorf("%s: round trip gives %s, want %s", c.in, got, c.want)
		}
	}
}

func TestParseJSONArg_errors(t *testing.T) {
	for in, want := range map[string]string{
		`text`:                          `quote strings as JSON, e.g. '"text"'`,
		`99999999999999999999`:          "does not fit in 64 bits",
		`{"__base64__": "%%%"}`:         "$.__base64__",
		`{"__base64__": 3}`:             "want a string",
		`{"__datetime__": "yesterday"}`: "YYYY-MM-DDTHH:MM:SS",
		`[{"__float__": "big"}]`:        `$[0].__float__`,
	} {
		_, err := parseJSONArg(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseJSONArg(%s) = %v, want an error containing %q", in, err, want)
		}
	}
}

func TestTagRequests(t *testing.T) {
	reqs, err := tagRequests([]string{"src", "dst"}, []string{
		`dst=[{'key': 'kvm', 'operator': '==', 'values': True}]`,
		`[{"key": "arch", "operator": "==", "values": "x86_64"}]`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 2 || reqs[0].Tag != "src" || reqs[0].Selectors[0].Key != "arch" || reqs[1].Selectors[0].Key != "kvm" {
		t.Fatalf("got %+v", reqs)
	}
	for _, specs := range [][]string{
		{`other=[]`}, // not a requested tag
		{`[]`, `[]`}, // two common lists
		{`src=[]`, `src=[]`},
		{`src=[{'key': 'a'}]`}, // no operator
	} {
		if _, err := tagRequests([]string{"src", "dst"}, specs); err == nil {
			t.Errorf("tagRequests(%q) succeeded", specs)
		}
	}
}

// node add refuses what a cluster config refuses, with the same words and
// the flag named (one cluster.ValidateHost behind both).
func TestNodeAdd_validatesLikeTheConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--address", "-oProxyCommand=x"}, "--address: must not start with '-'"},
		{[]string{"--address", "10.0.0.1", "--user", "a b"}, "--user: must not contain blanks"},
		{[]string{"--address", "10.0.0.1", "--agent-base-dir", "/var/../etc"}, `--agent-base-dir: must not contain ".."`},
		{[]string{"--address", "10.0.0.1", "--agent-base-dir", "/"}, "--agent-base-dir: must not be the root directory"},
		{[]string{"--address", "10.0.0.1", "--agent-bind", "udp"}, `--agent-bind: expected "tunnel" or "direct"`},
		{[]string{"--address", "10.0.0.1", "--arch", "x86 64"}, "--arch: expected an architecture name"},
		{[]string{"--address", "10.0.0.1", "--label", "memory_gb=4"}, `--label: label "memory_gb" collides with the node property`},
		{[]string{"--address", "10.0.0.1", "--label", "a b=4"}, "--label: label name must be made of"},
		{[]string{"--address", "10.0.0.1", "--port", "70000"}, "--port: expected a port number (1-65535), got 70000"},
	} {
		args := append([]string{"node", "add", "--state-dir", dir, "n1"}, tc.args...)
		code, _, errOut := runMain(t, args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "default.json")); err == nil {
		t.Error("a refused node add wrote the state")
	}
}
