package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"
)

// The node memo must never change what is read or written: these tests
// compare against the codec without it.

func memoTestState(t *testing.T) *State {
	t.Helper()
	s := NewState()
	for _, name := range []string{"n1", "n2", "n3"} {
		n := testNode(name, "10.0.0.1")
		n.Properties = map[string]any{"cpu_count": int64(4), "arch": "x86_64"}
		if err := s.RegisterNode(n, false); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestNodeMemo_writesTheSameBytes(t *testing.T) {
	s := memoTestState(t)
	first, err := encodeState(s) // memoizes the nodes
	if err != nil {
		t.Fatal(err)
	}
	s.Partitions = append(s.Partitions, Partition{ID: newPartitionID(), Nodes: []Assignment{{Tag: "a", Node: "n2"}},
		Expires: s.Nodes[0].PropertiesAt.AddDate(3000, 0, 0)})
	withMemo, err := encodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := encodeStateFull(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(withMemo, plain) || bytes.Equal(first, withMemo) {
		t.Fatalf("memoized encoding differs:\n%s\nwant:\n%s", withMemo, plain)
	}
	back, err := decodeState(withMemo)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Nodes) != 3 || len(back.Partitions) != 1 || back.Nodes[1].Properties["cpu_count"] != int64(4) {
		t.Fatalf("decoded %+v", back)
	}
}

func TestNodeMemo_seesWhatAnotherProcessWrote(t *testing.T) {
	st := newTestStore(t)
	ctx := context.Background()
	if err := st.Update(ctx, func(s *State) error { *s = *memoTestState(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Load(ctx); err != nil { // memo holds these nodes now
		t.Fatal(err)
	}
	// Another process changes a node's property; its file is what the
	// codec without memo writes.
	s := memoTestState(t)
	s.Nodes[2].Properties["cpu_count"] = int64(64)
	data, err := encodeStateFull(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.Path(), data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v := got.Nodes[2].Properties["cpu_count"]; v != int64(64) {
		t.Fatalf("cpu_count = %v, want what the other process wrote (64)", v)
	}
}

func TestNodeMemo_inPlaceChangeIsSaved(t *testing.T) {
	st := newTestStore(t)
	ctx := context.Background()
	if err := st.Update(ctx, func(s *State) error { *s = *memoTestState(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := st.Update(ctx, func(s *State) error { s.Nodes[0].Properties["arch"] = "aarch64"; return nil }); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(st.Path())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nodes []struct {
			Properties map[string]any `json:"properties"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Nodes[0].Properties["arch"] != "aarch64" {
		t.Fatalf("a property changed in place was not saved:\n%s", data)
	}
	got, err := st.Load(ctx)
	if err != nil || got.Nodes[0].Properties["arch"] != "aarch64" {
		t.Fatalf("Load = %v, %v", got, err)
	}
}
