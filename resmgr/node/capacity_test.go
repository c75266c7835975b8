package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// smallFS mounts a 1 GiB tmpfs (root's, 0755) for a pool that is nearly
// full in the sense that matters: it cannot hold a 20 GiB volume.
func smallFS(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1G,mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func TestService_volumeBeyondFreeSpaceRefused(t *testing.T) {
	dir := smallFS(t)
	s := newNode(t, t.TempDir(), nil)
	mustOK(t, call(t, s, MethodCreatePool, dirPool("p1", dir)))
	got := mustOK(t, call(t, s, MethodPoolCapacity, "p1")).(map[string]any)
	if got["size"] != int64(1<<30) || got["free"].(int64) <= 0 || got["free"].(int64) > 1<<30 {
		t.Errorf("capacity of a 1 GiB tmpfs: %v", got)
	}
	b := mustOK(t, call(t, s, MethodCreateBacking, volume("r1", "p1", "big.raw"))).(map[string]any)
	code, o := out(t, call(t, s, MethodUpdate, b["backing"], "allocate", map[string]any{"size": "20G"}))
	if msg, _ := o.(string); code != 1 || !strings.Contains(msg, "needs 20.0 GiB (21474836480 bytes)") || !strings.Contains(msg, "of 1.0 GiB (1073741824 bytes)") || !strings.Contains(msg, "overcommit") {
		t.Errorf("20 GiB on a 1 GiB pool: [%d, %v], want a refusal naming both sizes", code, o)
	}
	if _, err := os.Stat(filepath.Join(dir, "big.raw")); !os.IsNotExist(err) {
		t.Errorf("refused volume's file: %v", err)
	}
	// A pool that allows overcommit takes it (sparse).
	pool := dirPool("p2", dir)
	pool["spec"].(map[string]any)["overcommit"] = true
	mustOK(t, call(t, s, MethodCreatePool, pool))
	b = mustOK(t, call(t, s, MethodCreateBacking, volume("r2", "p2", "big2.raw"))).(map[string]any)
	mustOK(t, call(t, s, MethodUpdate, b["backing"], "allocate", map[string]any{"size": "20G"}))
	mustOK(t, call(t, s, MethodUpdate, b["backing"], "release", nil))
}
