package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Subprocess helpers. A test that needs another process re-executes this
// test binary with VTCLUSTER_TEST_HELPER naming an entry of testHelpers;
// TestMain then runs that entry instead of the tests. Add helpers with
// registerTestHelper from any test file of the package.
var testHelpers = map[string]func(args []string) int{}

func registerTestHelper(name string, fn func(args []string) int) bool {
	if _, dup := testHelpers[name]; dup {
		panic("duplicate test helper " + name)
	}
	testHelpers[name] = fn
	return true
}

func TestMain(m *testing.M) {
	if name := os.Getenv("VTCLUSTER_TEST_HELPER"); name != "" {
		fn, ok := testHelpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown test helper %q\n", name)
			os.Exit(2)
		}
		var args []string
		if err := json.Unmarshal([]byte(os.Getenv("VTCLUSTER_TEST_HELPER_ARGS")), &args); err != nil {
			fmt.Fprintf(os.Stderr, "test helper %s: bad arguments: %v\n", name, err)
			os.Exit(2)
		}
		os.Exit(fn(args))
	}
	os.Exit(m.Run())
}

// helperCommand prepares a helper process. It is killed at the end of the
// test if it is still running; its stderr goes to the test log.
func helperCommand(tb testing.TB, name string, args ...string) *exec.Cmd {
	tb.Helper()
	enc, err := json.Marshal(args)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VTCLUSTER_TEST_HELPER="+name, "VTCLUSTER_TEST_HELPER_ARGS="+string(enc))
	cmd.Stderr = tbWriter{tb, name}
	tb.Cleanup(func() {
		if cmd.Process != nil && cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

type tbWriter struct {
	tb     testing.TB
	prefix string
}

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Logf("%s: %s", w.prefix, bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func helperFail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	return 1
}

var _ = registerTestHelper("state-dump", func(args []string) int {
	st, err := OpenFileStore(args[0], args[1])
	if err != nil {
		return helperFail("%v", err)
	}
	s, err := st.Load(context.Background())
	if err != nil {
		return helperFail("%v", err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(s); err != nil {
		return helperFail("%v", err)
	}
	return 0
})

var _ = registerTestHelper("state-register", func(args []string) int {
	st, err := OpenFileStore(args[0], args[1])
	if err != nil {
		return helperFail("%v", err)
	}
	err = st.Update(context.Background(), func(s *State) error {
		return s.RegisterNode(testNode(args[2], args[3]), false)
	})
	if err != nil {
		return helperFail("%v", err)
	}
	return 0
})

func testNode(name, addr string) Node {
	n := DefaultHostConfig(name)
	n.Address = addr
	return n.Node()
}

func newTestStore(tb testing.TB) *FileStore {
	tb.Helper()
	st, err := OpenFileStore(tb.TempDir(), "test")
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// registerNodes adds nodes n1..nN.
func registerNodes(tb testing.TB, st Store, count int) {
	tb.Helper()
	err := st.Update(context.Background(), func(s *State) error {
		for i := 1; i <= count; i++ {
			if err := s.RegisterNode(testNode(fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.0.%d", i)), false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func sampleState() *State {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	n1 := testNode("n1", "10.0.0.1")
	n1.Arch = "x86_64"
	n1.Labels = map[string]any{"rack": "r1", "numa": int64(2), "gpu": true, "weight": 0.5}
	n1.Properties = map[string]any{"cpu_count": int64(8), "mem_total": int64(1 << 40), "memory_gb": 1024.5, "kvm": true,
		"kernel": "6.1.0", "flags": []any{"sse", int64(4)}, "nested": map[string]any{"a": 1.25}}
	n1.PropertiesAt = t0
	n1.Agent = AgentInfo{PID: 4242, StartedAt: t0, Version: "0.1.0", SHA256: strings.Repeat("ab", 32)}
	n2 := testNode("n2.example.com", "")
	n2.Hostname, n2.User, n2.ShellPort, n2.AgentBind, n2.TokenFile = "n2.example.com", "tester", 2222, AgentBindDirect, "/etc/t"
	return &State{
		Version: StateVersion,
		Nodes:   []Node{n1, n2},
		Partitions: []Partition{{
			ID:      "0123456789abcdef0123456789abcdef",
			Owner:   Owner{JobID: "job1", TestID: "1-test", Host: "ctl", PID: 77, PIDStart: 12345, BootID: "b"},
			Nodes:   []Assignment{{Tag: "src", Node: "n2.example.com"}, {Tag: "dst", Node: "n1"}},
			Created: t0, Renewed: t0.Add(time.Minute), Expires: t0.Add(time.Hour),
		}},
	}
}

func TestFileStore_Update_roundTrip(t *testing.T) {
	st := newTestStore(t)
	want := sampleState()
	if err := st.Update(context.Background(), func(s *State) error { *s = *sampleState(); return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip changed the state\n got %#v\nwant %#v", got, want)
	}
	if !strings.Contains(string(readFile(t, st.Path())), "\n  \"version\": 2,\n  \"nodes_file\": \"test.nodes+1.json\",\n") {
		t.Errorf("state file is not indented JSON with a version and its nodes file:\n%s", readFile(t, st.Path()))
	}
	if nodes := readFile(t, filepath.Join(filepath.Dir(st.Path()), "test.nodes+1.json")); !strings.Contains(string(nodes), "\n  \"version\": 2,\n  \"nodes\": [\n    {\n      \"name\": \"n1\"") {
		t.Errorf("nodes file is not indented JSON with a version:\n%s", nodes)
	}
}

func TestFileStore_Load_missingFileIsEmpty(t *testing.T) {
	st := newTestStore(t)
	s, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, NewState()) {
		t.Errorf("got %+v, want the empty state", s)
	}
	if _, err := os.Stat(st.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load created the state file: %v", err)
	}
}

func TestOpenFileStore_modes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	st, err := OpenFileStore(dir, "lab-1.x")
	if err != nil {
		t.Fatal(err)
	}
	registerNodes(t, st, 1)
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, st.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
	if st.Path() != filepath.Join(dir, "lab-1.x.json") {
		t.Errorf("path = %s", st.Path())
	}
	if _, err := os.Stat(st.Path() + ".lock"); err != nil {
		t.Errorf("no lock file beside the state: %v", err)
	}
}

func TestOpenFileStore_badClusterName(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "../x", "a b", "x\n"} {
		if _, err := OpenFileStore(t.TempDir(), name); err == nil {
			t.Errorf("cluster name %q accepted", name)
		}
	}
}

func TestFileStore_Update_replacesAtomically(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 1)
	before, err := os.Stat(st.Path())
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(filepath.Dir(st.Path()), ".test.json.tmp-123")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = st.Update(context.Background(), func(s *State) error {
		return s.RegisterNode(testNode("n2", "10.0.0.2"), false)
	})
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(st.Path())
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Error("the state file was rewritten in place, not replaced by rename")
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file left behind: %v", err)
	}
	// Registering wrote a second nodes file and removed the first.
	entries, _ := os.ReadDir(filepath.Dir(st.Path()))
	for _, e := range entries {
		if e.Name() != "test.json" && e.Name() != "test.json.lock" && e.Name() != "test.nodes+2.json" {
			t.Errorf("unexpected file %s in the state dir", e.Name())
		}
	}
}

func TestFileStore_Update_fnErrorWritesNothing(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 2)
	before := readFile(t, st.Path())
	fi1, _ := os.Stat(st.Path())
	boom := errors.New("boom")
	err := st.Update(context.Background(), func(s *State) error {
		s.Nodes = nil
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want fn's error", err)
	}
	fi2, _ := os.Stat(st.Path())
	if !bytes.Equal(before, readFile(t, st.Path())) || !os.SameFile(fi1, fi2) {
		t.Error("state file changed although fn failed")
	}
}

func TestFileStore_Update_refusesInvalidState(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 2)
	before := readFile(t, st.Path())
	now := time.Now().UTC()
	err := st.Update(context.Background(), func(s *State) error {
		for _, id := range []string{strings.Repeat("a", 32), strings.Repeat("b", 32)} {
			s.Partitions = append(s.Partitions, Partition{ID: id, Owner: Owner{Host: "h", PID: 1},
				Nodes: []Assignment{{Tag: "x", Node: "n1"}}, Created: now, Renewed: now, Expires: now.Add(time.Hour)})
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), `node "n1" is in partitions`) {
		t.Fatalf("got %v, want a double-booking refusal", err)
	}
	if !bytes.Equal(before, readFile(t, st.Path())) {
		t.Error("an invalid state was written")
	}
}

func TestFileStore_Load_corruptFileIsErrorAndUntouched(t *testing.T) {
	cases := map[string]string{
		"garbage":       "{not json",
		"empty":         "",
		"truncated":     `{"version": 1, "nodes": [{"name": "n1", "addr`,
		"wrong version": `{"version": 2, "nodes": [], "partitions": []}`,
		"no version":    `{"nodes": [], "partitions": []}`,
		"unknown field": `{"version": 1, "nodes": [], "partitions": [], "password": "x"}`,
		"wrong type":    `{"version": 1, "nodes": {}, "partitions": []}`,
		"trailing data": `{"version": 1, "nodes": [], "partitions": []} {}`,
		"broken invariant": `{"version": 1, "nodes": [], "partitions": [{"id": "0123456789abcdef0123456789abcdef",
			"owner": {"host": "h", "pid": 1}, "nodes": [{"tag": "a", "node": "ghost"}],
			"created": "2026-01-01T00:00:00Z", "renewed": "2026-01-01T00:00:00Z", "expires": "2026-01-01T01:00:00Z"}]}`,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			st := newTestStore(t)
			if err := os.WriteFile(st.Path(), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := st.Load(context.Background())
			var se *StateError
			if !errors.As(err, &se) || se.Path != st.Path() {
				t.Fatalf("Load: got %v, want a *StateError for %s", err, st.Path())
			}
			if !strings.Contains(err.Error(), st.Path()) || !strings.Contains(err.Error(), "never resets state") {
				t.Errorf("message lacks the path or the hint: %v", err)
			}
			called := false
			err = st.Update(context.Background(), func(*State) error { called = true; return nil })
			if !errors.As(err, &se) || called {
				t.Errorf("Update: got %v (fn called: %v), want a *StateError before fn", err, called)
			}
			if got := string(readFile(t, st.Path())); got != content {
				t.Errorf("the corrupt file was changed to %q", got)
			}
		})
	}
}

func TestFileStore_Load_unknownVersion(t *testing.T) {
	st := newTestStore(t)
	if err := os.WriteFile(st.Path(), []byte(`{"version": 7, "whatever": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := st.Load(context.Background())
	if !errors.Is(err, ErrStateVersion) || !strings.Contains(err.Error(), "version 7") {
		t.Errorf("got %v, want ErrStateVersion naming version 7", err)
	}
}

func TestFileStore_Update_honorsContextWhileLocked(t *testing.T) {
	st := newTestStore(t)
	unlock, err := flockFile(context.Background(), st.Path()+".lock", true)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = st.Update(ctx, func(*State) error { t.Error("fn ran without the lock"); return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the context's error", err)
	}
	if _, err := st.Load(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Load: got %v, want the context's error", err)
	}
}

// TestFileStore_survivesNewProcess checks that what one process saves
// another reads, both ways.
func TestFileStore_survivesNewProcess(t *testing.T) {
	st := newTestStore(t)
	if err := st.Update(context.Background(), func(s *State) error { *s = *sampleState(); return nil }); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(st.Path())
	out, err := helperCommand(t, "state-dump", dir, "test").Output()
	if err != nil {
		t.Fatalf("state-dump: %v", err)
	}
	got, err := decodeState(out)
	if err != nil {
		t.Fatalf("child's dump: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(got, sampleState()) {
		t.Errorf("child read\n%#v\nwant\n%#v", got, sampleState())
	}
	if err := helperCommand(t, "state-register", dir, "test", "n9", "10.0.0.9").Run(); err != nil {
		t.Fatalf("state-register: %v", err)
	}
	s, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Node("n9"); n == nil || n.Address != "10.0.0.9" || len(s.Nodes) != 3 {
		t.Errorf("after the child registered n9: %+v", s.Nodes)
	}
}

func TestFileStore_neverHoldsPasswords(t *testing.T) {
	const password = "pw-7e1c0d9a-never-in-state"
	cfgPath := filepath.Join(t.TempDir(), "cluster.json")
	cfgText := `{"hosts": {"a": {"address": "10.0.0.1", "password": "` + password + `"},
		"b": {"address": "10.0.0.2", "password": "` + password + `"}}, "pools": {}}`
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hosts[0].Password != password {
		t.Fatal("the config did not read the password, so this test proves nothing")
	}
	st := newTestStore(t)
	err = st.Update(context.Background(), func(s *State) error {
		for _, h := range cfg.Hosts {
			if err := s.RegisterNode(h.Node(), false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	owner, err := CurrentOwner("job", "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Allocate(context.Background(), st, AllocRequest{Owner: owner, Tags: []string{"x", "y"}}); err != nil {
		t.Fatal(err)
	}
	data := append(readFile(t, st.Path()), readFile(t, filepath.Join(filepath.Dir(st.Path()), "test.nodes+1.json"))...)
	if bytes.Contains(data, []byte(password)) || bytes.Contains(bytes.ToLower(data), []byte("password")) {
		t.Errorf("state file holds a password:\n%s", data)
	}
	if !bytes.Contains(data, []byte(`"10.0.0.2"`)) {
		t.Errorf("state file lacks the registered nodes:\n%s", data)
	}
}

func TestState_RegisterNode(t *testing.T) {
	s := NewState()
	if err := s.RegisterNode(testNode("n1", "10.0.0.1"), false); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterNode(testNode("n2", "10.0.0.2"), false); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterNode(testNode("n1", "10.0.0.9"), false); !errors.Is(err, ErrNodeExists) {
		t.Errorf("duplicate: got %v, want ErrNodeExists", err)
	}
	if err := s.RegisterNode(testNode("n1", "10.0.0.9"), true); err != nil {
		t.Fatal(err)
	}
	if s.Node("n1").Address != "10.0.0.9" || s.Nodes[0].Name != "n1" {
		t.Errorf("replace did not update in place: %+v", s.Nodes)
	}
	bad := testNode("n3", "")
	if err := s.RegisterNode(bad, false); err == nil {
		t.Error("a node without address or hostname was accepted")
	}
	bad = testNode("../n3", "10.0.0.3")
	if err := s.RegisterNode(bad, false); err == nil {
		t.Error("a node name with a slash was accepted")
	}
	if s.Node("nope") != nil {
		t.Error("Node found an unregistered name")
	}
}

func TestState_UnregisterNode(t *testing.T) {
	now := time.Now().UTC()
	s := NewState()
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := s.RegisterNode(testNode(n, "10.0.0.1"), false); err != nil {
			t.Fatal(err)
		}
	}
	id := strings.Repeat("c", 32)
	s.Partitions = []Partition{{ID: id, Owner: Owner{Host: "h", PID: 1}, Created: now, Renewed: now, Expires: now.Add(time.Hour),
		Nodes: []Assignment{{Tag: "a", Node: "n1"}, {Tag: "b", Node: "n2"}}}}
	var held *LeaseHeldError
	if err := s.UnregisterNode("n1", now, false); !errors.As(err, &held) || held.Partition != id || held.Node != "n1" {
		t.Fatalf("node in a live partition: got %v, want *LeaseHeldError", err)
	}
	if err := s.UnregisterNode("n1", now, true); err != nil {
		t.Fatal(err)
	}
	if got := s.Partition(id).Nodes; len(got) != 1 || got[0].Node != "n2" {
		t.Errorf("forced unregister left the partition with %+v", got)
	}
	// Once the lease is over, no force is needed, and an emptied
	// partition disappears.
	if err := s.UnregisterNode("n2", now.Add(2*time.Hour), false); err != nil {
		t.Fatal(err)
	}
	if len(s.Partitions) != 0 {
		t.Errorf("empty partition kept: %+v", s.Partitions)
	}
	if err := s.UnregisterNode("n2", now, false); !errors.Is(err, ErrNodeNotFound) {
		t.Errorf("unknown node: got %v, want ErrNodeNotFound", err)
	}
	if err := s.validate(); err != nil {
		t.Errorf("state invalid afterwards: %v", err)
	}
}

func TestState_queries(t *testing.T) {
	now := time.Now().UTC()
	s := NewState()
	for _, n := range []string{"zeta", "alpha", "mid", "old"} {
		if err := s.RegisterNode(testNode(n, "10.0.0.1"), false); err != nil {
			t.Fatal(err)
		}
	}
	live, expired := strings.Repeat("1", 32), strings.Repeat("2", 32)
	s.Partitions = []Partition{
		{ID: live, Owner: Owner{Host: "h", PID: 1}, Created: now, Renewed: now, Expires: now.Add(time.Hour),
			Nodes: []Assignment{{Tag: "src", Node: "alpha"}}},
		{ID: expired, Owner: Owner{Host: "h", PID: 1}, Created: now, Renewed: now, Expires: now.Add(-time.Second),
			Nodes: []Assignment{{Tag: "src", Node: "old"}}},
	}
	var idle []string
	for _, n := range s.IdleNodes(now) {
		idle = append(idle, n.Name)
	}
	if want := []string{"zeta", "mid", "old"}; !reflect.DeepEqual(idle, want) {
		t.Errorf("IdleNodes = %v, want %v (registration order, expired partition counts as idle)", idle, want)
	}
	if got, want := s.SortedNames(), []string{"alpha", "mid", "old", "zeta"}; !reflect.DeepEqual(got, want) {
		t.Errorf("SortedNames = %v, want %v", got, want)
	}
	n, err := s.NodeByTag(live, "src")
	if err != nil || n.Name != "alpha" {
		t.Errorf("NodeByTag = %v, %v", n, err)
	}
	if _, err := s.NodeByTag(live, "dst"); !errors.Is(err, ErrNodeNotFound) {
		t.Errorf("unknown tag: got %v", err)
	}
	if _, err := s.NodeByTag(strings.Repeat("9", 32), "src"); !errors.Is(err, ErrPartitionNotFound) {
		t.Errorf("unknown partition: got %v", err)
	}
	if n := s.Node("zeta"); n.Host() != "10.0.0.1" {
		t.Errorf("Host() = %q", n.Host())
	}
}

// readLine reads one line from a helper's stdout.
func readLine(tb testing.TB, r *bufio.Reader) string {
	tb.Helper()
	line, err := r.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		tb.Fatalf("reading from helper: %v", err)
	}
	return strings.TrimSpace(line)
}

// reapedOrKilled reports a helper process ended by SIGKILL.
func killedBySignal(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}
