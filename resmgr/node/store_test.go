package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtcluster/vtcluster/agent"
)

// L4 of the audit: an unreadable record disables the service, not the
// agent; every call says which file and what to do.
func TestService_corruptRecordDisablesEveryCall(t *testing.T) {
	data := t.TempDir()
	file := filepath.Join(data, "resource", "backings.json")
	os.MkdirAll(filepath.Dir(file), 0o700)
	os.WriteFile(file, []byte(`{"pools": {"x": {"uu`), 0o600)
	s, err := New(Config{DataDir: data})
	if err != nil {
		t.Fatalf("New with a corrupt record: %v (want a disabled service)", err)
	}
	if s.Disabled() == nil {
		t.Fatal("not disabled")
	}
	for name, m := range s.Methods() {
		_, err := m(context.Background(), agent.Args{})
		if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "move the file away") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if data, _ := os.ReadFile(file); string(data) != `{"pools": {"x": {"uu` {
		t.Errorf("the corrupt record was changed: %q", data)
	}
}

// A record written before file identities were kept still works; its
// files, whose maker is unknown, are kept by release.
func TestService_recordWithoutIdentities(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "root_dir")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "old.raw"), []byte("data"), 0o644)
	file := filepath.Join(data, "resource", "backings.json")
	os.MkdirAll(filepath.Dir(file), 0o700)
	os.WriteFile(file, []byte(`{"pools": {"p1": {"uuid": "p1", "type": "filesystem", "root": "`+root+`", "made": true}},
	  "backings": {"b1": {"id": "b1", "resource": "r1", "type": "volume", "pool": "p1", "path": "`+root+`/old.raw"}}}`), 0o600)
	s := newNode(t, data, nil)
	got := mustOK(t, call(t, s, MethodUpdate, "b1", "sync", nil)).(map[string]any)
	if got["meta"].(map[string]any)["allocated"] != true {
		t.Errorf("sync of an old backing: %v", got)
	}
	mustOK(t, call(t, s, MethodUpdate, "b1", "release", nil))
	if _, err := os.Stat(filepath.Join(root, "old.raw")); err != nil {
		t.Errorf("release deleted a file of unknown maker: %v", err)
	}
}
