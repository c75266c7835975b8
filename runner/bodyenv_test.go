package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writePartition sets the variables of bodyEnv and nothing else of ours,
// so the table is the whole truth a body (and its documentation) can rely
// on.
func TestBodyEnv_writePartitionSetsOnlyTheTable(t *testing.T) {
	r := &testRun{
		spec:      &SpecFile{Path: "/specs/x.json"},
		test:      &Test{Name: "migrate"},
		cfg:       RunConfig{State: "etcd://127.0.0.1:2379", StateDir: "/state", Cluster: "lab", Binary: "/usr/bin/vtcluster"},
		outputDir: t.TempDir(),
		workDir:   "/tmp/work",
		environ:   []string{"PATH=/bin", "VTCLUSTER_NODE_OLD_NAME=leaked", "VTCLUSTER_PARTITION_ID=stale"},
	}
	nodes := twoNodes()
	nodes[0].Tag, nodes[1].Tag = "src", "dst"
	p := &Partition{ID: "p1", Nodes: nodes}
	res := []acquiredResource{{Name: "disk", Type: "volume", Tag: "src", ID: "u1", Value: "/pool/disk.qcow2"}}
	env, err := r.writePartition(p, res)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "PATH" {
			continue
		}
		if !bodyEnvName(k) {
			t.Errorf("the body gets %s, which the table (runner/bodyenv.go) does not name", kv)
		}
		if k == "VTCLUSTER_NODE_OLD_NAME" || v == "stale" {
			t.Errorf("an inherited partition variable reached the body: %s", kv)
		}
		seen[k] = true
	}
	for _, v := range bodyEnv {
		if v.Prefix == "" && !seen[v.Name] {
			t.Errorf("the table names %s but the body does not get it", v.Name)
		}
	}
	for _, want := range []string{"VTCLUSTER_NODE_SRC_ADDRESS", "VTCLUSTER_NODE_DST_URL", "VTCLUSTER_RESOURCE_DISK_SRC"} {
		if !seen[want] {
			t.Errorf("the body does not get %s", want)
		}
	}
}

// docs/test-environment.md is the table, rendered; -update rewrites it.
func TestBodyEnv_docs(t *testing.T) {
	path := filepath.Join("..", "docs", "test-environment.md")
	want := bodyEnvMarkdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is not runner/bodyenv.go's table; run go test ./runner -run TestBodyEnv_docs -update", path)
	}
}
