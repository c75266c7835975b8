package resmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/internal/testutil"
	"github.com/vtcluster/vtcluster/resmgr/node"
)

// A node fake for make unit: the real node service (resmgr/node) in this
// process, on temporary directories, reached without XML-RPC or SSH. What
// it cannot stand in for is the transport, which the lab tests cover.

// inProcessConn is a Conn to a node.Service in this process.
type inProcessConn struct{ svc *node.Service }

func (c inProcessConn) Call(ctx context.Context, method string, args ...any) (any, error) {
	name, ok := strings.CutPrefix(method, "resource.")
	m := c.svc.Methods()[name]
	if !ok || m == nil {
		return nil, fmt.Errorf("no method %s", method)
	}
	v, err := m(ctx, agent.Args(args))
	return testutil.Plain(v), err
}

func (inProcessConn) Close() error { return nil }

// countingStore counts the state's loads and updates.
type countingStore struct {
	cluster.Store
	loads, updates atomic.Int32
}

func (c *countingStore) Load(ctx context.Context) (*cluster.State, error) {
	c.loads.Add(1)
	return c.Store.Load(ctx)
}

func (c *countingStore) Update(ctx context.Context, fn func(*cluster.State) error) error {
	c.updates.Add(1)
	return c.Store.Update(ctx, fn)
}

// fakeCluster is a state with the given nodes registered, each with an
// in-process node service, and a manager on a counting store.
func fakeCluster(t *testing.T, names ...string) (*countingStore, *Manager) {
	t.Helper()
	fs, _ := storeWithNodes(t, names...)
	svcs := map[string]*node.Service{}
	for _, n := range names {
		svc, err := node.New(node.Config{DataDir: filepath.Join(t.TempDir(), n)})
		if err != nil {
			t.Fatal(err)
		}
		svcs[n] = svc
	}
	st := &countingStore{Store: fs}
	m := NewManager(st, func(ctx context.Context, n cluster.Node) (Conn, error) {
		return inProcessConn{svcs[n.Name]}, nil
	}, nil)
	t.Cleanup(func() { m.Close() })
	return st, m
}

// The resource walk of design review 2.3: acquiring a volume on two nodes
// read the state 5 times and wrote it 4 times. Now: one read, a write
// after the bindings (a crash leaves them recorded), a write after the
// allocation.
func TestManager_acquireLoadsOnceWritesTwice(t *testing.T) {
	st, m := fakeCluster(t, "node1", "node2")
	ctx := context.Background()
	shared := t.TempDir()
	if err := m.Setup(ctx, json.RawMessage(`{"storage": {"shared": {"type": "filesystem", "path": "`+shared+`"}}}`)); err != nil {
		t.Fatal(err)
	}
	if err := m.Startup(ctx); err != nil {
		t.Fatal(err)
	}
	owner, _ := cluster.CurrentOwner("job-count", "1-test")
	p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: owner, Tags: []string{"a", "b"},
		Reserve: Reserve([]Want{{Name: "disk", Type: TypeVolume, On: []string{"a", "b"}, Allocate: "a", Params: map[string]string{"image_size": "1M", "image_format": "raw"}}}),
		Choose: func([]cluster.Node) (map[string]string, error) {
			return map[string]string{"a": "node1", "b": "node2"}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	st.loads.Store(0)
	st.updates.Store(0)
	got, err := m.Acquire(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if l, u := st.loads.Load(), st.updates.Load(); l != 1 || u != 2 {
		t.Errorf("Acquire of a two-node volume: %d loads and %d writes, want 1 and 2", l, u)
	}
	want := filepath.Join(shared, "disk_"+p.ID[:12]+".raw")
	if len(got) != 2 || got[0].Node != "node1" || got[1].Node != "node2" {
		t.Fatalf("acquired %+v", got)
	}
	for _, g := range got {
		if g.Path != want || g.Value != want || g.Format != "raw" || g.Type != TypeVolume || g.Name != "disk" {
			t.Errorf("acquired %+v, want %s (raw)", g, want)
		}
	}
	// What the nodes reported is what was recorded.
	info, err := m.ResourceInfo(ctx, got[0].ID, "meta.allocated")
	if err != nil || string(info) != `{"allocated": true}` {
		t.Errorf("recorded: %s %v", info, err)
	}
	// Every other operation: one read, one write (clone two: its record
	// first, so a crash leaves it to Remove).
	for _, op := range []struct {
		name          string
		loads, writes int32
		run           func() error
	}{
		{"sync", 1, 1, func() error { _, err := m.UpdateResource(ctx, got[0].ID, "sync", "node2", nil); return err }},
		{"resize", 1, 1, func() error {
			_, err := m.UpdateResource(ctx, got[0].ID, "resize", "node1", map[string]any{"size": "2M"})
			return err
		}},
		{"clone", 1, 2, func() error { _, err := m.UpdateResource(ctx, got[0].ID, "clone", "node1", nil); return err }},
		{"unbind node2", 1, 1, func() error { return m.UnbindResource(ctx, got[0].ID, []string{"node2"}) }},
		{"bind node2", 1, 1, func() error { return m.BindResource(ctx, got[0].ID, []string{"node2"}) }},
	} {
		st.loads.Store(0)
		st.updates.Store(0)
		if err := op.run(); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		if l, u := st.loads.Load(), st.updates.Load(); l != op.loads || u != op.writes {
			t.Errorf("%s: %d loads and %d writes, want %d and %d", op.name, l, u, op.loads, op.writes)
		}
	}
	if err := m.ReleasePartition(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(shared); len(entries) != 0 {
		t.Errorf("left in the pool after the partition's release: %v", entries)
	}
	if _, err := os.Stat(want); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume after the partition's release: %v", err)
	}
}

// A 20 GiB volume on a pool with 1 GiB is refused at create, naming both
// sizes, unless the pool allows overcommit. The pool is a real 1 GiB
// tmpfs.
func TestManager_volumeBeyondPoolCapacityRefusedAtCreate(t *testing.T) {
	small := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=1G,mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) })
	os.Mkdir(filepath.Join(small, "strict"), 0o755)
	os.Mkdir(filepath.Join(small, "lax"), 0o755)
	_, m := fakeCluster(t, "node1")
	ctx := context.Background()
	pools := `{"storage": {"strict": {"type": "filesystem", "path": "` + small + `/strict"},
	                       "lax": {"type": "filesystem", "path": "` + small + `/lax", "overcommit": true}}}`
	if err := m.Setup(ctx, json.RawMessage(pools)); err != nil {
		t.Fatal(err)
	}
	if err := m.Startup(ctx); err != nil {
		t.Fatal(err)
	}
	caps, err := m.PoolCapacity(ctx, "strict")
	if err != nil || caps["node1"].Size != 1<<30 {
		t.Errorf("capacity of strict: %v %v", caps, err)
	}
	_, err = m.CreateResourceFromParams(ctx, "big", TypeVolume, map[string]string{"image_size": "20G", "storage_type": "filesystem",
		"volume_pool_selectors": `[{"key": "name", "operator": "==", "values": "strict"}]`})
	var ce *CapacityError
	if !errors.As(err, &ce) || ce.Size != 20<<30 || ce.Total != 1<<30 || !strings.Contains(err.Error(), "needs 20.0 GiB") || !strings.Contains(err.Error(), "of 1.0 GiB") {
		t.Errorf("20 GiB on a 1 GiB pool: %v", err)
	}
	if _, rs, _ := m.Pools(ctx); len(rs) != 0 {
		t.Errorf("a refused resource was recorded: %+v", rs)
	}
	id, err := m.CreateResourceFromParams(ctx, "big", TypeVolume, map[string]string{"image_size": "20G",
		"volume_pool_selectors": `[{"key": "name", "operator": "==", "values": "lax"}]`})
	if err != nil {
		t.Fatalf("20 GiB on an overcommitted pool: %v", err)
	}
	if err := m.BindResource(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	// The refusal above needs nothing installed; allocating makes a qcow2.
	testutil.NeedCommand(t, "qemu-img", "qemu-utils", "the overcommitted volume is allocated as a qcow2 image")
	if _, err := m.UpdateResource(ctx, id, "allocate", "", nil); err != nil {
		t.Fatalf("allocate on an overcommitted pool: %v", err)
	}
	if err := m.Teardown(ctx, ""); err != nil {
		t.Fatal(err)
	}
}

// The errors say what to do.
func TestManager_errorsSayWhatToDo(t *testing.T) {
	_, m := fakeCluster(t, "node1")
	ctx := context.Background()
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	pools := `{"storage": {"s": {"type": "filesystem", "path": "` + t.TempDir() + `"},
	                       "w": {"type": "filesystem", "path": "` + open + `"}}}`
	if err := m.Setup(ctx, json.RawMessage(pools)); err != nil {
		t.Fatal(err)
	}
	_, err := m.CreateResourceFromParams(ctx, "v", "volumne", nil)
	var ut *UnknownResourceTypeError
	if !errors.As(err, &ut) || err.Error() != `resmgr: unknown resource type "volumne" (known: volume, port)` {
		t.Errorf("type typo: %v", err)
	}
	_, err = m.CreateResourceFromParams(ctx, "p", TypePort, nil)
	if !errors.Is(err, ErrPoolNotAvailable) || !strings.Contains(err.Error(), "s (filesystem): holds no port") {
		t.Errorf("no pool: %v", err)
	}
	// Binding on a node where the pool is not attached attaches it.
	id, err := m.CreateResourceFromParams(ctx, "v", TypeVolume, map[string]string{"image_size": "1M"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.BindResource(ctx, id, nil); err != nil {
		t.Fatalf("bind on a pool not attached yet: %v", err)
	}
	if ps, _, _ := m.Pools(ctx); len(ps[0].Connected) != 1 || ps[0].Connected[0] != "node1" {
		t.Errorf("pool after bind: %+v", ps[0])
	}
	// One that cannot be attached is named, with why and the command.
	id, err = m.CreateResourceFromParams(ctx, "w", TypeVolume, map[string]string{"image_size": "1M",
		"volume_pool_selectors": `[{"key": "name", "operator": "==", "values": "w"}]`})
	if err != nil {
		t.Fatal(err)
	}
	err = m.BindResource(ctx, id, nil)
	var nc *NotConnectedError
	if !errors.As(err, &nc) || !strings.Contains(err.Error(), "writable by others") || !strings.Contains(err.Error(), "vtcluster pool attach w") || strings.Count(err.Error(), "resmgr:") != 1 {
		t.Errorf("bind on a pool that cannot be attached: %v", err)
	}
}
