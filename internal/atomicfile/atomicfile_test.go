package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile_replacesWithModeAndLeavesNoTemporary(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"durable", nil}, {"not durable", []Option{NotDurable()}}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "state.json")
			if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := WriteFile(p, []byte("new"), 0o600, tc.opts...); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != "new" {
				t.Fatalf("content %q, %v; want new", got, err)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", st.Mode().Perm())
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Errorf("directory holds %d entries, want only the file: %v", len(ents), ents)
			}
		})
	}
}

// The mode is the one asked for whatever the umask: a 0644 record must be
// readable by the node's users who are meant to read it.
func TestWriteFile_modeIgnoresUmask(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pid")
	if err := WriteFile(p, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
}

func TestWriteFile_missingDirectoryLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	err := WriteFile(filepath.Join(dir, "no", "such"), []byte("x"), 0o600)
	if err == nil {
		t.Fatal("want an error for a missing directory")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
}

// A symlink planted at the destination is replaced, not followed: rename
// swaps the directory entry, so the link's target keeps its content.
func TestWriteFile_doesNotWriteThroughASymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "link")
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); string(got) != "keep" {
		t.Errorf("the link's target became %q", got)
	}
	if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSymlink != 0 {
		t.Errorf("destination is still a link (%v)", err)
	}
}

func TestTempGlob_matchesWhatAKilledWriterLeaves(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	f, err := os.CreateTemp(dir, tempPrefix(p)+"*")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	m, err := filepath.Glob(TempGlob(p))
	if err != nil || len(m) != 1 || m[0] != f.Name() {
		t.Errorf("TempGlob matched %v (%v), want [%s]", m, err, f.Name())
	}
}
