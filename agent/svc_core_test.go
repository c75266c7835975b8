package agent

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent/logframe"
	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// newTestCore returns a core service over a fresh data dir and its quit
// channel. A real LogStreamer serves log redirection.
func newTestCore(tb testing.TB) (*coreService, *DataDir, chan struct{}) {
	tb.Helper()
	dd, err := OpenDataDir(filepath.Join(tb.TempDir(), "data"), time.Now(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dd.Close() })
	ls, err := NewLogStreamer(dd.ServiceLog(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ls.Close() })
	dd.onFlushLogs(ls.Flush) // as Run does
	quit := make(chan struct{}, 4)
	svc, err := NewCoreService(CoreConfig{Data: dd, Logs: ls, Quit: func() { quit <- struct{}{} }})
	if err != nil {
		tb.Fatal(err)
	}
	return svc.(*coreService), dd, quit
}

// callCore invokes a core method directly, as the dispatcher would.
func callCore(tb testing.TB, c *coreService, method string, args ...any) (any, error) {
	tb.Helper()
	m, ok := c.Methods()[method]
	if !ok {
		tb.Fatalf("core has no method %q", method)
	}
	return m(context.Background(), Args(args))
}

func mustCore(tb testing.TB, c *coreService, method string, args ...any) any {
	tb.Helper()
	v, err := callCore(tb, c, method, args...)
	if err != nil {
		tb.Fatalf("core.%s%v: %v", method, args, err)
	}
	return v
}

func wantExc(tb testing.TB, err error, excType string) {
	tb.Helper()
	var f *xmlrpc.Fault
	if !errors.As(err, &f) || f.ExcType != excType {
		tb.Fatalf("error = %v, want a %s fault", err, excType)
	}
}

func TestNewCoreService_requiresDataDir(t *testing.T) {
	if _, err := NewCoreService(CoreConfig{}); err == nil {
		t.Fatal("NewCoreService without a data dir succeeded")
	}
}

func TestCoreService_isAliveAndLogPaths(t *testing.T) {
	c, dd, _ := newTestCore(t)
	if v := mustCore(t, c, "is_alive"); v != true {
		t.Errorf("is_alive = %v", v)
	}
	for method, want := range map[string]string{
		"get_agent_log_filename":   filepath.Join(dd.Path(), "log", "agent.log"),
		"get_service_log_filename": filepath.Join(dd.Path(), "log", "service.log"),
		"get_log_dir":              filepath.Join(dd.Path(), "log"),
	} {
		if v := mustCore(t, c, method); v != want {
			t.Errorf("%s = %v, want %s", method, v, want)
		}
	}
	_, err := callCore(t, c, "is_alive", 1)
	wantExc(t, err, "TypeError")
}

func TestCoreService_quit(t *testing.T) {
	c, _, quit := newTestCore(t)
	if v := mustCore(t, c, "quit"); v != nil {
		t.Errorf("quit = %v, want None", v)
	}
	select {
	case <-quit:
	case <-time.After(hangGuard):
		t.Fatal("quit did not ask the daemon to stop")
	}

	c.quit = nil
	_, err := callCore(t, c, "quit")
	wantExc(t, err, "RuntimeError")
}

func TestCoreService_startLogRedirection_invalid(t *testing.T) {
	c, _, _ := newTestCore(t)
	for _, args := range [][]any{
		{"", 5000},
		{nil, 5000},
		{5, 5000},
		{"127.0.0.1", "5000"},
		{"127.0.0.1", 0},
		{"127.0.0.1", 65536},
		{"127.0.0.1", -1},
		{"127.0.0.1", true},
		{"127.0.0.1", 5000.0},
		{"127.0.0.1;id", 5000},
		{"a&b", 5000},
		{"a|b", 5000},
		{"a`b`", 5000},
		{"$(x)", 5000},
		{"a b", 5000}, // refused by the streamer's stricter check
	} {
		_, err := callCore(t, c, "start_log_redirection", args...)
		var f *xmlrpc.Fault
		if !errors.As(err, &f) || f.ExcType != "ValueError" {
			t.Errorf("start_log_redirection%v: %v, want ValueError", args, err)
		}
	}
	_, err := callCore(t, c, "start_log_redirection", "127.0.0.1")
	wantExc(t, err, "TypeError")
}

func TestCoreService_startLogRedirection_forwards(t *testing.T) {
	c, dd, _ := newTestCore(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if v := mustCore(t, c, "start_log_redirection", "127.0.0.1", port); v != nil {
		t.Fatalf("start_log_redirection = %v, want None", v)
	}
	// The core logs through the streamer like every service would.
	streamer := c.logs.(*LogStreamer)
	c.log = slog.New(streamer.Handler("avocado.service.core"))
	c.log.Info("hello from core")

	ln.(*net.TCPListener).SetDeadline(time.Now().Add(hangGuard))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("no connection from the agent: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hangGuard))
	var rec *logframe.LogRecord
	for {
		rec, _, err = logframe.ReadFrame(conn, logframe.DefaultMaxFrame)
		if err != nil {
			t.Fatalf("reading a frame: %v", err)
		}
		if rec.Msg == "hello from core" {
			break
		}
	}
	if rec.Name != "avocado.service.core" {
		t.Errorf("record logger %q, want avocado.service.core", rec.Name)
	}
	if v := mustCore(t, c, "stop_log_redirection"); v != nil {
		t.Errorf("stop_log_redirection = %v", v)
	}
	dd.FlushLogs()
	if data, err := os.ReadFile(dd.ServiceLog()); err != nil || len(data) == 0 {
		t.Errorf("service.log empty after a record: %v", err)
	}
}

func TestCoreService_jobData_roundTrip(t *testing.T) {
	c, dd, _ := newTestCore(t)
	if err := os.WriteFile(dd.AgentLog(), []byte("agent log line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := map[string]any{
		"b": []any{1, 2.0, map[string]any{"x": nil}},
		"a": "é☃",
		"c": map[string]any{},
		"d": []any{},
		"e": true,
		"f": 1e-07,
		"g": 1.5,
		"h": -3,
	}
	if v := mustCore(t, c, "get_job_data_log", "job1"); v != nil {
		t.Errorf("get_job_data_log before save = %v, want None", v)
	}
	if v := mustCore(t, c, "get_latest_job_results_dir"); v != nil {
		t.Errorf("get_latest_job_results_dir before save = %v, want None", v)
	}
	if v := mustCore(t, c, "save_job_data", "job1", state); v != true {
		t.Fatalf("save_job_data = %v", v)
	}
	jobDir := filepath.Join(dd.JobDataDir(), "job1")
	// Exactly what Python's json.dump(state, f, indent=4) writes (with
	// sort_keys, as our decoded structs have no order).
	const wantJSON = `{
    "a": "\u00e9\u2603",
    "b": [
        1,
        2.0,
        {
            "x": null
        }
    ],
    "c": {},
    "d": [],
    "e": true,
    "f": 1e-07,
    "g": 1.5,
    "h": -3
}`
	got, err := os.ReadFile(filepath.Join(jobDir, "data", "state.json"))
	if err != nil || string(got) != wantJSON {
		t.Errorf("state.json (%v):\n%s\nwant:\n%s", err, got, wantJSON)
	}
	if got, _ := os.ReadFile(filepath.Join(jobDir, "data", "agent.log")); string(got) != "agent log line\n" {
		t.Errorf("agent.log not copied into the job: %q", got)
	}
	if target, err := os.Readlink(filepath.Join(dd.JobDataDir(), "latest")); err != nil || target != "job1" {
		t.Errorf("latest -> %q (%v), want job1", target, err)
	}
	for method, want := range map[string]string{
		"get_job_data_log":    filepath.Join(jobDir, "data"),
		"get_job_results_dir": filepath.Join(jobDir, "test_results"),
	} {
		if v := mustCore(t, c, method, "job1"); v != want {
			t.Errorf("%s = %v, want %s", method, v, want)
		}
	}
	if v := mustCore(t, c, "get_latest_job_results_dir"); v != filepath.Join(jobDir, "test_results") {
		t.Errorf("get_latest_job_results_dir = %v", v)
	}
	// load_job_data reads what save_job_data wrote (upstream's bug fixed),
	// with ints and floats kept apart.
	for _, id := range []string{"job1", "latest"} {
		if v := mustCore(t, c, "load_job_data", id); py.Repr(v) != py.Repr(state) {
			t.Errorf("load_job_data(%s) = %#v, want %#v", id, v, state)
		}
	}

	// A second job moves latest.
	if v := mustCore(t, c, "save_job_data", "job2", map[string]any{"n": 2}); v != true {
		t.Fatal("save_job_data(job2) failed")
	}
	if v := mustCore(t, c, "load_job_data", "latest"); py.Repr(v) != py.Repr(map[string]any{"n": 2}) {
		t.Errorf("latest after job2 = %v", v)
	}

	if v := mustCore(t, c, "delete_job_data", "job2"); v != true {
		t.Errorf("delete_job_data(job2) = %v", v)
	}
	if _, err := os.Lstat(filepath.Join(dd.JobDataDir(), "latest")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("latest still there after deleting its job: %v", err)
	}
	if v := mustCore(t, c, "delete_job_data", "job2"); v != false {
		t.Errorf("second delete_job_data(job2) = %v, want False", v)
	}
	if v := mustCore(t, c, "load_job_data", "job2"); v != nil {
		t.Errorf("load_job_data after delete = %v, want None", v)
	}
	if v := mustCore(t, c, "load_job_data", "job1"); v == nil {
		t.Error("deleting job2 removed job1")
	}
}

func TestCoreService_saveJobData_unserialisable(t *testing.T) {
	c, dd, _ := newTestCore(t)
	for _, state := range []any{
		map[string]any{"blob": []byte{1}},
		map[string]any{"when": time.Unix(0, 0)},
	} {
		if v := mustCore(t, c, "save_job_data", "j", state); v != false {
			t.Errorf("save_job_data(%v) = %v, want False", state, v)
		}
	}
	if _, err := os.Stat(filepath.Join(dd.JobDataDir(), "j", "data", "state.json")); err == nil {
		t.Error("a state.json was written for an unserialisable state")
	}
}

func TestCoreService_suiteData(t *testing.T) {
	c, dd, _ := newTestCore(t)
	// No job yet: upstream would create a real "latest" directory here.
	if v := mustCore(t, c, "save_suite_data", "s1", map[string]any{}, map[string]any{}); v != false {
		t.Errorf("save_suite_data without a job = %v, want False", v)
	}
	if _, err := os.Lstat(filepath.Join(dd.JobDataDir(), "latest")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("save_suite_data without a job created latest: %v", err)
	}
	mustCore(t, c, "save_job_data", "job1", map[string]any{})
	if err := os.WriteFile(dd.ServiceLog(), []byte("svc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state, result := map[string]any{"status": "RUNNING"}, map[string]any{"pass": 3}
	if v := mustCore(t, c, "save_suite_data", "s1", state, result); v != true {
		t.Fatalf("save_suite_data(latest) = %v", v)
	}
	if v := mustCore(t, c, "save_suite_data", "s2", state, nil, "job1"); v != true {
		t.Fatalf("save_suite_data(job1) = %v", v)
	}
	suiteDir := filepath.Join(dd.JobDataDir(), "job1", "test_results", "s1")
	if got, _ := os.ReadFile(filepath.Join(suiteDir, "service.log")); string(got) != "svc\n" {
		t.Errorf("service.log not copied into the suite: %q", got)
	}
	want := xmlrpc.Struct{{Key: "state", Value: state}, {Key: "results", Value: result}}
	for _, args := range [][]any{{"s1"}, {"s1", nil}, {"s1", "job1"}, {"s1", "latest"}} {
		if v := mustCore(t, c, "load_suite_data", args...); py.Repr(v) != py.Repr(want) {
			t.Errorf("load_suite_data%v = %#v, want %#v", args, v, want)
		}
	}
	if v := mustCore(t, c, "load_suite_data", "s2", "job1"); py.Repr(v) != py.Repr(xmlrpc.Struct{{Key: "state", Value: state}, {Key: "results", Value: nil}}) {
		t.Errorf("load_suite_data(s2) = %#v", v)
	}
	if v := mustCore(t, c, "get_test_result_log_dir", "s1"); v != suiteDir {
		t.Errorf("get_test_result_log_dir = %v, want %s", v, suiteDir)
	}
	if v := mustCore(t, c, "get_test_result_log_dir", "nope", "job1"); v != nil {
		t.Errorf("get_test_result_log_dir(nope) = %v, want None", v)
	}
	if v := mustCore(t, c, "delete_suite_data", "s1"); v != true {
		t.Errorf("delete_suite_data = %v", v)
	}
	if v := mustCore(t, c, "delete_suite_data", "s1"); v != false {
		t.Errorf("second delete_suite_data = %v, want False", v)
	}
	if v := mustCore(t, c, "load_suite_data", "s1"); v != nil {
		t.Errorf("load_suite_data after delete = %v, want None", v)
	}
}

// TestCoreService_ids_refuseEscape: no id reaches outside the data dir,
// however it is spelled; upstream rmtree'd any absolute path.
func TestCoreService_ids_refuseEscape(t *testing.T) {
	c, dd, _ := newTestCore(t)
	outside := t.TempDir()
	sentinel := filepath.Join(outside, "keep")
	if err := os.WriteFile(sentinel, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCore(t, c, "save_job_data", "job1", map[string]any{})
	bad := []string{"", ".", "..", "../x", "../../" + filepath.Base(outside), outside, "/", "a/b", "a\x00b", "a\\b", strings.Repeat("a", 256)}
	calls := []struct {
		method string
		args   func(id string) []any
	}{
		{"get_job_data_log", func(id string) []any { return []any{id} }},
		{"get_job_results_dir", func(id string) []any { return []any{id} }},
		{"save_job_data", func(id string) []any { return []any{id, map[string]any{}} }},
		{"load_job_data", func(id string) []any { return []any{id} }},
		{"delete_job_data", func(id string) []any { return []any{id} }},
		{"get_test_result_log_dir", func(id string) []any { return []any{id} }},
		{"get_test_result_log_dir", func(id string) []any { return []any{"s", id} }},
		{"save_suite_data", func(id string) []any { return []any{id, nil, nil} }},
		{"save_suite_data", func(id string) []any { return []any{"s", nil, nil, id} }},
		{"load_suite_data", func(id string) []any { return []any{id} }},
		{"load_suite_data", func(id string) []any { return []any{"s", id} }},
		{"delete_suite_data", func(id string) []any { return []any{id} }},
		{"delete_suite_data", func(id string) []any { return []any{"s", id} }},
	}
	for _, call := range calls {
		for _, id := range bad {
			args := call.args(id)
			if call.method != "save_job_data" && call.method != "delete_job_data" && id == "" && len(args) > 1 && args[0] == "s" {
				continue // an empty job id means "latest" for suite calls, as upstream
			}
			_, err := callCore(t, c, call.method, args...)
			var f *xmlrpc.Fault
			if !errors.As(err, &f) || f.ExcType != "ValueError" {
				t.Errorf("%s%q: %v, want ValueError", call.method, args, err)
			}
		}
	}
	for _, method := range []string{"save_job_data", "delete_job_data"} {
		args := []any{"latest"}
		if method == "save_job_data" {
			args = append(args, map[string]any{})
		}
		_, err := callCore(t, c, method, args...)
		wantExc(t, err, "ValueError")
	}
	if _, err := os.Stat(sentinel); err != nil {
		t.Fatalf("file outside the data dir touched: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dd.JobDataDir(), "job1")); err != nil {
		t.Fatalf("job1 lost: %v", err)
	}
}

// TestCoreService_symlinks_notFollowedOut: links planted in job_data do not
// lead the agent outside the data dir.
func TestCoreService_symlinks_notFollowedOut(t *testing.T) {
	c, dd, _ := newTestCore(t)
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(outside, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "data", "state.json"), []byte(`{"secret": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dd.JobDataDir(), "evil")); err != nil {
		t.Fatal(err)
	}
	if v := mustCore(t, c, "load_job_data", "evil"); v != nil {
		t.Errorf("load_job_data through a link out = %v, want None", v)
	}
	if v := mustCore(t, c, "delete_job_data", "evil"); v != false {
		t.Errorf("delete_job_data of a link = %v, want False", v)
	}
	if _, err := os.Stat(filepath.Join(outside, "data", "state.json")); err != nil {
		t.Fatalf("outside dir damaged: %v", err)
	}
	// An absolute latest link pointing outside is ignored.
	if err := os.Symlink(outside, filepath.Join(dd.JobDataDir(), "latest")); err != nil {
		t.Fatal(err)
	}
	if v := mustCore(t, c, "load_job_data", "latest"); v != nil {
		t.Errorf("load_job_data(latest -> outside) = %v, want None", v)
	}
	if v := mustCore(t, c, "save_suite_data", "s", nil, nil); v != false {
		t.Errorf("save_suite_data through latest -> outside = %v, want False", v)
	}
	// Upstream's absolute link into our own job_data is understood.
	mustCore(t, c, "save_job_data", "job1", map[string]any{"k": "v"})
	latest := filepath.Join(dd.JobDataDir(), "latest")
	os.Remove(latest)
	if err := os.Symlink(filepath.Join(dd.JobDataDir(), "job1"), latest); err != nil {
		t.Fatal(err)
	}
	if v := mustCore(t, c, "load_job_data", "latest"); py.Repr(v) != py.Repr(map[string]any{"k": "v"}) {
		t.Errorf("load_job_data(latest -> abs job1) = %v", v)
	}
}

func TestCoreService_servedWithAlias(t *testing.T) {
	c, _, _ := newTestCore(t)
	s := newServer(t, testConfig(), c)
	if err := s.RegisterAs(CoreAlias, c); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	url := serveTest(t, s)
	for _, m := range []string{"core.is_alive", "agent.services.core.is_alive"} {
		if v, err := rpc(t, url, m); err != nil || v != true {
			t.Errorf("%s = %v, %v", m, v, err)
		}
	}
	// Big ints and nil survive the whole path.
	mustCore(t, c, "save_job_data", "j", map[string]any{"size": 1 << 40, "none": nil})
	v, err := rpc(t, url, "core.load_job_data", "j")
	if err != nil || !reflect.DeepEqual(v, map[string]any{"size": int64(1 << 40), "none": nil}) {
		t.Errorf("core.load_job_data = %#v, %v", v, err)
	}
}

func TestOpenDataDir_layoutKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	dd, err := OpenDataDir(path, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dd.LogDir(), dd.DownloadDir(), dd.JobDataDir()} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	keep := filepath.Join(dd.JobDataDir(), "old", "data", "state.json")
	os.MkdirAll(filepath.Dir(keep), 0o755)
	os.WriteFile(keep, []byte("{}"), 0o644)
	dd.Close()
	dd.Close() // idempotent

	dd2, err := OpenDataDir(path, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dd2.Close()
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("reopening wiped earlier job data: %v", err)
	}
}

func TestOpenDataDir_removesStaleTempDirs(t *testing.T) {
	path := t.TempDir()
	started := time.Now()
	old := filepath.Join(path, "agent_tmp_old")
	fresh := filepath.Join(path, "agent_tmp_fresh")
	file := filepath.Join(path, "agent_tmp_file")
	other := filepath.Join(path, "other_old")
	for _, d := range []string{old, fresh, other} {
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(file, nil, 0o644)
	past := started.Add(-time.Hour)
	for _, p := range []string{old, file, other} {
		os.Chtimes(p, past, past)
	}
	os.Chtimes(fresh, started.Add(time.Minute), started.Add(time.Minute))
	dd, err := OpenDataDir(path, started, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dd.Close()
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp dir kept: %v", err)
	}
	for _, p := range []string{fresh, file, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}

func TestDataDir_TempDir_removedOnClose(t *testing.T) {
	dd, err := OpenDataDir(t.TempDir(), time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := dd.TempDir(true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o755 || filepath.Dir(dir) != dd.Path() {
		t.Fatalf("temp dir %s: %v %v", dir, fi.Mode(), err)
	}
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)
	if err := dd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp dir left after Close: %v", err)
	}
}

func TestCheckID(t *testing.T) {
	for id, ok := range map[string]bool{
		"job-1_2.3": true, "latest": true, "a b": true, "ünïcode": true,
		"": false, ".": false, "..": false, "../a": false, "/abs": false,
		"a/b": false, "a\x00": false, `a\b`: false, strings.Repeat("a", 256): false, strings.Repeat("a", 255): true,
	} {
		err := CheckID("job_id", id)
		if (err == nil) != ok {
			t.Errorf("CheckID(%q) = %v, want ok=%v", id, err, ok)
		}
		if err != nil {
			wantExc(t, err, "ValueError")
		}
	}
}

// Security audit M3: indent=4 costs four bytes per nesting level on every
// line, so a 4 MiB call of empty strings 98 levels deep used to become a
// 200 MB
// state.json built whole in memory. The save must answer False, as
// upstream does for state it cannot serialise, write nothing, and stay
// within a small, fixed amount of memory.
func TestCoreService_saveJobData_amplificationIsCapped(t *testing.T) {
	c, dd, _ := newTestCore(t)
	const depth, leaves = 98, 525_000 // 8 bytes a leaf: a 4 MiB call
	var body strings.Builder
	body.WriteString("<?xml version='1.0'?>\n<methodCall>\n<methodName>core.save_job_data</methodName>\n<params>\n<param>\n<value><string>big</string></value>\n</param>\n<param>\n")
	body.WriteString(strings.Repeat("<value><array><data>\n", depth))
	body.WriteString(strings.Repeat("<value/>", leaves))
	body.WriteString(strings.Repeat("</data></array></value>\n", depth))
	body.WriteString("</param>\n</params>\n</methodCall>\n")
	if n := body.Len(); n < 4<<20 || n > 5<<20 {
		t.Fatalf("call is %d bytes, want about 4 MiB", n)
	}
	// Its JSON text would be ~(4·depth+4)·leaves bytes.
	if wouldBe := (4*depth + 4) * leaves; wouldBe < 190<<20 {
		t.Fatalf("the case no longer amplifies: %d bytes", wouldBe)
	}
	// Decoding is the server's concern (and bounded there); what is
	// measured is the save.
	_, params, err := xmlrpc.DecodeCall([]byte(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := mustCore(t, c, "save_job_data", params...)
	runtime.ReadMemStats(&after)
	if v != false {
		t.Fatalf("save_job_data of an over-cap state = %#v, want False", v)
	}
	// Everything the save allocated bounds how far the heap could grow;
	// building the text whole cost over 400 MiB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("the save allocated %d KiB", alloc>>10)
	}
	if _, err := os.Lstat(filepath.Join(dd.JobDataDir(), "big")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused save left its job directory behind (%v)", err)
	}
	if _, err := os.Lstat(filepath.Join(dd.JobDataDir(), "latest")); err == nil {
		t.Error("a failed save moved latest")
	}

	// Under the cap the same shape is saved, and loads back.
	small := any("")
	for range depth {
		small = []any{small}
	}
	if v := mustCore(t, c, "save_job_data", "small", small); v != true {
		t.Fatalf("save_job_data(small) = %v", v)
	}
	if v := mustCore(t, c, "load_job_data", "small"); py.Repr(v) != py.Repr(small) {
		t.Errorf("load_job_data(small) = %s", py.Repr(v))
	}
	// A refused save over an existing job keeps what was saved.
	if v := mustCore(t, c, "save_job_data", "small", params[1]); v != false {
		t.Fatalf("save_job_data(small, over the cap) = %v", v)
	}
	if v := mustCore(t, c, "load_job_data", "small"); py.Repr(v) != py.Repr(small) {
		t.Errorf("after a refused save, load_job_data(small) = %.60s", py.Repr(v))
	}
}

func TestCoreService_loadJobData_refusesAnOversizedFile(t *testing.T) {
	c, dd, _ := newTestCore(t)
	mustCore(t, c, "save_job_data", "j", map[string]any{"k": "v"})
	// A file put there by hand (or an older agent) larger than the cap.
	f, err := os.OpenFile(filepath.Join(dd.JobDataDir(), "j", "data", "state.json"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`"` + strings.Repeat("x", maxSavedJSON) + `"`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if v := mustCore(t, c, "load_job_data", "j"); v != nil {
		t.Errorf("load_job_data of a %d-byte file = %.40v…, want None", maxSavedJSON+2, v)
	}
}

// TestCore_logFileNameAfterItsLines: a reader that asked for the service
// log's name finds every line logged before the call in it, although the
// agent writes its logs behind the calls.
func TestCore_logFileNameAfterItsLines(t *testing.T) {
	c, _, _ := newTestCore(t)
	log := slog.New(c.logs.(*LogStreamer).Handler("avocado.service.examples"))
	for i := range 50 {
		log.Info("line before the name", "n", i)
		p := mustCore(t, c, "get_service_log_filename").(string)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(data), "| line before the name n="); n != i+1 {
			t.Fatalf("service.log holds %d lines once its name was given, want %d", n, i+1)
		}
	}
}
