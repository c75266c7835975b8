package node

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
	"github.com/vtcluster/vtcluster/cluster/lab"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// call invokes one RPC the way the agent's dispatcher does.
func call(t *testing.T, s *Service, name string, args ...any) any {
	t.Helper()
	m, ok := s.Methods()[name]
	if !ok {
		t.Fatalf("no method %s", name)
	}
	v, err := m(context.Background(), agent.Args(args))
	if err != nil {
		t.Fatalf("%s: fault %v", name, err)
	}
	return v
}

// out returns the reply's code and "out" as plain JSON-like values.
func out(t *testing.T, v any) (int, any) {
	t.Helper()
	r, ok := v.([]any)
	if !ok || len(r) != 2 {
		t.Fatalf("reply %#v is not [code, {...}]", v)
	}
	o, _ := r[1].(xmlrpc.Struct).Get("out")
	return r[0].(int), testutil.Plain(o)
}

func mustOK(t *testing.T, v any) any {
	t.Helper()
	code, o := out(t, v)
	if code != 0 {
		t.Fatalf("reply code %d: %v", code, o)
	}
	return o
}

func mustFail(t *testing.T, v any, want string) {
	t.Helper()
	code, o := out(t, v)
	if code != 1 || !strings.Contains(o.(string), want) {
		t.Fatalf("reply [%d, %v], want failure containing %q", code, o, want)
	}
}

func newNode(t *testing.T, dir string, run Commander) *Service {
	t.Helper()
	s, err := New(Config{DataDir: dir, Run: run})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dirPool(uuid, path string) map[string]any {
	return map[string]any{"meta": map[string]any{"uuid": uuid, "type": "filesystem", "name": "p", "access": map[string]any{"nodes": []any{"node1"}}},
		"spec": map[string]any{"path": path}}
}

func volume(uuid, pool, filename string) map[string]any {
	return map[string]any{"meta": map[string]any{"uuid": uuid, "type": "volume", "pool": pool},
		"spec": map[string]any{"filename": filename, "uri": nil}}
}

func TestNodeService_dirPoolVolumeLifecycle(t *testing.T) {
	data := t.TempDir()
	s := newNode(t, data, nil)
	if v := call(t, s, "start_resource_backing_service"); v != nil {
		t.Errorf("start = %v, want None", v)
	}
	got := mustOK(t, call(t, s, "create_pool_connection", dirPool("p1", "")))
	root := filepath.Join(data, "root_dir")
	if want := map[string]any{"spec": map[string]any{"path": root}}; !reflect.DeepEqual(got, want) {
		t.Errorf("create_pool_connection out = %v, want %v", got, want)
	}
	got = mustOK(t, call(t, s, "create_resource_backing", volume("r1", "p1", "big.raw")))
	m := got.(map[string]any)
	bid := m["backing"].(string)
	if want := map[string]any{"allocated": false}; !reflect.DeepEqual(m["meta"], want) {
		t.Errorf("meta = %v", m["meta"])
	}
	if want := map[string]any{"uri": filepath.Join(root, "big.raw"), "allocation": nil}; !reflect.DeepEqual(m["spec"], want) {
		t.Errorf("spec = %v", m["spec"])
	}
	// 20 GiB: upstream's replies broke at 2 GiB; ours is sparse and int64.
	got = mustOK(t, call(t, s, "update_resource_by_backing", bid, "allocate", map[string]any{"size": "21474836480"}))
	if want := map[string]any{"meta": map[string]any{"allocated": true}, "spec": map[string]any{"uri": filepath.Join(root, "big.raw"), "allocation": int64(21474836480)}}; !reflect.DeepEqual(got, want) {
		t.Errorf("allocate out = %v, want %v", got, want)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(root, "big.raw"), &st); err != nil || st.Size != 21474836480 || st.Blocks*512 > 1<<20 {
		t.Errorf("volume file: size %d, %d blocks, %v; want a sparse 20 GiB file", st.Size, st.Blocks, err)
	}
	got = mustOK(t, call(t, s, "update_resource_by_backing", bid, "resize", map[string]any{"size": 22 << 30}))
	if a := got.(map[string]any)["spec"].(map[string]any)["allocation"]; a != int64(22<<30) {
		t.Errorf("after resize allocation = %v", a)
	}
	mustFail(t, call(t, s, "update_resource_by_backing", bid, "resize", map[string]any{"size": 1 << 20}), "cannot shrink")
	mustFail(t, call(t, s, "update_resource_by_backing", bid, "defrag", nil), "Unsupported command defrag for a volume resource")

	// clone into a second backing keeps holes.
	c := mustOK(t, call(t, s, "create_resource_backing", volume("r2", "p1", "big.raw_clone_AbC123xy"))).(map[string]any)
	got = mustOK(t, call(t, s, "clone_resource_by_backing", c["backing"], map[string]any{"source": bid}))
	if a := got.(map[string]any)["meta"].(map[string]any)["allocated"]; a != true {
		t.Errorf("clone not allocated: %v", got)
	}
	if err := syscall.Stat(filepath.Join(root, "big.raw_clone_AbC123xy"), &st); err != nil || st.Size != 22<<30 || st.Blocks*512 > 1<<20 {
		t.Errorf("clone: size %d, %d blocks, %v", st.Size, st.Blocks, err)
	}

	// An agent restart finds its connections and backings again.
	s2 := newNode(t, data, nil)
	got = mustOK(t, call(t, s2, "update_resource_by_backing", bid, "sync", nil))
	if a := got.(map[string]any)["meta"].(map[string]any)["allocated"]; a != true {
		t.Errorf("after restart sync = %v", got)
	}
	if b := call(t, s2, "query_resource_backing", "r1"); b != bid {
		t.Errorf("query_resource_backing(r1) = %v, want %s", b, bid)
	}
	mustFail(t, call(t, s2, "destroy_pool_connection", "p1"), "The pool is still in use")

	if code, o := out(t, call(t, s2, "update_resource_by_backing", bid, "release", nil)); code != 0 || o != nil {
		t.Errorf("release = [%d, %v], want [0, {}]", code, o)
	}
	if _, err := os.Stat(filepath.Join(root, "big.raw")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("released volume still there: %v", err)
	}
	mustOK(t, call(t, s2, "destroy_resource_backing", bid))
	mustFail(t, call(t, s2, "destroy_resource_backing", bid), "'"+bid+"'")

	// Stopping the service releases the backings it still has (the clone)
	// and closes the pool; the root we made goes once empty.
	if v := call(t, s2, "stop_resource_backing_service"); v != nil {
		t.Errorf("stop = %v", v)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pool root after stop: %v", err)
	}
	mustFail(t, call(t, s2, "destroy_pool_connection", "p1"), "'p1'")
}

// needQemuImg skips t where qemu-img is missing.
func needQemuImg(t *testing.T) {
	testutil.NeedCommand(t, "qemu-img", "qemu-utils", "qcow2 volumes are made with it")
}

func TestNodeService_qcow2VolumeIsRealImage(t *testing.T) {
	needQemuImg(t)
	s := newNode(t, t.TempDir(), nil)
	mustOK(t, call(t, s, "create_pool_connection", dirPool("p1", "")))
	b := mustOK(t, call(t, s, "create_resource_backing", volume("r1", "p1", "disk.qcow2"))).(map[string]any)
	got := mustOK(t, call(t, s, "update_resource_by_backing", b["backing"], "allocate", map[string]any{"size": "3221225472"}))
	uri := got.(map[string]any)["spec"].(map[string]any)["uri"].(string)
	info, err := exec.Command("qemu-img", "info", "--output=json", uri).Output()
	if err != nil {
		t.Fatal(err)
	}
	var qi struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal(info, &qi); err != nil || qi.Format != "qcow2" || qi.VirtualSize != 3<<30 {
		t.Errorf("qemu-img info: %+v %v\n%s", qi, err, info)
	}
	mustOK(t, call(t, s, "update_resource_by_backing", b["backing"], "resize", map[string]any{"size": "4G"}))
	info, _ = exec.Command("qemu-img", "info", "--output=json", uri).Output()
	if json.Unmarshal(info, &qi); qi.VirtualSize != 4<<30 {
		t.Errorf("after resize virtual size %d", qi.VirtualSize)
	}
}

func TestNodeService_qcow2WithoutQemuImgNamesTheTool(t *testing.T) {
	s := newNode(t, t.TempDir(), func(ctx context.Context, argv []string) error {
		return &CommandError{Argv: argv, Err: ErrToolMissing}
	})
	mustOK(t, call(t, s, "create_pool_connection", dirPool("p1", "")))
	b := mustOK(t, call(t, s, "create_resource_backing", volume("r1", "p1", "disk.qcow2"))).(map[string]any)
	mustFail(t, call(t, s, "update_resource_by_backing", b["backing"], "allocate", map[string]any{"size": "1G"}), "qemu-img is not installed on this node")
}

func TestNodeService_refusesEscapesAndBadInput(t *testing.T) {
	data := t.TempDir()
	var ran [][]string
	s := newNode(t, data, func(ctx context.Context, argv []string) error { ran = append(ran, argv); return nil })
	mustOK(t, call(t, s, "create_pool_connection", dirPool("p1", "")))
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(data, "root_dir", "link"))
	for name, cfg := range map[string]map[string]any{
		"dotdot":   volume("r1", "p1", "../escape.raw"),
		"absolute": volume("r1", "p1", "/etc/passwd"),
		"shell":    volume("r1", "p1", "x; rm -rf / #"),
		"dollar":   volume("r1", "p1", "$(id).raw"),
		"option":   volume("r1", "p1", "-rf"),
		"symlink":  volume("r1", "p1", "link/x.raw"),
		"uri out":  {"meta": map[string]any{"uuid": "r1", "type": "volume", "pool": "p1"}, "spec": map[string]any{"uri": "/tmp/x.raw"}},
		"uri dots": {"meta": map[string]any{"uuid": "r1", "type": "volume", "pool": "p1"}, "spec": map[string]any{"uri": filepath.Join(data, "root_dir", "..", "x")}},
		"no pool":  volume("r1", "nope", "x.raw"),
		"bad type": {"meta": map[string]any{"uuid": "r1", "type": "gpu", "pool": "p1"}, "spec": map[string]any{}},
	} {
		t.Run(name, func(t *testing.T) {
			code, o := out(t, call(t, s, "create_resource_backing", cfg))
			if code != 1 {
				t.Errorf("accepted: %v", o)
			}
		})
	}
	b := mustOK(t, call(t, s, "create_resource_backing", volume("r1", "p1", "ok.raw"))).(map[string]any)
	for _, size := range []any{"1M; touch /tmp/pwned #", "-1", 0, "99999999999999999999", "17T", "1.3B", nil, 1.5} {
		code, o := out(t, call(t, s, "update_resource_by_backing", b["backing"], "allocate", map[string]any{"size": size}))
		if code != 1 {
			t.Errorf("size %v accepted: %v", size, o)
		}
	}
	if len(ran) != 0 {
		t.Errorf("commands ran for refused input: %v", ran)
	}
	mustFail(t, call(t, s, "create_pool_connection", dirPool("p2", "/")), "root directory")
	mustFail(t, call(t, s, "create_pool_connection", dirPool("p3", "a/../../b")), "element")
	mustFail(t, call(t, s, "create_pool_connection", map[string]any{"meta": map[string]any{"uuid": "p4", "type": "zfs"}}), "Unknown pool type zfs")
}

// TestNodeService_nfsMount_fakeMount: this kernel cannot mount NFS, so the
// mount command is a stand-in; what is tested is the argv (every value its
// own item), the per-export mount point, and that a failed mount is a
// failure (upstream ignored it).
func TestNodeService_nfsMount_fakeMount(t *testing.T) {
	data := t.TempDir()
	var ran [][]string
	fail := false
	s := newNode(t, data, func(ctx context.Context, argv []string) error {
		ran = append(ran, argv)
		if fail {
			return &CommandError{Argv: argv, Output: "mount.nfs: Connection refused", Err: errors.New("exit status 32")}
		}
		return nil
	})
	pool := func(uuid, export, opts string) map[string]any {
		return map[string]any{"meta": map[string]any{"uuid": uuid, "type": "nfs"},
			"spec": map[string]any{"server": "192.0.2.9", "export": export, "mount-options": opts, "mount": nil}}
	}
	got := mustOK(t, call(t, s, "create_pool_connection", pool("n1", "/srv/a", "rw,vers=4.2")))
	mntA := filepath.Join(data, "nfs_mnt", "192.0.2.9", "srv_a")
	if want := map[string]any{"spec": map[string]any{"mount": mntA, "mount-options": "rw,vers=4.2"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("out = %v, want %v", got, want)
	}
	mustOK(t, call(t, s, "create_pool_connection", pool("n2", "/srv/b", "")))
	want := [][]string{
		{"mount", "-t", "nfs", "-o", "rw,vers=4.2", "--", "192.0.2.9:/srv/a", mntA},
		{"mount", "-t", "nfs", "--", "192.0.2.9:/srv/b", filepath.Join(data, "nfs_mnt", "192.0.2.9", "srv_b")},
	}
	if !reflect.DeepEqual(ran, want) {
		t.Errorf("commands = %q, want %q", ran, want)
	}
	mustFail(t, call(t, s, "create_pool_connection", pool("n3", "/srv/c", "rw;reboot")), "mount options")
	fail = true
	mustFail(t, call(t, s, "create_pool_connection", pool("n4", "/srv/d", "")), "mount failed: mount -t nfs -- 192.0.2.9:/srv/d")
	if _, err := os.Stat(filepath.Join(data, "nfs_mnt", "192.0.2.9", "srv_d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point of a failed mount left: %v", err)
	}
	fail = false
	ran = nil
	mustOK(t, call(t, s, "destroy_pool_connection", "n1"))
	if want := [][]string{{"umount", "--", mntA}}; !reflect.DeepEqual(ran, want) {
		t.Errorf("destroy ran %q, want %q", ran, want)
	}
}

// TestNodeService_tapPortsOnBridge runs its half inside a lab host's
// network namespace (ip netns exec also gives it that namespace's /sys),
// so the taps and the bridge are real and touch nothing of this machine.
func TestNodeService_tapPortsOnBridge(t *testing.T) {
	if os.Getenv("RESMGR_TAP_HELPER") != "" {
		tapHelper(t)
		return
	}
	l := lab.Start(t, 1)
	h, err := l.Host(0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", h.Netns, os.Args[0], "-test.run=^TestNodeService_tapPortsOnBridge$", "-test.v")
	cmd.Env = append(os.Environ(), "RESMGR_TAP_HELPER=1")
	outb, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(outb), "--- PASS") {
		t.Fatalf("helper in %s: %v\n%s", h.Netns, err, outb)
	}
	// Nothing is left in the node.
	links, _ := exec.Command("ip", "netns", "exec", h.Netns, "ip", "-o", "link", "show").Output()
	if strings.Contains(string(links), "tap_") {
		t.Errorf("taps left on the node:\n%s", links)
	}
}

// attachTap opens the tap the way QEMU's -netdev tap,ifname=NAME does
// (qemu-system is not installed here): TUNSETIFF on /dev/net/tun with
// IFF_TAP|IFF_NO_PI attaches to the existing persistent device.
func attachTap(name string) error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	return unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
}

func tapHelper(t *testing.T) {
	if out, err := exec.Command("ip", "link", "add", "br-test", "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	defer exec.Command("ip", "link", "del", "br-test").Run()
	s := newNode(t, t.TempDir(), nil)
	pool := map[string]any{"meta": map[string]any{"uuid": "br1", "type": "linux_bridge"},
		"spec": map[string]any{"switch": map[string]any{"ifname": "br-test"}, "export": map[string]any{"ifname": "br-test"}}}
	if code, o := out(t, call(t, s, "create_pool_connection", pool)); code != 0 || o != nil {
		t.Fatalf("create_pool_connection = [%d, %v], want [0, {}]", code, o)
	}
	port := map[string]any{"meta": map[string]any{"uuid": "port1", "type": "port", "pool": "br1"}, "spec": map[string]any{}}
	seen := map[string]bool{}
	for round := 0; round < 2; round++ {
		b := mustOK(t, call(t, s, "create_resource_backing", port)).(map[string]any)
		got := mustOK(t, call(t, s, "update_resource_by_backing", b["backing"], "allocate", nil)).(map[string]any)
		ifname := got["spec"].(map[string]any)["ifname"].(string)
		if seen[ifname] || !strings.HasPrefix(ifname, "tap_") {
			t.Errorf("round %d: ifname %q not fresh", round, ifname)
		}
		seen[ifname] = true
		if want := map[string]any{"port-type": "tap", "allocated": true}; !reflect.DeepEqual(got["meta"], want) {
			t.Errorf("meta = %v", got["meta"])
		}
		master, err := os.Readlink("/sys/class/net/" + ifname + "/master")
		if err != nil || filepath.Base(master) != "br-test" {
			t.Errorf("%s master = %q, %v", ifname, master, err)
		}
		if flags, _ := os.ReadFile("/sys/class/net/" + ifname + "/tun_flags"); !strings.HasPrefix(string(flags), "0x1") {
			t.Errorf("%s tun_flags %q: not a tap", ifname, flags)
		}
		if err := attachTap(ifname); err != nil {
			t.Errorf("%s cannot be opened as QEMU's -netdev tap,ifname=%s,script=no does: %v", ifname, ifname, err)
		}
		mustOK(t, call(t, s, "update_resource_by_backing", b["backing"], "release", nil))
		if _, err := os.Stat("/sys/class/net/" + ifname); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after release", ifname)
		}
		mustOK(t, call(t, s, "destroy_resource_backing", b["backing"]))
	}
	// A tap left allocated goes with the service.
	b := mustOK(t, call(t, s, "create_resource_backing", port)).(map[string]any)
	got := mustOK(t, call(t, s, "update_resource_by_backing", b["backing"], "allocate", nil)).(map[string]any)
	ifname := got["spec"].(map[string]any)["ifname"].(string)
	call(t, s, "stop_resource_backing_service")
	if _, err := os.Stat("/sys/class/net/" + ifname); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after stop", ifname)
	}
}
