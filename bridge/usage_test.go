package bridge

import (
	"strings"
	"testing"
)

// Every kind of misuse exits 2 with one line on stderr that says what is
// wrong and which --help to read, and no help text dumped on stdout.
func TestUsageErrors_exit2OneLine(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "a command is needed (see vtcluster --help)"},
		{[]string{"foo"}, `unknown command "foo"`},
		{[]string{"partition", "cretae"}, `partition: unknown command "cretae", did you mean "create"? (see vtcluster partition --help)`},
		{[]string{"node"}, "node: a command is needed (see vtcluster node --help)"},
		{[]string{"lab", "up"}, `lab up: Required flag "dir" not set (see vtcluster lab up --help)`},
		{[]string{"lab", "up", "--dir"}, "lab up: flag needs an argument"},
		{[]string{"lab", "up", "--dir", "x", "--hosts", "many"}, `invalid value "many"`},
		{[]string{"agents", "status", "--bogus"}, "agents status: flag provided but not defined: -bogus"},
		{[]string{"--bogus", "node", "list"}, "flag provided but not defined: -bogus (see vtcluster --help)"},
		{[]string{"help", "foo"}, "No help topic for 'foo' (see vtcluster --help)"},
	} {
		code, out, errOut := runMain(t, c.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, c.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("vtcluster %q: exit %d, stdout %d bytes, stderr %q; want exit 2 and %q", c.args, code, len(out), errOut, c.want)
		}
	}
	// Help is not an error.
	if code, out, _ := runMain(t, "--help"); code != 0 || !strings.Contains(out, "lab") {
		t.Errorf("--help: exit %d, lab listed: %v", code, strings.Contains(out, "lab"))
	}
}
