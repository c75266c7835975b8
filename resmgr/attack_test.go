package resmgr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vtcluster/vtcluster/cluster"
)

// The audit's attacks on the resource manager (security-audit-2026-12b
// H2, M1, L3, L4), each reproduced against real agents on lab hosts and
// refused. The attacker is the unprivileged user nobody, as in the audit;
// lab hosts share this machine's filesystem, so what nobody plants here
// is what the node's agent finds.

const nobody = 65534

// asNobody runs a shell script as nobody (the attacker's moves are
// shell-sized: mv, ln -s).
func asNobody(t *testing.T, script string) {
	t.Helper()
	cmd := exec.Command("sh", "-ec", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as nobody: %s: %v\n%s", script, err, out)
	}
}

// attackDirs makes a base directory nobody can enter (0755, root's), a
// canary directory of root's files outside any pool, and returns them.
func attackDirs(t *testing.T) (base, canary string) {
	t.Helper()
	base = t.TempDir()
	// t.TempDir's directories are root's, 0700: open them for nobody.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	canary = filepath.Join(base, "canary")
	if err := os.MkdirAll(filepath.Join(canary, "victimdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"target": "32 bytes of a root-owned file...", "secret": "TOP-SECRET-KEY-MATERIAL", "victimdir/del.raw": "someone else's file"} {
		mode := os.FileMode(0o644)
		if name == "secret" {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(canary, name), []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	return base, canary
}

// canaryIntact fails the test if anything under canary changed.
func canaryIntact(t *testing.T, canary string) {
	t.Helper()
	want := map[string]string{"target": "32 bytes of a root-owned file...", "secret": "TOP-SECRET-KEY-MATERIAL", "victimdir/del.raw": "someone else's file"}
	got := map[string]string{}
	filepath.Walk(canary, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(canary, p)
			got[rel] = string(data)
		}
		return nil
	})
	if len(got) != len(want) {
		t.Errorf("files outside the pool: %v, want exactly %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s outside the pool: %q, want %q", k, got[k], v)
		}
	}
}

// poolWith sets the one pool "p" up, attached to every node.
func poolWith(t *testing.T, ctx context.Context, m *Manager, cfg string) error {
	t.Helper()
	if err := m.Setup(ctx, json.RawMessage(`{"storage": {"p": `+cfg+`}}`)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Teardown(context.Background(), "") })
	return m.Startup(ctx)
}

func volumeOn(t *testing.T, ctx context.Context, m *Manager, name string, params map[string]string, nodes ...string) string {
	t.Helper()
	if params["image_size"] == "" {
		params["image_size"] = "1M"
	}
	id, err := m.CreateResourceFromParams(ctx, name, TypeVolume, params)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.BindResource(ctx, id, nodes); err != nil {
		t.Fatal(err)
	}
	return id
}

// H2: release deleted a volume's file whoever made it.
func TestAttack_H2_releaseDeletesOnlyWhatTheAgentMade(t *testing.T) {
	_, m, _ := labCluster(t, 2)
	ctx := testCtx(t)
	base, _ := attackDirs(t)
	pool := filepath.Join(base, "pool")
	if err := poolWith(t, ctx, m, `{"type": "filesystem", "path": "`+pool+`"}`); err != nil {
		t.Fatal(err)
	}
	// 1. A pre-existing image with the volume's name: allocate refuses it,
	// destroy --force (Remove) leaves it.
	golden := filepath.Join(pool, "golden.qcow2")
	if err := os.WriteFile(golden, []byte("precious base image"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := volumeOn(t, ctx, m, "vol1", map[string]string{"image_name": "golden"}, "node1")
	if _, err := m.UpdateResource(ctx, r, "allocate", "node1", nil); err == nil || !strings.Contains(err.Error(), "this agent did not make it") {
		t.Errorf("allocate over a pre-existing file: %v", err)
	}
	if err := m.Remove(ctx, r); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(golden); err != nil || string(data) != "precious base image" {
		t.Errorf("pre-existing image after destroy --force: %q, %v", data, err)
	}
	// 1b. The same through a test's resources (the runner's path: Reserve
	// with the partition, Acquire, ReleasePartition): the test fails, the
	// partition's release leaves the image.
	owner, _ := cluster.CurrentOwner("job-golden", "1-golden")
	part, err := cluster.Allocate(ctx, m.st, cluster.AllocRequest{Owner: owner, Tags: []string{"a"},
		Reserve: Reserve([]Want{{Name: "golden", Type: TypeVolume, On: []string{"a"}, Params: map[string]string{"image_name": "golden", "image_size": "1M"}}}),
		Choose:  func([]cluster.Node) (map[string]string, error) { return map[string]string{"a": "node1"}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Acquire(ctx, part.ID); err == nil || !strings.Contains(err.Error(), "this agent did not make it") {
		t.Errorf("acquire over a pre-existing image: %v", err)
	}
	if err := m.ReleasePartition(ctx, part.ID); err != nil {
		t.Fatal(err)
	}
	cluster.Release(ctx, m.st, part.ID)
	if data, err := os.ReadFile(golden); err != nil || string(data) != "precious base image" {
		t.Errorf("pre-existing image after the test's release: %q, %v", data, err)
	}
	// 2. Two resources with the default image_name: the second is refused,
	// naming the first.
	a := volumeOn(t, ctx, m, "diskA", map[string]string{"image_format": "raw"}, "node1")
	if _, err := m.UpdateResource(ctx, a, "allocate", "node1", nil); err != nil {
		t.Fatal(err)
	}
	_, err = m.CreateResourceFromParams(ctx, "diskB", TypeVolume, map[string]string{"image_format": "raw", "image_size": "1M"})
	var refused *RefusedError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "diskA") {
		t.Errorf("second resource on image.raw: %v, want a refusal naming diskA", err)
	}
	// 3. The same, around the controller: node2's agent gets a backing
	// for another resource on diskA's file. Its allocate is refused, and
	// its release leaves diskA's file.
	s, _, err := m.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, rec, _ := m.snapshot(ctx)
	poolID := rec.Pools[0].Config.Meta.UUID
	out, err := m.call(ctx, s, "node2", "create_resource_backing", map[string]any{
		"meta": map[string]any{"uuid": "intruder", "type": "volume", "pool": poolID}, "spec": map[string]any{"filename": "image.raw"}})
	if err != nil {
		t.Fatal(err)
	}
	bid := out.(map[string]any)["backing"].(string)
	if _, err := m.call(ctx, s, "node2", "update_resource_by_backing", bid, "allocate", map[string]any{"size": 1 << 20}); err == nil {
		t.Error("allocate of another resource's file accepted")
	}
	if _, err := m.call(ctx, s, "node2", "update_resource_by_backing", bid, "release", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	m.call(ctx, s, "node2", "destroy_resource_backing", bid)
	if _, err := os.Stat(filepath.Join(pool, "image.raw")); err != nil {
		t.Errorf("diskA's file after the other backing's release: %v", err)
	}
	if info, _ := m.ResourceInfo(ctx, a, "meta.allocated"); string(info) != `{"allocated": true}` {
		t.Errorf("diskA: %s", info)
	}
	// And diskA's own release still removes its file.
	if err := m.Remove(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(pool, "image.raw")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("diskA's file after its own removal: %v", err)
	}
}

// M1: in a pool directory others may write, root followed their links.
func TestAttack_M1_otherWritablePool(t *testing.T) {
	_, m, _ := labCluster(t, 1)
	ctx := testCtx(t)
	base, canary := attackDirs(t)
	pool := filepath.Join(base, "wshared")
	if err := os.Mkdir(pool, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(pool, 0o777)
	// Refused at attach, unless the pool accepts other writers.
	err := poolWith(t, ctx, m, `{"type": "filesystem", "path": "`+pool+`"}`)
	if err == nil || !strings.Contains(err.Error(), "writable by others") || !strings.Contains(err.Error(), "allow-other-writers") {
		t.Fatalf("attach of a 0777 pool: %v", err)
	}
	m.Teardown(ctx, "")
	if err := poolWith(t, ctx, m, `{"type": "filesystem", "path": "`+pool+`", "allow_other_writers": true}`); err != nil {
		t.Fatal(err)
	}

	t.Run("resize", func(t *testing.T) {
		r := volumeOn(t, ctx, m, "rz", map[string]string{"image_name": "rz", "image_format": "raw"})
		if _, err := m.UpdateResource(ctx, r, "allocate", "", nil); err != nil {
			t.Fatal(err)
		}
		asNobody(t, "cd "+pool+" && mv rz.raw rz.moved && ln -s "+canary+"/target rz.raw")
		if _, err := m.UpdateResource(ctx, r, "resize", "", map[string]any{"size": "2M"}); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("resize through a planted link: %v", err)
		}
	})
	t.Run("clone", func(t *testing.T) {
		r := volumeOn(t, ctx, m, "cl", map[string]string{"image_name": "cl", "image_format": "raw"})
		if _, err := m.UpdateResource(ctx, r, "allocate", "", nil); err != nil {
			t.Fatal(err)
		}
		asNobody(t, "cd "+pool+" && mv cl.raw cl.moved && ln -s "+canary+"/secret cl.raw")
		if _, err := m.UpdateResource(ctx, r, "clone", "", nil); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("clone of a planted link: %v", err)
		}
		filepath.Walk(pool, func(p string, fi os.FileInfo, err error) error {
			if data, _ := os.ReadFile(p); err == nil && fi.Mode().IsRegular() && bytes.Contains(data, []byte("TOP-SECRET")) {
				t.Errorf("the secret was copied into the pool: %s", p)
			}
			return nil
		})
	})
	t.Run("release", func(t *testing.T) {
		r := volumeOn(t, ctx, m, "del", map[string]string{"image_name": "images/del", "image_format": "raw"})
		if _, err := m.UpdateResource(ctx, r, "allocate", "", nil); err != nil {
			t.Fatal(err)
		}
		asNobody(t, "cd "+pool+" && mv images images.moved && ln -s "+canary+"/victimdir images")
		if err := m.Remove(ctx, r); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("destroy --force through a planted directory link: %v", err)
		}
	})
	t.Run("allocate", func(t *testing.T) {
		asNobody(t, "cd "+pool+" && mkdir out && ln -s "+canary+"/victimdir out/sub")
		r, err := m.CreateResourceFromParams(ctx, "out", TypeVolume, map[string]string{"image_name": "out/sub/out", "image_format": "raw", "image_size": "1M"})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.BindResource(ctx, r, nil); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("bind through a planted link: %v", err)
		}
		// Planted after the bind: allocate is refused.
		r2 := volumeOn(t, ctx, m, "out2", map[string]string{"image_name": "later/out", "image_format": "raw"})
		asNobody(t, "cd "+pool+" && ln -s "+canary+"/victimdir later")
		if _, err := m.UpdateResource(ctx, r2, "allocate", "", nil); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("allocate through a planted link: %v", err)
		}
	})
	t.Run("qcow2 race", func(t *testing.T) {
		// nobody swaps race.qcow2 between nothing and a link to the
		// canary as fast as it can while the agent allocates it 20 times.
		stop := filepath.Join(base, "stop-race")
		cmd := exec.Command("sh", "-c", "cd "+pool+" && while [ ! -e "+stop+" ]; do ln -s "+canary+"/target race.qcow2 2>/dev/null; rm -f race.qcow2; done")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { os.WriteFile(stop, nil, 0o644); cmd.Wait() }()
		for range 20 {
			r, err := m.CreateResourceFromParams(ctx, "race", TypeVolume, map[string]string{"image_name": "race", "image_size": "1M"})
			if err != nil {
				t.Fatal(err)
			}
			if m.BindResource(ctx, r, nil) == nil {
				m.UpdateResource(ctx, r, "allocate", "", nil)
			}
			// A release that finds its file swapped reports it once (and
			// deletes nothing); the second removal then goes through.
			if err := m.Remove(ctx, r); err != nil {
				if err := m.Remove(ctx, r); err != nil {
					t.Fatalf("second removal: %v", err)
				}
			}
		}
	})
	canaryIntact(t, canary)
}

// L3: a port backing's release deleted whatever interface had its name.
func TestAttack_L3_portReleaseRemovesOnlyItsTap(t *testing.T) {
	_, m, l := labCluster(t, 1)
	ctx := testCtx(t)
	h, _ := l.Host(0)
	ip := func(args ...string) string {
		out, err := exec.Command("ip", append([]string{"netns", "exec", h.Netns, "ip"}, args...)...).CombinedOutput()
		if err != nil && args[0] != "-o" {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
		return string(out)
	}
	ip("link", "add", "brx", "type", "bridge")
	if err := m.Setup(ctx, json.RawMessage(`{"net": {"br": {"type": "linux_bridge", "switch": {"node1": {"ifname": "brx"}}, "access": {"nodes": ["node1"]}}}}`)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Teardown(context.Background(), "") })
	if err := m.Startup(ctx); err != nil {
		t.Fatal(err)
	}
	s, rec, _ := m.snapshot(ctx)
	poolID := rec.Pools[0].Config.Meta.UUID
	port := func(res, ifname string) (string, error) {
		out, err := m.call(ctx, s, "node1", "create_resource_backing", map[string]any{
			"meta": map[string]any{"uuid": res, "type": "port", "pool": poolID}, "spec": map[string]any{"ifname": ifname}})
		if err != nil {
			return "", err
		}
		return out.(map[string]any)["backing"].(string), nil
	}
	// A backing named after the pool's bridge is refused.
	if _, err := port("p1", "brx"); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("backing on the bridge's name: %v", err)
	}
	// A backing that never made its tap leaves an interface that later
	// took the name.
	b, err := port("p2", "tap_later")
	if err != nil {
		t.Fatal(err)
	}
	ip("tuntap", "add", "dev", "tap_later", "mode", "tap")
	if _, err := m.call(ctx, s, "node1", "update_resource_by_backing", b, "release", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	m.call(ctx, s, "node1", "destroy_resource_backing", b)
	// A tap that was replaced by another tap of its name (a new index)
	// is left.
	b, err = port("p3", "tap_swap")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.call(ctx, s, "node1", "update_resource_by_backing", b, "allocate", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	ip("link", "del", "tap_swap")
	ip("tuntap", "add", "dev", "tap_swap", "mode", "tap")
	if _, err := m.call(ctx, s, "node1", "update_resource_by_backing", b, "release", map[string]any{}); err == nil || !strings.Contains(err.Error(), "not the tap this backing made") {
		t.Errorf("release of a replaced tap: %v", err)
	}
	m.call(ctx, s, "node1", "destroy_resource_backing", b)
	links := ip("-o", "link", "show")
	for _, name := range []string{"brx", "tap_later", "tap_swap"} {
		if !strings.Contains(links, name+":") && !strings.Contains(links, name+"@") {
			t.Errorf("%s was deleted:\n%s", name, links)
		}
	}
}

// L4: a corrupt backings.json stopped the whole agent.
func TestAttack_L4_corruptRecordDisablesOnlyResources(t *testing.T) {
	st, m, _, c := labClusterCtl(t, 1)
	ctx := testCtx(t)
	s, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := s.Node("node1")
	record := filepath.Join(n.AgentDir(), "data", "resource", "backings.json")
	if _, err := c.StopAgents(ctx); err != nil {
		t.Fatal(err)
	}
	m.Close()
	os.MkdirAll(filepath.Dir(record), 0o700)
	if err := os.WriteFile(record, []byte(`{"pools": {"x": {"uu`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartAgents(ctx); err != nil {
		t.Fatalf("agent start with a corrupt resource record: %v", err)
	}
	conn, err := cluster.Connect(ctx, *n, cluster.ConnectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Call(ctx, "process.run", []any{"true"}); err != nil {
		t.Errorf("process service with a corrupt resource record: %v", err)
	}
	_, err = conn.Call(ctx, "resource.query_resource_backing", "x")
	if err == nil || !strings.Contains(err.Error(), record) || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("resource call: %v, want the service disabled naming %s", err, record)
	}
}
