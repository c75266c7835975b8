package resmgr

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/lab"
	"github.com/vtcluster/vtcluster/internal/testbin"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// The tests in this file drive real agents (the vtcluster binary) on the
// SSH hosts of a lab. Lab hosts share this machine's filesystem, so a
// filesystem pool at one absolute path stands in for shared storage.

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// labCluster brings up n lab hosts with running agents and returns the
// store and a manager on it.
func labCluster(t *testing.T, n int) (*cluster.FileStore, *Manager, *lab.Lab) {
	t.Helper()
	st, m, l, _ := labClusterCtl(t, n)
	return st, m, l
}

// labClusterCtl is labCluster that also returns the controller, to stop
// and start the agents.
func labClusterCtl(t *testing.T, n int) (*cluster.FileStore, *Manager, *lab.Lab, *cluster.Controller) {
	t.Helper()
	l := lab.Start(t, n)
	bin := testbin.Path(t)
	data, err := l.ClusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	conf, err := cluster.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := cluster.OpenFileStore(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.NewController(st, cluster.ControllerConfig{Binary: bin})
	ctx := testCtx(t)
	if _, err := c.Bootstrap(ctx, conf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartAgents(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.StopAgents(context.Background()) })
	m := NewManager(st, ConnectDialer(cluster.ConnectOptions{}), nil)
	t.Cleanup(func() { m.Close() })
	return st, m, l, c
}

func TestManager_filesystemPoolLifecycle(t *testing.T) {
	_, m, _ := labCluster(t, 2)
	ctx := testCtx(t)
	if err := m.Setup(ctx, json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	pools, _, err := m.Pools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) != 2 || pools[0].Config.Meta.Name != "def_fs_pool_node1" || pools[1].Config.Meta.Name != "def_fs_pool_node2" {
		t.Fatalf("default pools = %+v", pools)
	}
	if err := m.Startup(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := m.PoolInfo(ctx, "def_fs_pool_node1", "")
	if err != nil {
		t.Fatal(err)
	}
	uuid := pools[0].Config.Meta.UUID
	root := pathOf(t, info, "spec.path")
	if want := `{"meta":{"name":"def_fs_pool_node1","uuid":"` + uuid + `","type":"filesystem","access":{"nodes":["node1"]}},"spec":{"path":"` + root + `"}}`; string(info) != want || !strings.HasSuffix(root, "/root_dir") {
		t.Errorf("pool info:\n got %s\nwant %s", info, want)
	}
	if got, err := m.PoolInfo(ctx, uuid, "meta.access"); err != nil || string(got) != `{"access": {"nodes":["node1"]}}` {
		t.Errorf("PoolInfo(meta.access) = %s, %v", got, err)
	}
	if _, err := m.PoolInfo(ctx, uuid, "meta.colour"); err == nil || !strings.Contains(err.Error(), "Unknown key meta.colour") {
		t.Errorf("bad key: %v", err)
	}

	id, err := m.CreateResourceFromParams(ctx, "vol1", TypeVolume, map[string]string{
		"image_size": "1G", "image_format": "raw", "image_name": "vol1",
		"volume_pool_selectors": `[{"key": "nodes", "operator": "contains", "values": "node1"}]`})
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.ResourceInfo(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"meta":{"uuid":"` + id + `","name":"vol1","type":"volume","pool":"` + uuid + `","allocated":false,"volume-type":"file"},"spec":{"size":"1073741824","allocation":null,"filename":"vol1.raw","uri":{}}}`; string(got) != want {
		t.Errorf("resource info:\n got %s\nwant %s", got, want)
	}
	if got, err := m.ResourceInfo(ctx, id, "spec.size"); err != nil || string(got) != `{"size": "1073741824"}` {
		t.Errorf(`ResourceInfo("spec.size") = %s, %v`, got, err)
	}
	if _, err := m.ResourceInfo(ctx, id, "spec.colour"); err == nil || !strings.Contains(err.Error(), "Cannot find the requested options spec.colour") {
		t.Errorf("bad request: %v", err)
	}
	if err := m.BindResource(ctx, id, []string{"node2"}); err == nil || !strings.Contains(err.Error(), "Pool def_fs_pool_node1 cannot be accessed from {'node2'}") {
		t.Errorf("bind to a node without access: %v", err)
	}
	if err := m.BindResource(ctx, id, []string{"node1"}); err != nil {
		t.Fatal(err)
	}
	if nodes, err := m.BindingNodes(ctx, id); err != nil || len(nodes) != 1 || nodes[0] != "node1" {
		t.Errorf("binding nodes = %v, %v", nodes, err)
	}
	for _, cmd := range []string{"allocate", "sync"} {
		if _, err := m.UpdateResource(ctx, id, cmd, "", nil); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	file := filepath.Join(root, "vol1.raw")
	if fi, err := os.Stat(file); err != nil || fi.Size() != 1<<30 {
		t.Fatalf("volume file: %v %v", fi, err)
	}
	got, _ = m.ResourceInfo(ctx, id, "")
	if want := `{"meta":{"uuid":"` + id + `","name":"vol1","type":"volume","pool":"` + uuid + `","allocated":true,"volume-type":"file"},"spec":{"size":"1073741824","allocation":1073741824,"filename":"vol1.raw","uri":{"node1":"` + file + `"}}}`; string(got) != want {
		t.Errorf("after allocate:\n got %s\nwant %s", got, want)
	}
	if _, err := m.UpdateResource(ctx, id, "resize", "", map[string]any{"size": "2G"}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(file); fi == nil || fi.Size() != 2<<30 {
		t.Errorf("after resize: %v", fi)
	}
	if got, _ := m.ResourceInfo(ctx, id, "spec.size"); string(got) != `{"size": "2147483648"}` {
		t.Errorf("size after resize: %s", got)
	}
	if _, err := m.UpdateResource(ctx, id, "defrag", "", nil); err == nil || !strings.Contains(err.Error(), "Unsupported command defrag for a volume resource") {
		t.Errorf("bad command: %v", err)
	}
	cid, err := m.UpdateResource(ctx, id, "clone", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	cinfo, _ := m.ResourceInfo(ctx, cid, "")
	if !strings.Contains(string(cinfo), `"name":"vol1_clone_`) || !strings.Contains(string(cinfo), `"allocated":true`) || !strings.Contains(string(cinfo), `"filename":"vol1.raw_clone_`) {
		t.Errorf("clone: %s", cinfo)
	}
	if err := m.DestroyResource(ctx, id); err == nil || !strings.Contains(err.Error(), "Cannot destroy an allocated resource object") || !errors.Is(err, ErrAllocated) {
		t.Errorf("destroy allocated: %v", err)
	}
	if _, err := m.UpdateResource(ctx, id, "release", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("released file: %v", err)
	}
	if err := m.DestroyResource(ctx, id); err == nil || !strings.Contains(err.Error(), "Cannot destroy a bound resource object") {
		t.Errorf("destroy bound: %v", err)
	}
	if err := m.UnbindResource(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.DestroyResource(ctx, id); err != nil {
		t.Fatal(err)
	}
	var nf *NotFoundError
	if err := m.DestroyResource(ctx, id); !errors.As(err, &nf) {
		t.Errorf("destroy twice: %v", err)
	}
	if err := m.DestroyPool(ctx, uuid); !errors.Is(err, ErrPoolBusy) {
		t.Errorf("destroy attached pool: %v", err)
	}
	// The job's post hook: what the job (here: anyone) still holds goes,
	// the pools are detached and their roots removed.
	if err := m.Teardown(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pool root after teardown: %v", err)
	}
	if _, rs, _ := m.Pools(ctx); len(rs) != 0 {
		t.Errorf("resources left: %+v", rs)
	}
}

func pathOf(t *testing.T, raw json.RawMessage, p string) string {
	t.Helper()
	var v map[string]any
	json.Unmarshal(raw, &v)
	var cur any = v
	for _, k := range strings.Split(p, ".") {
		m, _ := cur.(map[string]any)
		cur = m[k]
	}
	s, _ := cur.(string)
	return s
}

// TestManager_sharedVolumes: a 20 GiB sparse raw volume and a qcow2
// volume on a pool both nodes reach.
func TestManager_sharedVolumes(t *testing.T) {
	_, m, _ := labCluster(t, 2)
	ctx := testCtx(t)
	shared := filepath.Join(t.TempDir(), "shared")
	pools := `{"storage": {"shared": {"type": "filesystem", "path": "` + shared + `", "access": {"nodes": []}}}}`
	if err := m.Setup(ctx, json.RawMessage(pools)); err != nil {
		t.Fatal(err)
	}
	if err := m.Startup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Teardown(context.Background(), "") })
	big, err := m.CreateResourceFromParams(ctx, "big", TypeVolume, map[string]string{"image_size": "20G", "image_format": "raw", "storage_type": "filesystem"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.BindResource(ctx, big, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.UpdateResource(ctx, big, "allocate", "node2", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.UpdateResource(ctx, big, "sync", "node1", nil); err != nil {
		t.Fatal(err)
	}
	info, _ := m.ResourceInfo(ctx, big, "spec")
	file := filepath.Join(shared, "image.raw")
	if want := `{"spec": {"size":"21474836480","allocation":21474836480,"filename":"image.raw","uri":{"node1":"` + file + `","node2":"` + file + `"}}}`; string(info) != want {
		t.Errorf("20G volume:\n got %s\nwant %s", info, want)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil || st.Size != 20<<30 || st.Blocks*512 > 1<<20 {
		t.Errorf("20G file: size %d blocks %d %v", st.Size, st.Blocks, err)
	}
	// qcow2 volumes are made by qemu-img on the node (the lab's nodes share
	// this machine's /usr): a subtest, so the rest runs without it.
	t.Run("qcow2", func(t *testing.T) {
		testutil.NeedCommand(t, "qemu-img", "qemu-utils", "qcow2 volumes are made with it")
		q, err := m.CreateResourceFromParams(ctx, "q", TypeVolume, map[string]string{"image_size": "5G", "image_name": "disk"})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.BindResource(ctx, q, []string{"node1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.UpdateResource(ctx, q, "allocate", "", nil); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("qemu-img", "info", "--output=json", filepath.Join(shared, "disk.qcow2")).Output()
		if err != nil {
			t.Fatal(err)
		}
		var qi struct {
			Format      string `json:"format"`
			VirtualSize int64  `json:"virtual-size"`
		}
		if json.Unmarshal(out, &qi); qi.Format != "qcow2" || qi.VirtualSize != 5<<30 {
			t.Errorf("qemu-img info: %s", out)
		}
	})
	// Bad input never reaches a node.
	for name, params := range map[string]map[string]string{
		"absurd":  {"image_size": "100000T"},
		"shell":   {"image_name": "x;reboot"},
		"dotdot":  {"image_name": "../../etc/x"},
		"escape":  {"image_name": "/etc/../etc/passwd"},
		"garbage": {"image_size": "lots"},
	} {
		if _, err := m.CreateResourceFromParams(ctx, "bad", TypeVolume, params); err == nil {
			t.Errorf("%s: %v accepted", name, params)
		}
	}
	if err := m.Teardown(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(shared); len(entries) != 0 {
		t.Errorf("left in the shared pool: %v", entries)
	}
}

// holder: in a child process, allocate a partition with a volume and a
// port, acquire them, print the volume path and tap name, and wait to be
// killed. Args come from the environment.
func TestManager_killedOwnerIsSwept(t *testing.T) {
	if os.Getenv("RESMGR_HOLDER") != "" {
		holder(t)
		return
	}
	st, m, l := labCluster(t, 2)
	ctx := testCtx(t)
	// A bridge on node2 for the port pool.
	h, _ := l.Host(1)
	if out, err := exec.Command("ip", "netns", "exec", h.Netns, "ip", "link", "add", "brx", "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	shared := filepath.Join(t.TempDir(), "shared")
	pools := `{"storage": {"shared": {"type": "filesystem", "path": "` + shared + `"}},
	           "net": {"br": {"type": "linux_bridge", "switch": {"node2": {"ifname": "brx"}}, "access": {"nodes": ["node2"]}}}}`
	if err := m.Setup(ctx, json.RawMessage(pools)); err != nil {
		t.Fatal(err)
	}
	if err := m.Startup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Teardown(context.Background(), "") })
	cmd := exec.Command(os.Args[0], "-test.run=^TestManager_killedOwnerIsSwept$")
	cmd.Env = append(os.Environ(), "RESMGR_HOLDER="+filepath.Dir(st.Path()))
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var vol, tap string
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "HELD "); ok {
			vol, tap, _ = strings.Cut(v, " ")
			break
		}
	}
	if vol == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("holder did not acquire")
	}
	if _, err := os.Stat(vol); err != nil {
		t.Fatalf("held volume: %v", err)
	}
	if out, _ := exec.Command("ip", "netns", "exec", h.Netns, "ip", "link", "show", "dev", tap).CombinedOutput(); !strings.Contains(string(out), "master brx") {
		t.Fatalf("held tap: %s", out)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// The next allocation reclaims the dead owner's partition; the sweep
	// removes its volume and tap on the nodes.
	owner, _ := cluster.CurrentOwner("job-next", "")
	p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: owner, Tags: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Release(ctx, st, p.ID)
	if err := m.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(vol); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume of the killed test still there: %v", err)
	}
	if out, _ := exec.Command("ip", "netns", "exec", h.Netns, "ip", "-o", "link", "show").CombinedOutput(); strings.Contains(string(out), tap) {
		t.Errorf("tap of the killed test still there:\n%s", out)
	}
	if _, rs, _ := m.Pools(ctx); len(rs) != 0 {
		t.Errorf("resource records left: %+v", rs)
	}
}

func holder(t *testing.T) {
	ctx := context.Background()
	st, err := cluster.OpenFileStore(os.Getenv("RESMGR_HOLDER"), "test")
	if err != nil {
		t.Fatal(err)
	}
	owner, err := cluster.CurrentOwner("job-killed", "1-test")
	if err != nil {
		t.Fatal(err)
	}
	wants := []Want{
		{Name: "disk", Type: TypeVolume, On: []string{"a", "b"}, Allocate: "a", Params: map[string]string{"image_size": "1G", "image_format": "raw"}},
		{Name: "net", Type: TypePort, On: []string{"b"}},
	}
	p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: owner, Tags: []string{"a", "b"}, Reserve: Reserve(wants),
		Choose: func(idle []cluster.Node) (map[string]string, error) {
			return map[string]string{"a": "node1", "b": "node2"}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(st, ConnectDialer(cluster.ConnectOptions{}), nil)
	got, err := m.Acquire(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	var vol, tap string
	for _, g := range got {
		switch g.Type {
		case TypeVolume:
			vol = g.Value
		case TypePort:
			tap = g.Value
		}
	}
	fmt.Printf("HELD %s %s\n", vol, tap)
	time.Sleep(time.Hour)
}
