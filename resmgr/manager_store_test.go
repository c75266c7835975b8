package resmgr

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
)

// These tests need no agent: they work on the record in a real state file.
// Nodes are registered at an address of TEST-NET-1 (RFC 5737), which no
// host answers, so a call to them really fails.

func storeWithNodes(t *testing.T, names ...string) (*cluster.FileStore, *Manager) {
	t.Helper()
	st, err := cluster.OpenFileStore(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(context.Background(), func(s *cluster.State) error {
		for _, n := range names {
			h := cluster.DefaultHostConfig(n)
			h.Address = "192.0.2.1"
			if err := s.RegisterNode(h.Node(), false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(st, ConnectDialer(cluster.ConnectOptions{ConnectTimeout: 300 * time.Millisecond}), nil)
	t.Cleanup(func() { m.Close() })
	return st, m
}

func TestManager_recordOnlyOperations(t *testing.T) {
	_, m := storeWithNodes(t, "node1", "node2")
	ctx := context.Background()
	pools := `{"s": {"nas": {"type": "nfs", "server": "192.0.2.5", "export": "/e"},
	                 "local": {"type": "filesystem", "path": "/srv/a", "access": {"nodes": ["node1"]}}}}`
	if err := m.Setup(ctx, json.RawMessage(pools)); err != nil {
		t.Fatal(err)
	}
	ps, _, _ := m.Pools(ctx)
	var names []string
	for _, p := range ps {
		names = append(names, p.Config.Meta.Name)
	}
	// node1 has a configured filesystem pool; node2 gets a default one.
	if strings.Join(names, " ") != "nas local def_fs_pool_node2" {
		t.Errorf("pools = %v", names)
	}
	if _, err := m.CreatePoolFromParams(ctx, "local", json.RawMessage(`{"type": "filesystem"}`)); err == nil {
		t.Error("a second pool named local was accepted")
	}
	id, err := m.CreateResourceFromParams(ctx, "v", TypeVolume, map[string]string{"storage_type": "nfs", "image_size": "1G"})
	if err != nil {
		t.Fatal(err)
	}
	copyID, err := m.CreateResourceFromSource(ctx, id, "local")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := m.ResourceInfo(ctx, copyID, "")
	var c ResourceConfig
	json.Unmarshal(info, &c)
	if c.Meta.UUID == id || c.Meta.Pool != ps[1].Config.Meta.UUID || c.Meta.Allocated || !strings.HasPrefix(c.Spec.Filename, "image.qcow2_") || len(c.Spec.Filename) != len("image.qcow2_")+8 {
		t.Errorf("copy: %s", info)
	}
	if _, err := m.CreateResourceFromSource(ctx, id, ps[0].Config.Meta.Name); err != nil {
		t.Errorf("copy into the source's pool type: %v", err)
	}
	if _, err := m.CreateResourceFromParams(ctx, "p", TypePort, nil); !errors.Is(err, ErrPoolNotAvailable) {
		t.Errorf("a port without a bridge pool: %v", err)
	}
	var nf *NotFoundError
	for name, err := range map[string]error{
		"destroy":  m.DestroyResource(ctx, "nope"),
		"bind":     m.BindResource(ctx, "nope", nil),
		"pool":     m.DestroyPool(ctx, "nope"),
		"attach":   m.AttachPool(ctx, "nope"),
		"fromsrc":  func() error { _, err := m.CreateResourceFromSource(ctx, "nope", ""); return err }(),
		"update":   func() error { _, err := m.UpdateResource(ctx, "nope", "sync", "", nil); return err }(),
		"bindings": func() error { _, err := m.BindingNodes(ctx, "nope"); return err }(),
	} {
		if !errors.As(err, &nf) {
			t.Errorf("%s of an unknown id: %v, want a *NotFoundError", name, err)
		}
	}
	if _, err := m.UpdateResource(ctx, id, "allocate", "", nil); err == nil || !strings.Contains(err.Error(), "not bound to any node") {
		t.Errorf("allocate unbound: %v", err)
	}
	if err := m.Setup(ctx, json.RawMessage(`{}`)); err == nil || !strings.Contains(err.Error(), "resources still exist") {
		t.Errorf("setup over resources: %v", err)
	}
}

// TestManager_sweepKeepsWhatItCannotRemove: a reclaimed partition's
// resource on a node that does not answer stays claimed for the next
// sweep instead of being forgotten (which would leak it on the node).
func TestManager_sweepKeepsWhatItCannotRemove(t *testing.T) {
	st, m := storeWithNodes(t, "node1")
	ctx := context.Background()
	if err := m.Setup(ctx, json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	// Pretend the default pool is attached, as startup would have done.
	err := m.update(ctx, func(s *cluster.State, r *record) error {
		r.Pools[0].Connected = []string{"node1"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	remote := cluster.Owner{Host: "elsewhere.invalid", PID: 1, JobID: "j"}
	p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: remote, Tags: []string{"a"}, Lease: time.Millisecond,
		Reserve: Reserve([]Want{{Name: "disk", Type: TypeVolume, On: []string{"a"}, Allocate: "a"}})})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Claims) != 1 {
		t.Fatalf("claims = %+v", p.Claims)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := cluster.Reclaim(ctx, st, time.Now()); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.Sweep(cctx); err == nil {
		t.Fatal("sweep reached a node that does not exist")
	}
	s, _ := st.Load(ctx)
	if len(s.Released) != 1 || s.Released[0].ID != p.Claims[0].ID {
		t.Errorf("released after a failed sweep = %+v, want the claim kept", s.Released)
	}
	if _, rs, _ := m.Pools(ctx); len(rs) != 1 || rs[0].Partition != p.ID || rs[0].Job != "j" {
		t.Errorf("resource records = %+v", rs)
	}
}
