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
}

var execAllowed = map[string]bool{
	"agent/svc_process.go": true, // the process service runs commands on nodes
	"agent/proc_linux.go":  true,
	"runner/body.go":       true, // the test body on the controller
	"bridge/cmd_agent.go":  true, // --detach re-executes the agent
	"bridge/agentbin.go":   true, // asks the agent-only build which build it is
	"cluster/lab/netns.go": true, // the test lab drives ip(8) and sshd(8)
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
		domain := strings.Split(filepath.ToSlash(path), "/")[0]
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p == "os/exec" && !execAllowed[filepath.ToSlash(path)] {
				t.Errorf("%s imports os/exec; only %v may", path, execAllowed)
			}
			if !strings.HasPrefix(p, module) {
				continue
			}
			target := strings.Split(strings.TrimPrefix(p, module), "/")[0]
			for _, bad := range forbidden[domain] {
				if target == bad {
					t.Errorf("%s imports %s: %s must not depend on %s", path, p, domain, bad)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Leaf packages import nothing from this module, so that every layer may
// import them (agent/py: what Python writes and reads).
var leaves = []string{"agent/py"}

func TestArchitecture_Leaves(t *testing.T) {
	fset := token.NewFileSet()
	for _, dir := range leaves {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("leaf package %s has no Go files (%v)", dir, err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				if p, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(p, module) {
					t.Errorf("%s imports %s: %s is a leaf and imports nothing internal", path, p, dir)
				}
			}
		}
	}
}
