package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/vtcluster/vtcluster/"

// The dependency direction of the design, enforced: bridge → runner →
// cluster/resmgr → agent. agent imports no other domain (services of other
// domains register through agent.Service), and os/exec is confined to the
// places that must start processes.
var forbidden = map[string][]string{
	"agent":   {"cluster", "resmgr", "runner", "bridge"},
	"cluster": {"resmgr", "runner", "bridge"},
	"resmgr":  {"runner", "bridge"},
	"runner":  {"bridge"},
	// The node side of the resource manager runs in the agent: it knows
	// no cluster, and the controller side imports it, not the reverse.
	"resmgr/node": {"cluster", "resmgr", "runner", "bridge"},
}

// domainsOf are the forbidden-map keys a package directory belongs to:
// each key that is the directory or a folder above it, so a sub-domain
// such as resmgr/node has rules of its own on top of its parent's.
func domainsOf(p string) []string {
	var out []string
	for d := range forbidden {
		if p == d || strings.HasPrefix(p, d+"/") {
			out = append(out, d)
		}
	}
	return out
}

// Leaves every layer may import; they import only other leaves, so that
// importing them can never turn the dependency direction round.
var leaves = map[string]bool{
	"agent/py":            true, // what Python writes and reads
	"agent/pgroup":        true,
	"agent/xmlrpc":        true, // the wire, for the daemon and the controller
	"agent/logframe":      true, // the log wire, likewise
	"cluster/sshx":        true, // SSH and SFTP to one host; knows no cluster type
	"internal/testbin":    true,
	"internal/atomicfile": true,
	"internal/testutil":   true, // helpers only tests import
	"internal/testguest":  true, // the test guest of scripts/guest.sh, via pgroup
}

var execAllowed = map[string]bool{
	// The one process-group supervisor: the process service's commands,
	// the runner's test bodies and the resource backings all start
	// processes through it.
	"agent/pgroup/pgroup_linux.go":  true,
	"bridge/cmd_agent.go":           true, // --detach re-executes the agent
	"cluster/lab/netns.go":          true, // the test lab drives ip(8) and sshd(8)
	"internal/testbin/testbin.go":   true, // builds the binary that tests run
	"internal/testutil/testutil.go": true, // LookPath only, to skip a test whose tool is missing
	"bridge/cmd_holder.go":          true, // the pre-tests hook starts the job's SSH connection holder
	// tests of the etcd state store run real etcd servers
	"cluster/etcdstore/etcdtest/etcd.go": true,
}

func TestArchitecture_ImportDirection(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "scripts" || name == "pyshim" || name == "tests") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		domains := domainsOf(filepath.ToSlash(filepath.Dir(path)))
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p == "os/exec" && !execAllowed[filepath.ToSlash(path)] {
				t.Errorf("%s imports os/exec; only %v may", path, execAllowed)
			}
			if !strings.HasPrefix(p, module) {
				continue
			}
			if dir := filepath.ToSlash(filepath.Dir(path)); leaves[dir] && !leaves[strings.TrimPrefix(p, module)] {
				t.Errorf("%s imports %s: %s is a leaf package and imports only other leaves", path, p, dir)
			}
			target := strings.TrimPrefix(p, module)
			for _, domain := range domains {
				for _, bad := range forbidden[domain] {
					// A domain's own sub-packages are its own (resmgr may
					// import resmgr/node), unless the rule is the
					// sub-package's.
					if (target == bad || strings.HasPrefix(target, bad+"/")) && !strings.HasPrefix(target, domain+"/") {
						t.Errorf("%s imports %s: %s must not depend on %s", path, p, domain, bad)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
