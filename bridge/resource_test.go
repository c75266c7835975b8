package bridge

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLI_poolsAndResources: bootstrap registers the config's pools, the
// job hooks attach and detach them, and the pool/resource commands drive a
// 20 GiB volume on storage both lab hosts share.
func TestCLI_poolsAndResources(t *testing.T) {
	c := newCLICluster(t, 2, nil)
	shared := filepath.Join(t.TempDir(), "shared")
	var cfg map[string]any
	data, _ := os.ReadFile(c.config)
	json.Unmarshal(data, &cfg)
	cfg["pools"] = map[string]any{"storage": map[string]any{"shared": map[string]any{"type": "filesystem", "path": shared}}}
	data, _ = json.Marshal(cfg)
	os.WriteFile(c.config, data, 0o600)
	c.bootstrap(t)
	logdir := t.TempDir()
	c.mustCLI(t, "hooks", "pre-tests", "--job-id", "job-r", "--job-logdir", logdir)
	t.Cleanup(func() { c.cli(t, "agents", "stop") })

	pools := jsonOut(t, c.mustCLI(t, "pool", "list", "--json")).Array()
	if len(pools) != 1 || pools[0].Get("config.meta.name").Str != "shared" || pools[0].Get("connected_nodes.#").Int() != 2 ||
		pools[0].Get("config.spec.path").Str != shared {
		t.Fatalf("pool list: %v", pools)
	}
	// Capacity: each node's statfs of the pool, in the JSON and the table.
	if size, free := pools[0].Get("capacity.node1.size").Int(), pools[0].Get("capacity.node2.free").Int(); size <= 0 || free <= 0 || free > size {
		t.Errorf("pool list capacity: %s", pools[0].Get("capacity").Raw)
	}
	if table := c.mustCLI(t, "pool", "list"); !strings.Contains(table, "SIZE") || !strings.Contains(table, "GiB") {
		t.Errorf("pool list table:\n%s", table)
	}
	id := strings.TrimSpace(c.mustCLI(t, "resource", "create", "big", "--param", "image_size=20G", "--param", "image_format=raw",
		"--param", "volume_pool_selectors=[{'key': 'type', 'operator': '==', 'values': 'filesystem'}, {'key': 'nodes', 'operator': 'contains', 'values': 'node1 node2'}]"))
	c.mustCLI(t, "resource", "bind", id)
	c.mustCLI(t, "resource", "update", id, "allocate", "--node", "node2")
	if out := c.mustCLI(t, "resource", "info", id, "--request", "spec.size"); strings.TrimSpace(out) != `{"size": "21474836480"}` {
		t.Errorf("info --request spec.size: %s", out)
	}
	if fi, err := os.Stat(filepath.Join(shared, "image.raw")); err != nil || fi.Size() != 20<<30 {
		t.Errorf("volume: %v %v", fi, err)
	}
	nodes := jsonOut(t, c.mustCLI(t, "resource", "nodes", id, "--json")).Array()
	if len(nodes) != 2 {
		t.Errorf("binding nodes: %v", nodes)
	}
	status := jsonOut(t, c.mustCLI(t, "status", "--json"))
	if got := status.Get("0.resources.0").Str; got != "volume:big*" {
		t.Errorf("status resources of node1 = %q (%s)", got, status.Raw)
	}
	if got := status.Get("1.pools.0").Str; got != "shared" {
		t.Errorf("status pools of node2 = %q", got)
	}
	if free := status.Get("1.pool_capacity.shared.free").Int(); free <= 0 {
		t.Errorf("status capacity of shared on node2: %s", status.Get("1.pool_capacity").Raw)
	}
	code, _, errOut := c.cli(t, "resource", "destroy", id)
	if code != 1 || !strings.Contains(errOut, "Cannot destroy an allocated resource object") || !strings.Contains(errOut, "resource destroy --force "+id) {
		t.Errorf("destroy allocated: exit %d: %s", code, errOut)
	}
	code, _, errOut = c.cli(t, "pool", "destroy", "shared")
	if code != 1 || !strings.Contains(errOut, "The pool is still in use") {
		t.Errorf("destroy attached pool: exit %d: %s", code, errOut)
	}
	code, _, errOut = c.cli(t, "resource", "info", "nope")
	if code != 1 || !strings.Contains(errOut, `no resource "nope"`) {
		t.Errorf("unknown id: exit %d: %s", code, errOut)
	}
	c.mustCLI(t, "resource", "destroy", "--force", id)
	if _, err := os.Stat(filepath.Join(shared, "image.raw")); !os.IsNotExist(err) {
		t.Errorf("volume after destroy --force: %v", err)
	}
	c.mustCLI(t, "hooks", "post-tests", "--job-id", "job-r", "--job-logdir", logdir)
	pools = jsonOut(t, c.mustCLI(t, "pool", "list", "--json")).Array()
	if len(pools) != 1 || pools[0].Get("connected_nodes.#").Int() != 0 {
		t.Errorf("after post-tests: %v", pools)
	}
	if _, err := os.Stat(shared); !os.IsNotExist(err) {
		t.Errorf("pool directory after detach: %v", err)
	}
}
