package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// copyLegacy puts testdata/state-v1/legacy.json, written by vtcluster
// before the nodes moved to a file of their own (layout 1: node add n1..n3,
// partition create --tag src --tag dst, node quarantine n3, pool create
// localdir), into a fresh state directory.
func copyLegacy(t *testing.T) (*FileStore, []byte) {
	t.Helper()
	data := readFile(t, filepath.Join("testdata", "state-v1", "legacy.json"))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "legacy.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := OpenFileStore(dir, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	return st, data
}

func TestFileStore_readsAndMigratesLayout1(t *testing.T) {
	st, data := copyLegacy(t)
	ctx := context.Background()
	old, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := decodeState(data) // the whole-document codec, as before
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(old, want) {
		t.Fatalf("layout 1 read as\n%#v\nwant\n%#v", old, want)
	}
	if len(old.Nodes) != 3 || len(old.Partitions) != 1 || len(old.NodeHealth) != 1 || len(old.Resources) == 0 ||
		old.Nodes[0].Labels["weight"] != "2.5" || old.Nodes[1].ShellPort != 2222 {
		t.Fatalf("the legacy file is not what the test expects: %+v", old)
	}
	// An Update that changes nothing leaves the file as it is.
	if err := st.Update(ctx, func(*State) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, st.Path()), data) {
		t.Fatal("an Update that changed nothing rewrote the layout 1 file")
	}
	// One that changes something (here only the queue's side: a
	// partition renewed) writes layout 2, losing nothing.
	id := old.Partitions[0].ID
	if _, err := Renew(ctx, st, id, time.Hour); err != nil {
		t.Fatal(err)
	}
	main := readFile(t, st.Path())
	if !bytes.Contains(main, []byte(`"version": 2`)) || !bytes.Contains(main, []byte(`"nodes_file": "legacy.nodes+1.json"`)) || bytes.Contains(main, []byte(`"n3.example"`)) {
		t.Fatalf("not migrated to layout 2:\n%s", main)
	}
	got, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want.Partitions[0].Renewed, want.Partitions[0].Expires = got.Partitions[0].Renewed, got.Partitions[0].Expires
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after migration\n%#v\nwant\n%#v", got, want)
	}
	// And a fresh process reads it the same.
	fresh, err := OpenFileStore(filepath.Dir(st.Path()), "legacy")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := fresh.Load(ctx); err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("another store read %v, %#v", err, again)
	}
}

// A writer killed between the nodes file and the main file leaves the
// state as it was, and the next Update tidies up.
var _ = registerTestHelper("register-then-die", func(args []string) int {
	st, err := OpenFileStore(args[0], args[1])
	if err != nil {
		return helperFail("%v", err)
	}
	afterNodesWrite = func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	err = st.Update(context.Background(), func(s *State) error {
		if err := s.UnregisterNode("n1", time.Now(), true); err != nil {
			return err
		}
		return s.RegisterNode(testNode("n9", "10.0.0.9"), false)
	})
	return helperFail("survived: %v", err)
})

func TestFileStore_killBetweenTheTwoWrites(t *testing.T) {
	st := newTestStore(t)
	ctx := context.Background()
	registerNodes(t, st, 3)
	owner, err := CurrentOwner("job", "t")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Allocate(ctx, st, AllocRequest{Owner: owner, Tags: []string{"a"}})
	if err != nil || p.Nodes[0].Node != "n1" {
		t.Fatalf("allocate: %v %+v", err, p)
	}
	before, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(st.Path())
	cmd := helperCommand(t, "register-then-die", dir, "test")
	err = cmd.Run()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the writer was not killed between its writes: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "test.nodes+2.json")); err != nil {
		t.Fatalf("the killed writer wrote no nodes file, so this test proves nothing: %v", err)
	}
	// Nothing of the killed Update shows: n1 is still registered and
	// still held, n9 unknown.
	after, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("after the kill\n%#v\nwant\n%#v", after, before)
	}
	// No double allocation: the next one gets n2, and the orphan goes.
	q, err := Allocate(ctx, st, AllocRequest{Owner: owner, Tags: []string{"a"}})
	if err != nil || q.Nodes[0].Node != "n2" {
		t.Fatalf("allocate after the kill: %v %+v", err, q)
	}
	if _, err := os.Stat(filepath.Join(dir, "test.nodes+2.json")); !os.IsNotExist(err) {
		t.Errorf("the orphaned nodes file is still there: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if n := e.Name(); n != "test.json" && n != "test.json.lock" && n != "test.nodes+1.json" {
			t.Errorf("unexpected file %s", n)
		}
	}
}

// The node cache must see a nodes file changed by hand, or by a writer
// that kept its name, and never hand out a record someone changed in place
// outside fixed-node updates.
func TestFileStore_nodeCacheFollowsTheFile(t *testing.T) {
	st := newTestStore(t)
	ctx := context.Background()
	registerNodes(t, st, 2)
	if _, err := st.Load(ctx); err != nil { // cached now
		t.Fatal(err)
	}
	path := filepath.Join(filepath.Dir(st.Path()), "test.nodes+1.json")
	data := readFile(t, path)
	edited := bytes.Replace(data, []byte(`"10.0.0.2"`), []byte(`"10.9.9.9"`), 1)
	if bytes.Equal(edited, data) {
		t.Fatalf("no address to edit in\n%s", data)
	}
	if err := os.WriteFile(path, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := st.Load(ctx)
	if err != nil || s.Node("n2").Address != "10.9.9.9" {
		t.Fatalf("after a hand edit: %v %+v", err, s)
	}
	// A change to a map in place, in an ordinary Update, is saved.
	err = st.Update(ctx, func(s *State) error { s.Nodes[0].Labels = map[string]any{"rack": "r1"}; return nil })
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(s *State) error { s.Nodes[0].Labels["rack"] = "r2"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if s, err := st.Load(ctx); err != nil || s.Nodes[0].Labels["rack"] != "r2" {
		t.Fatalf("a label changed in place was not saved: %v %+v", err, s)
	}
	// Changing a Load's snapshot changes nothing stored.
	s, _ = st.Load(ctx)
	s.Nodes[0].Labels["rack"] = "r3"
	if s, _ := st.Load(ctx); s.Nodes[0].Labels["rack"] != "r2" {
		t.Fatal("a change to a snapshot reached the store's cache")
	}
}

func TestFileStore_refusesABadNodesFile(t *testing.T) {
	for name, main := range map[string]string{
		"path":          `{"version": 2, "nodes_file": "../x.nodes+1.json", "partitions": []}`,
		"other cluster": `{"version": 2, "nodes_file": "other.nodes+1.json", "partitions": []}`,
		"missing":       `{"version": 2, "nodes_file": "test.nodes+7.json", "partitions": []}`,
		"nodes inline":  `{"version": 2, "nodes_file": "test.nodes+1.json", "nodes": [], "partitions": []}`,
	} {
		t.Run(name, func(t *testing.T) {
			st := newTestStore(t)
			registerNodes(t, st, 1)
			if err := os.WriteFile(st.Path(), []byte(main), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := st.Load(context.Background())
			var se *StateError
			if err == nil || !strings.Contains(err.Error(), "never resets state") || !errors.As(err, &se) {
				t.Fatalf("got %v, want a *StateError", err)
			}
			if err := st.Update(context.Background(), func(*State) error { return nil }); err == nil {
				t.Fatal("Update accepted it")
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(st.Path()), "test.nodes+1.json")); err != nil {
				t.Errorf("the nodes file went: %v", err)
			}
		})
	}
}

// A state built on another store's node set, copied in whole (as `state
// migrate` does), has its nodes written: they are not this store's.
func TestFileStore_stateFromAnotherStoreIsWrittenWhole(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 1)
	set, err := NewNodeSet([]Node{testNode("m1", "10.1.0.1"), testNode("m2", "10.1.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	src, err := UnmarshalStateOn([]byte(`{"version": 1, "nodes": [], "partitions": []}`), set, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(context.Background(), func(s *State) error { *s = *src; return nil }); err != nil {
		t.Fatal(err)
	}
	s, err := st.Load(context.Background())
	if err != nil || len(s.Nodes) != 2 || s.Node("m2") == nil || s.Node("n1") != nil {
		t.Fatalf("got %v %+v, want m1 and m2 only", err, s)
	}
}
