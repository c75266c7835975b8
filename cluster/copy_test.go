package cluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The copy engine between two local directories: the same code paths as
// with nodes except the SFTP calls (the lab tests in bridge cover those).
func TestCopyTree_local_modesSymlinksSparseProgress(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "d", "x"), []byte("x\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "d"), 0o500); err != nil { // not writable: set last
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "d"), 0o755); os.Chmod(filepath.Join(dst, "d"), 0o755) })
	if err := os.Symlink("d/x", filepath.Join(src, "l")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	// Data, an allocated run of zeros (found while reading), then a hole.
	f.WriteAt(bytes.Repeat([]byte{7}, 100), 5<<20)
	f.WriteAt(make([]byte, 1<<20), 10<<20)
	f.Truncate(64 << 20)
	f.Close()

	var prog bytes.Buffer
	items, err := CopyTree(context.Background(), LocalFS(), src, LocalFS(), dst, CopyOptions{
		Recursive: true, Progress: &TermProgress{W: &prog, MinSize: 8 << 20, Interval: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]CopyItem{}
	for _, it := range items {
		byName[strings.TrimPrefix(it.Dst, dst)] = it
	}
	sp := byName["/sparse"]
	if sp.Size != 64<<20 || len(sp.SHA256) != 64 || sp.Read > 2<<20 || sp.Written > 64<<10 {
		t.Errorf("sparse item %+v: holes read or zeros written", sp)
	}
	st, _ := os.Stat(filepath.Join(dst, "sparse"))
	if blocks := st.Sys().(*syscall.Stat_t).Blocks; st.Size() != 64<<20 || blocks > 2048 {
		t.Errorf("copy is %d bytes in %d blocks", st.Size(), blocks)
	}
	if st, err := os.Stat(filepath.Join(dst, "d")); err != nil || st.Mode().Perm() != 0o500 {
		t.Errorf("dir mode: %v %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(dst, "d", "x")); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("file mode: %v %v", st, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "l")); err != nil || l != "d/x" {
		t.Errorf("symlink: %q %v", l, err)
	}
	// The small file prints nothing; the large one ends at 100%.
	if out := prog.String(); !strings.Contains(out, src+"/sparse: 64.0 MiB / 64.0 MiB (100%)") || strings.Contains(out, "d/x") {
		t.Errorf("progress:\n%q", out)
	}

	// A directory needs Recursive; nothing is created.
	if _, err := CopyTree(context.Background(), LocalFS(), src, LocalFS(), dst+"2", CopyOptions{}); err == nil || !strings.Contains(err.Error(), "copy it with -r") {
		t.Errorf("directory without Recursive: %v", err)
	}
	if _, err := os.Stat(dst + "2"); !os.IsNotExist(err) {
		t.Errorf("refused copy created %s", dst+"2")
	}
}

func TestFileExtents_holes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("x"), 3<<20)
	f.Truncate(16 << 20)
	f.Close()
	size, ext, err := FileExtents(p)
	if err != nil || size != 16<<20 || len(ext) != 1 || ext[0][0] > 3<<20 || ext[0][1] <= 3<<20 || ext[0][1] > 4<<20 {
		t.Errorf("FileExtents = %d %v %v", size, ext, err)
	}
	if _, _, err := FileExtents(filepath.Dir(p)); err == nil {
		t.Error("a directory has extents")
	}
}
