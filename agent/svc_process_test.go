//go:build linux

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent/pgroup"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// newProcSvc returns a service with a short kill grace whose Close, and a
// check that no goroutine of it is left, run at the end of the test.
func newProcSvc(tb testing.TB, mod func(*ProcessConfig)) (*ProcessService, *testutil.LogRecorder) {
	tb.Helper()
	checkProcGoroutinesSettle(tb)
	cfg := DefaultProcessConfig()
	cfg.KillGrace = 300 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	log := &testutil.LogRecorder{}
	s, err := NewProcessService(cfg, slog.New(log))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s, log
}

// checkProcGoroutinesSettle fails the test if, once its cleanups ran, a
// goroutine of the process service or of os/exec is still alive. Goroutines
// take a moment to unwind after they signalled completion, so the check
// retries for a while; only a leak makes it fail.
func checkProcGoroutinesSettle(tb testing.TB) {
	tb.Helper()
	tb.Cleanup(func() {
		testutil.NoGoroutinesLeft(tb, 5*time.Second, "agent.(*ProcessService)", "pgroup.waitExited", "pgroup.(*Group)", "os/exec.")
	})
}

// callMethod invokes s's method directly, as the dispatcher would.
func callMethod(tb testing.TB, s Service, method string, args ...any) (any, error) {
	tb.Helper()
	m, ok := s.Methods()[method]
	if !ok {
		tb.Fatalf("%s has no method %q", s.Name(), method)
	}
	return m(context.Background(), Args(args))
}

// mustCall is callMethod that fails tb on an error.
func mustCall(tb testing.TB, s Service, method string, args ...any) any {
	tb.Helper()
	v, err := callMethod(tb, s, method, args...)
	if err != nil {
		tb.Fatalf("%s.%s: %v", s.Name(), method, err)
	}
	return v
}

func procArgv(a ...string) []any {
	out := make([]any, len(a))
	for i, s := range a {
		out[i] = s
	}
	return out
}

func procMember(tb testing.TB, v any, name string) any {
	tb.Helper()
	st, ok := v.(xmlrpc.Struct)
	if !ok {
		tb.Fatalf("result is %T, not Struct", v)
	}
	x, ok := st.Get(name)
	if !ok {
		tb.Fatalf("result has no member %q: %v", name, st)
	}
	return x
}

func procWantFault(tb testing.TB, err error, excType, substr string) {
	tb.Helper()
	f, ok := xmlrpc.AsFault(err)
	if !ok {
		tb.Fatalf("error %v (%T) is not a Fault", err, err)
	}
	if f.ExcType != excType || !strings.Contains(f.ExcValue, substr) {
		tb.Fatalf("fault %s: %s; want %s containing %q", f.ExcType, f.ExcValue, excType, substr)
	}
}

// pidAlive reports whether pid exists and is not a zombie.
func procPidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) state ...": comm may hold ") ", so look after the last.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

func procWantGroupGone(tb testing.TB, pgid int) {
	tb.Helper()
	left, err := pgroup.LiveMembers(pgid)
	if err != nil {
		tb.Fatal(err)
	}
	if len(left) > 0 {
		tb.Fatalf("process group %d still has live members %v", pgid, left)
	}
}

// waitForFile waits for a command to signal progress through a file;
// bounded so that a broken command fails instead of hanging.
func procWaitForFile(tb testing.TB, path string) []byte {
	tb.Helper()
	for range 3000 {
		if b, err := os.ReadFile(path); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return b
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("%s never appeared", path)
	return nil
}

func TestProcessService_Run_echo(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	r := mustCall(t, s, "run", procArgv("echo", "hello", "world"))
	if got := procMember(t, r, "stdout"); !bytes.Equal(got.([]byte), []byte("hello world\n")) {
		t.Fatalf("stdout %q", got)
	}
	if got := procMember(t, r, "stderr").([]byte); len(got) != 0 {
		t.Fatalf("stderr %q", got)
	}
	for name, want := range map[string]any{"exit_code": 0, "stdout_truncated": false, "stderr_truncated": false, "timed_out": false} {
		if got := procMember(t, r, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if pid := procMember(t, r, "pid").(int); pid <= 0 {
		t.Errorf("pid %d", pid)
	}
	if d := procMember(t, r, "duration").(float64); d < 0 {
		t.Errorf("duration %v", d)
	}
}

func TestProcessService_Run_printfExact(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	// argv goes to the program untouched: no shell splits or expands it.
	r := mustCall(t, s, "run", procArgv("printf", "%s|%s|%s\n", "a  b", "", "$HOME *"))
	if got := string(procMember(t, r, "stdout").([]byte)); got != "a  b||$HOME *\n" {
		t.Fatalf("stdout %q", got)
	}
}

func TestProcessService_Run_binaryOutput(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	r := mustCall(t, s, "run", procArgv("sh", "-c", `printf '\000\377x\r'; printf '\377\000' >&2`))
	if got := procMember(t, r, "stdout").([]byte); !bytes.Equal(got, []byte{0, 0xff, 'x', '\r'}) {
		t.Fatalf("stdout %q", got)
	}
	if got := procMember(t, r, "stderr").([]byte); !bytes.Equal(got, []byte{0xff, 0}) {
		t.Fatalf("stderr %q", got)
	}
}

func TestProcessService_Run_stdin(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	in := []byte{0, 1, 2, 0xff, '\n', 'z'}
	r := mustCall(t, s, "run", procArgv("cat"), map[string]any{"stdin": in})
	if got := procMember(t, r, "stdout").([]byte); !bytes.Equal(got, in) {
		t.Fatalf("bytes stdin: stdout %q", got)
	}
	r = mustCall(t, s, "run", procArgv("cat"), map[string]any{"stdin": "héllo\n"})
	if got := string(procMember(t, r, "stdout").([]byte)); got != "héllo\n" {
		t.Fatalf("str stdin: stdout %q", got)
	}
	// Without stdin the child reads /dev/null, never the agent's stdin.
	r = mustCall(t, s, "run", procArgv("cat"))
	if got := procMember(t, r, "stdout").([]byte); len(got) != 0 {
		t.Fatalf("no stdin: stdout %q", got)
	}
	// A program that ignores its stdin must not make run fail or hang.
	big := bytes.Repeat([]byte("x"), 1<<20)
	r = mustCall(t, s, "run", procArgv("true"), map[string]any{"stdin": big})
	if got := procMember(t, r, "exit_code"); got != 0 {
		t.Fatalf("ignored stdin: exit_code %v", got)
	}
}

func TestProcessService_Run_envIsMinimal(t *testing.T) {
	t.Setenv("VTCLUSTER_AGENT_TOKEN", "s3cret")
	s, _ := newProcSvc(t, nil)
	r := mustCall(t, s, "run", procArgv("env"), map[string]any{"env": map[string]any{"FOO": "bar baz", "LANG": "C"}})
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(procMember(t, r, "stdout").([]byte)), "\n"), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	def := DefaultProcessConfig().BaseEnv
	want := map[string]string{"FOO": "bar baz", "LANG": "C", "PATH": def["PATH"], "HOME": def["HOME"]}
	if len(got) != len(want) {
		t.Fatalf("environment %v, want exactly %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	if strings.Contains(string(procMember(t, r, "stdout").([]byte)), "s3cret") {
		t.Fatal("the agent's token leaked into the child")
	}
}

func TestProcessService_Run_pathFromChildEnv(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vtc-tool"), []byte("#!/bin/sh\necho from tool\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := mustCall(t, s, "run", procArgv("vtc-tool"), map[string]any{"env": map[string]any{"PATH": "relative:" + dir}})
	if got := string(procMember(t, r, "stdout").([]byte)); got != "from tool\n" {
		t.Fatalf("stdout %q", got)
	}
	_, err := callMethod(t, s, "run", procArgv("vtc-tool"))
	procWantFault(t, err, "FileNotFoundError", "[Errno 2] No such file or directory: 'vtc-tool'")
}

func TestProcessService_Run_cwd(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	dir := t.TempDir()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := mustCall(t, s, "run", procArgv("pwd"), map[string]any{"cwd": dir})
	if got := string(procMember(t, r, "stdout").([]byte)); got != real+"\n" {
		t.Fatalf("stdout %q, want %q", got, real)
	}
	r = mustCall(t, s, "run", procArgv("pwd"))
	if got := string(procMember(t, r, "stdout").([]byte)); got != "/\n" {
		t.Fatalf("default cwd: stdout %q", got)
	}
	// A relative program path resolves against cwd, as execve after chdir does.
	if err := os.WriteFile(filepath.Join(dir, "local"), []byte("#!/bin/sh\necho local\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r = mustCall(t, s, "run", procArgv("./local"), map[string]any{"cwd": dir})
	if got := string(procMember(t, r, "stdout").([]byte)); got != "local\n" {
		t.Fatalf("./local: stdout %q", got)
	}
}

func TestProcessService_Run_exitCode(t *testing.T) {
	s, log := newProcSvc(t, nil)
	r := mustCall(t, s, "run", procArgv("sh", "-c", "echo oops >&2; exit 3"))
	if got := procMember(t, r, "exit_code"); got != 3 {
		t.Fatalf("exit_code %v", got)
	}
	if got := string(procMember(t, r, "stderr").([]byte)); got != "oops\n" {
		t.Fatalf("stderr %q", got)
	}
	pid := procMember(t, r, "pid").(int)
	want := []string{
		fmt.Sprintf("INFO run ['sh', '-c', 'echo oops >&2; exit 3'] (pid %d)", pid),
		"WARN exit status 3 after ",
	}
	lines := log.Lines()
	if len(lines) != 2 || lines[0] != want[0] || !strings.HasPrefix(lines[1], want[1]) || !strings.HasSuffix(lines[1], fmt.Sprintf(" s (pid %d)", pid)) {
		t.Fatalf("log %q, want %q", lines, want)
	}
}

func TestProcessService_Run_killedBySignal(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	for sig, want := range map[string]int{"KILL": -9, "USR1": -10, "TERM": -15} {
		r := mustCall(t, s, "run", procArgv("sh", "-c", "kill -"+sig+" $$"))
		if got := procMember(t, r, "exit_code"); got != want {
			t.Errorf("SIG%s: exit_code %v, want %d", sig, got, want)
		}
		if procMember(t, r, "timed_out") != false {
			t.Errorf("SIG%s: timed_out", sig)
		}
	}
}

func TestProcessService_Run_timeoutKillsGroup(t *testing.T) {
	s, log := newProcSvc(t, nil)
	r := mustCall(t, s, "run", procArgv("sh", "-c", "sleep 100 & echo $!; exec sleep 100"), map[string]any{"timeout": 0.2})
	if procMember(t, r, "timed_out") != true {
		t.Fatal("timed_out is false")
	}
	if got := procMember(t, r, "exit_code"); got != -15 {
		t.Fatalf("exit_code %v, want -15 (SIGTERM)", got)
	}
	bg, err := strconv.Atoi(strings.TrimSpace(string(procMember(t, r, "stdout").([]byte))))
	if err != nil {
		t.Fatal(err)
	}
	if procPidAlive(bg) {
		t.Fatalf("background child %d survived the timeout", bg)
	}
	procWantGroupGone(t, procMember(t, r, "pid").(int))
	if !slices.ContainsFunc(log.Lines(), func(l string) bool {
		return strings.HasPrefix(l, "WARN stopping process group") && strings.HasSuffix(l, ": timed out")
	}) {
		t.Fatalf("no warning about the timeout in %q", log.Lines())
	}
}

func TestProcessService_Run_timeoutEscalatesToKill(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	// Ignored signals stay ignored across fork and exec: the whole tree
	// shrugs off SIGTERM and needs SIGKILL.
	r := mustCall(t, s, "run", procArgv("sh", "-c", `trap "" TERM; sleep 100 & echo $!; sleep 100`), map[string]any{"timeout": 0.1})
	if procMember(t, r, "timed_out") != true || procMember(t, r, "exit_code") != -9 {
		t.Fatalf("timed_out %v exit_code %v, want true -9", procMember(t, r, "timed_out"), procMember(t, r, "exit_code"))
	}
	bg, err := strconv.Atoi(strings.TrimSpace(string(procMember(t, r, "stdout").([]byte))))
	if err != nil {
		t.Fatal(err)
	}
	if procPidAlive(bg) {
		t.Fatalf("background child %d survived SIGKILL", bg)
	}
	procWantGroupGone(t, procMember(t, r, "pid").(int))
}

func TestProcessService_Run_strayBackgroundJobIsStopped(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	// The shell exits at once; the job it forgot still holds stdout. run
	// must neither wait 100 s for it nor leave it running.
	r := mustCall(t, s, "run", procArgv("sh", "-c", "sleep 100 & echo $!"))
	if procMember(t, r, "exit_code") != 0 || procMember(t, r, "timed_out") != false {
		t.Fatalf("exit_code %v timed_out %v", procMember(t, r, "exit_code"), procMember(t, r, "timed_out"))
	}
	bg, err := strconv.Atoi(strings.TrimSpace(string(procMember(t, r, "stdout").([]byte))))
	if err != nil {
		t.Fatal(err)
	}
	if procPidAlive(bg) {
		t.Fatalf("stray job %d survived", bg)
	}
}

func TestProcessService_Run_detachedOutputHolderDoesNotHang(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	// The rule has no timing window: a process that left the group before
	// the first one exited is not stopped, whatever the load. So the
	// command waits until its background child has left the group (setsid
	// runs in the child, after the fork) before it exits. The detached
	// process still holds stdout, and run must not wait for it to close.
	script := `setsid sleep 100 & p=$!
while [ "$(cut -d' ' -f5 /proc/$p/stat)" = "$$" ]; do :; done
echo $p`
	start := time.Now()
	r := mustCall(t, s, "run", procArgv("sh", "-c", script))
	pid, err := strconv.Atoi(strings.TrimSpace(string(procMember(t, r, "stdout").([]byte))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if procMember(t, r, "exit_code") != 0 {
		t.Fatalf("exit_code %v", procMember(t, r, "exit_code"))
	}
	if !procPidAlive(pid) {
		t.Fatalf("detached process %d was stopped", pid)
	}
	// Bounded by KillGrace (300 ms here), not by the 100 s sleep.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("run took %v", d)
	}
}

// TestProcessService_Run_undetachedBackgroundIsStopped is the other half of
// the rule: a background process still in the group when the first one
// exits is stopped, even if it is about to detach.
func TestProcessService_Run_undetachedBackgroundIsStopped(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	r := mustCall(t, s, "run", procArgv("sh", "-c", "sleep 100 & echo $!"))
	pid, err := strconv.Atoi(strings.TrimSpace(string(procMember(t, r, "stdout").([]byte))))
	if err != nil {
		t.Fatal(err)
	}
	if procPidAlive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("background process %d left in the group survived", pid)
	}
}

func TestProcessService_Run_truncation(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	r := mustCall(t, s, "run", procArgv("sh", "-c", "printf 0123456789; printf abc >&2"), map[string]any{"max_output": 4})
	if got := string(procMember(t, r, "stdout").([]byte)); got != "6789" {
		t.Fatalf("stdout %q, want the last 4 bytes", got)
	}
	if procMember(t, r, "stdout_truncated") != true || procMember(t, r, "stderr_truncated") != false {
		t.Fatalf("truncated flags %v %v", procMember(t, r, "stdout_truncated"), procMember(t, r, "stderr_truncated"))
	}
	if got := string(procMember(t, r, "stderr").([]byte)); got != "abc" {
		t.Fatalf("stderr %q", got)
	}

	r = mustCall(t, s, "run", procArgv("sh", "-c", "head -c 3000000 /dev/zero; printf END"))
	out := procMember(t, r, "stdout").([]byte)
	if len(out) != 1<<20 || !bytes.HasSuffix(out, []byte("END")) || procMember(t, r, "stdout_truncated") != true {
		t.Fatalf("default limit: %d bytes, truncated %v", len(out), procMember(t, r, "stdout_truncated"))
	}

	r = mustCall(t, s, "run", procArgv("echo", "x"), map[string]any{"max_output": 0})
	if len(procMember(t, r, "stdout").([]byte)) != 0 || procMember(t, r, "stdout_truncated") != true {
		t.Fatal("max_output 0 kept output")
	}

	r = mustCall(t, s, "run", procArgv("printf", "1234"), map[string]any{"max_output": 4})
	if string(procMember(t, r, "stdout").([]byte)) != "1234" || procMember(t, r, "stdout_truncated") != false {
		t.Fatal("output of exactly max_output bytes reported truncated")
	}
}

func TestProcessService_Run_launchErrors(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(garbage, []byte{0x7f, 'X', 0, 0, 1, 2}, 0o755); err != nil {
		t.Fatal(err)
	}
	inPath := map[string]any{"PATH": dir}
	cases := []struct {
		name    string
		argv    []any
		opts    map[string]any
		excType string
		msg     string
	}{
		{"missing path", procArgv("/nonexistent/prog"), nil, "FileNotFoundError", "[Errno 2] No such file or directory: '/nonexistent/prog'"},
		{"missing name", procArgv("no-such-program-vtc"), nil, "FileNotFoundError", "[Errno 2] No such file or directory: 'no-such-program-vtc'"},
		{"not executable", procArgv(plain), nil, "PermissionError", "[Errno 13] Permission denied: '" + plain + "'"},
		{"not executable in PATH", procArgv("plain"), map[string]any{"env": inPath}, "PermissionError", "[Errno 13] Permission denied: 'plain'"},
		{"directory", procArgv(dir), nil, "PermissionError", "[Errno 13] Permission denied: '" + dir + "'"},
		{"exec format", procArgv(garbage), nil, "OSError", "[Errno 8] Exec format error: '" + garbage + "'"},
		{"missing cwd", procArgv("true"), map[string]any{"cwd": "/nonexistent-dir"}, "FileNotFoundError", "[Errno 2] No such file or directory: '/nonexistent-dir'"},
		{"cwd is a file", procArgv("true"), map[string]any{"cwd": plain}, "NotADirectoryError", "[Errno 20] Not a directory: '" + plain + "'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []any{c.argv}
			if c.opts != nil {
				args = append(args, c.opts)
			}
			for _, method := range []string{"run", "start"} {
				_, err := callMethod(t, s, method, args...)
				procWantFault(t, err, c.excType, c.msg)
			}
		})
	}
	if got := mustCall(t, s, "list"); len(got.([]any)) != 0 {
		t.Fatalf("failed starts are listed: %v", got)
	}
}

func TestProcessService_Run_badOptions(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	echo := procArgv("echo")
	cases := []struct {
		name    string
		args    []any
		excType string
		msg     string
	}{
		{"no args", nil, "TypeError", "positional arguments"},
		{"three args", []any{echo, map[string]any{}, 1}, "TypeError", "positional arguments"},
		{"argv str", []any{"echo hi"}, "TypeError", "'argv' must be list"},
		{"argv item int", []any{[]any{"echo", 1}}, "TypeError", "'argv' item 1 must be str"},
		{"argv empty", []any{[]any{}}, "ValueError", "'argv' must not be empty"},
		{"argv empty program", []any{procArgv("")}, "ValueError", "'argv' item 0"},
		{"argv NUL", []any{procArgv("echo", "a\x00b")}, "ValueError", "'argv' item 1 contains a NUL"},
		{"options list", []any{echo, []any{}}, "TypeError", "'options' must be dict"},
		{"unknown option", []any{echo, map[string]any{"shell": true}}, "TypeError", "unexpected option 'shell'"},
		{"timeout str", []any{echo, map[string]any{"timeout": "5"}}, "TypeError", "option 'timeout' must be int or float, not str"},
		{"timeout bool", []any{echo, map[string]any{"timeout": true}}, "TypeError", "option 'timeout' must be int or float, not bool"},
		{"timeout negative", []any{echo, map[string]any{"timeout": -1}}, "ValueError", "option 'timeout' must be within"},
		{"timeout nan", []any{echo, map[string]any{"timeout": math.NaN()}}, "ValueError", "option 'timeout'"},
		{"timeout huge", []any{echo, map[string]any{"timeout": 1e300}}, "ValueError", "option 'timeout'"},
		{"env list", []any{echo, map[string]any{"env": []any{"A=1"}}}, "TypeError", "option 'env' must be dict"},
		{"env int value", []any{echo, map[string]any{"env": map[string]any{"A": 1}}}, "TypeError", "option 'env' value of 'A' must be str, not int"},
		{"env bad name", []any{echo, map[string]any{"env": map[string]any{"A=B": "x"}}}, "ValueError", "option 'env' key 'A=B'"},
		{"env NUL value", []any{echo, map[string]any{"env": map[string]any{"A": "x\x00"}}}, "ValueError", "option 'env' value of 'A' contains a NUL"},
		{"cwd relative", []any{echo, map[string]any{"cwd": "tmp"}}, "ValueError", "option 'cwd' must be an absolute path, got 'tmp'"},
		{"cwd int", []any{echo, map[string]any{"cwd": 5}}, "TypeError", "option 'cwd' must be str"},
		{"stdin int", []any{echo, map[string]any{"stdin": 5}}, "TypeError", "option 'stdin' must be bytes or str"},
		{"max_output negative", []any{echo, map[string]any{"max_output": -1}}, "ValueError", "option 'max_output' must be within"},
		{"max_output float", []any{echo, map[string]any{"max_output": 1.5}}, "TypeError", "option 'max_output' must be int"},
		{"max_output huge", []any{echo, map[string]any{"max_output": 1 << 30}}, "ValueError", "option 'max_output'"},
		{"log_output str", []any{echo, map[string]any{"log_output": "yes"}}, "TypeError", "option 'log_output' must be bool"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, method := range []string{"run", "start"} {
				_, err := callMethod(t, s, method, c.args...)
				procWantFault(t, err, c.excType, c.msg)
			}
		})
	}
	// None means "default" for every option, as a Python caller passing
	// timeout=None expects.
	opts := map[string]any{}
	for _, k := range strings.Split(optionNames, ", ") {
		opts[k] = nil
	}
	r := mustCall(t, s, "run", procArgv("echo", "ok"), opts)
	if string(procMember(t, r, "stdout").([]byte)) != "ok\n" {
		t.Fatalf("None options: %v", r)
	}
}

func TestProcessService_Run_logOutput(t *testing.T) {
	s, log := newProcSvc(t, nil)
	script := `printf 'one\ntwo\r\n'; printf 'err\n' >&2; head -c 5000 /dev/zero | tr '\0' a; printf '\nlast'`
	r := mustCall(t, s, "run", procArgv("sh", "-c", script), map[string]any{"log_output": true})
	pid := procMember(t, r, "pid").(int)
	p := func(stream, text string) string { return fmt.Sprintf("INFO [pid %d %s] %s", pid, stream, text) }
	lines := log.Lines()
	for _, want := range []string{
		p("stdout", "one"), p("stdout", "two"), p("stderr", "err"),
		p("stdout", strings.Repeat("a", maxLogLine)), p("stdout", strings.Repeat("a", 5000-maxLogLine)),
		p("stdout", "last"),
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("no log line %.80q in %.300q", want, lines)
		}
	}

	before := len(log.Records())
	mustCall(t, s, "run", procArgv("echo", "quiet"))
	for _, l := range log.Lines()[before:] {
		if strings.Contains(l, "quiet") && !strings.Contains(l, "run [") {
			t.Fatalf("output logged without log_output: %q", l)
		}
	}
}

func TestProcessService_Run_wireEncodable(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	r := mustCall(t, s, "run", procArgv("sh", "-c", `printf '\000<&>\377'; printf 'e\033' >&2; exit 2`))
	body, err := xmlrpc.EncodeResponse(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := xmlrpc.DecodeResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := got.(map[string]any)
	if !ok {
		t.Fatalf("decoded %T", got)
	}
	if !bytes.Equal(m["stdout"].([]byte), []byte("\x00<&>\xff")) || !bytes.Equal(m["stderr"].([]byte), []byte("e\x1b")) {
		t.Fatalf("output after the wire: %q %q", m["stdout"], m["stderr"])
	}
	if m["exit_code"] != int64(2) || m["timed_out"] != false || m["pid"] != int64(procMember(t, r, "pid").(int)) {
		t.Fatalf("decoded %v", m)
	}
	if _, ok := m["duration"].(float64); !ok {
		t.Fatalf("duration %T", m["duration"])
	}
}

func TestProcessService_Run_concurrent(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			want := fmt.Sprintf("call %d", i)
			v, err := callMethod(t, s, "run", procArgv("sh", "-c", `printf "$1"; printf "$1" >&2`, "sh", want))
			if err != nil {
				errs <- err
				return
			}
			st := v.(xmlrpc.Struct)
			out, _ := st.Get("stdout")
			errOut, _ := st.Get("stderr")
			if string(out.([]byte)) != want || string(errOut.([]byte)) != want {
				errs <- fmt.Errorf("call %d got %q / %q", i, out, errOut)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestProcessService_Run_callerGoneStopsCommand(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		procWaitForFile(t, pidFile)
		cancel()
	}()
	_, err := s.Methods()["run"](ctx, Args{procArgv("sh", "-c", `echo $$ > "$1"; exec sleep 100`, "sh", pidFile)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(procWaitForFile(t, pidFile))))
	procWantGroupGone(t, pid)
}

func TestProcessService_StartPoll_incremental(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	flag := filepath.Join(t.TempDir(), "flag")
	id := mustCall(t, s, "start", procArgv("sh", "-c", `echo one; echo e1 >&2; while [ ! -e "$1" ]; do sleep 0.01; done; echo two`, "sh", flag)).(string)
	if len(id) != 8 {
		t.Fatalf("id %q", id)
	}
	var out, errOut []byte
	for range 3000 {
		r := mustCall(t, s, "poll", id)
		if procMember(t, r, "running") != true || procMember(t, r, "exit_code") != nil {
			t.Fatalf("finished early: %v", r)
		}
		out = append(out, procMember(t, r, "stdout").([]byte)...)
		errOut = append(errOut, procMember(t, r, "stderr").([]byte)...)
		if string(out) == "one\n" && string(errOut) == "e1\n" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if string(out) != "one\n" || string(errOut) != "e1\n" {
		t.Fatalf("first output %q %q", out, errOut)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustCall(t, s, "wait", id, 60)
	if procMember(t, r, "running") != false || procMember(t, r, "exit_code") != 0 || procMember(t, r, "id") != id {
		t.Fatalf("after wait: %v", r)
	}
	if got := string(procMember(t, r, "stdout").([]byte)); got != "two\n" {
		t.Fatalf("second output %q: poll must return only new output", got)
	}
	r = mustCall(t, s, "poll", id)
	if len(procMember(t, r, "stdout").([]byte)) != 0 || procMember(t, r, "running") != false || procMember(t, r, "exit_code") != 0 {
		t.Fatalf("poll after the end: %v", r)
	}
}

func TestProcessService_Start_ringDropsOldest(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	id := mustCall(t, s, "start", procArgv("printf", "0123456789"), map[string]any{"max_output": 4}).(string)
	r := mustCall(t, s, "wait", id)
	if string(procMember(t, r, "stdout").([]byte)) != "6789" || procMember(t, r, "stdout_dropped") != 6 || procMember(t, r, "stderr_dropped") != 0 {
		t.Fatalf("wait: %v", r)
	}
	r = mustCall(t, s, "poll", id)
	if len(procMember(t, r, "stdout").([]byte)) != 0 || procMember(t, r, "stdout_dropped") != 0 {
		t.Fatalf("second poll: %v", r)
	}
}

func TestProcessService_Wait_timeoutThenKill(t *testing.T) {
	s, log := newProcSvc(t, nil)
	id := mustCall(t, s, "start", procArgv("sleep", "100")).(string)
	r := mustCall(t, s, "wait", id, 0.05)
	if procMember(t, r, "running") != true || procMember(t, r, "exit_code") != nil || procMember(t, r, "timed_out") != false {
		t.Fatalf("wait ran out of time: %v", r)
	}
	pid := procMember(t, r, "pid").(int)
	if got := mustCall(t, s, "kill", id); got != true {
		t.Fatalf("kill: %v", got)
	}
	r = mustCall(t, s, "wait", id, 60)
	if procMember(t, r, "running") != false || procMember(t, r, "exit_code") != -15 {
		t.Fatalf("after kill: %v", r)
	}
	if got := mustCall(t, s, "kill", id); got != false {
		t.Fatalf("kill of a finished process: %v", got)
	}
	procWantGroupGone(t, pid)
	want := fmt.Sprintf("INFO start ['sleep', '100'] (pid %d, id %s)", pid, id)
	if lines := log.Lines(); !slices.Contains(lines, want) {
		t.Fatalf("no %q in %q", want, lines)
	}

	for _, c := range []struct {
		args    []any
		excType string
		msg     string
	}{
		{[]any{id, -1}, "ValueError", "argument 'timeout' must be within 0..300 seconds"},
		{[]any{id, 301}, "ValueError", "argument 'timeout'"},
		{[]any{id, "1"}, "TypeError", "argument 'timeout' must be int or float"},
		{[]any{"nope"}, "KeyError", "no background process with id 'nope'"},
		{[]any{5}, "TypeError", "argument 'id' must be str"},
		{[]any{}, "TypeError", "positional arguments"},
	} {
		_, err := callMethod(t, s, "wait", c.args...)
		procWantFault(t, err, c.excType, c.msg)
	}
}

func TestProcessService_Wait_callerGone(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	id := mustCall(t, s, "start", procArgv("sleep", "100")).(string)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Methods()["wait"](ctx, Args{id, 60}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	r := mustCall(t, s, "poll", id)
	if procMember(t, r, "running") != true {
		t.Fatal("an abandoned wait stopped the process")
	}
}

func TestProcessService_Kill_signals(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	id := mustCall(t, s, "start", procArgv("sh", "-c", `trap "" TERM; sleep 100 & sleep 100`)).(string)
	for _, c := range []struct {
		args    []any
		excType string
		msg     string
	}{
		{[]any{id, 0}, "ValueError", "argument 'signal' must be a signal number within 1..64, got 0"},
		{[]any{id, 65}, "ValueError", "argument 'signal'"},
		{[]any{id, "KILL"}, "TypeError", "argument 'signal' must be int"},
		{[]any{"nope"}, "KeyError", "'nope'"},
	} {
		_, err := callMethod(t, s, "kill", c.args...)
		procWantFault(t, err, c.excType, c.msg)
	}
	if got := mustCall(t, s, "kill", id, 9); got != true {
		t.Fatalf("kill: %v", got)
	}
	r := mustCall(t, s, "wait", id, 60)
	if procMember(t, r, "exit_code") != -9 {
		t.Fatalf("after SIGKILL: %v", r)
	}
	procWantGroupGone(t, procMember(t, r, "pid").(int))
}

func TestProcessService_Start_timeout(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	id := mustCall(t, s, "start", procArgv("sleep", "100"), map[string]any{"timeout": 0.1}).(string)
	r := mustCall(t, s, "wait", id, 60)
	if procMember(t, r, "running") != false || procMember(t, r, "timed_out") != true || procMember(t, r, "exit_code") != -15 {
		t.Fatalf("after timeout: %v", r)
	}
}

func TestProcessService_ListRemove(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	a := mustCall(t, s, "start", procArgv("sleep", "100"), map[string]any{"owner": "p1"}).(string)
	b := mustCall(t, s, "start", procArgv("sh", "-c", "exit 4")).(string)
	mustCall(t, s, "wait", b, 60)

	l := mustCall(t, s, "list").([]any)
	if len(l) != 2 || procMember(t, l[0], "id") != a || procMember(t, l[1], "id") != b {
		t.Fatalf("list: %v", l)
	}
	if procMember(t, l[0], "running") != true || procMember(t, l[0], "exit_code") != nil || !slices.Equal(procMember(t, l[0], "argv").([]string), []string{"sleep", "100"}) {
		t.Fatalf("running entry: %v", l[0])
	}
	if procMember(t, l[0], "owner") != "p1" || procMember(t, l[1], "owner") != "" {
		t.Fatalf("owners: %v", l)
	}
	if procMember(t, l[1], "running") != false || procMember(t, l[1], "exit_code") != 4 {
		t.Fatalf("finished entry: %v", l[1])
	}
	if _, err := xmlrpc.EncodeResponse(l); err != nil {
		t.Fatalf("list is not wire-encodable: %v", err)
	}

	_, err := callMethod(t, s, "remove", a)
	procWantFault(t, err, "ValueError", "is still running")
	if got := mustCall(t, s, "remove", b); got != true {
		t.Fatalf("remove: %v", got)
	}
	_, err = callMethod(t, s, "poll", b)
	procWantFault(t, err, "KeyError", "no background process with id '"+b+"'")
	_, err = callMethod(t, s, "remove", b)
	procWantFault(t, err, "KeyError", b)
	if l := mustCall(t, s, "list").([]any); len(l) != 1 {
		t.Fatalf("list after remove: %v", l)
	}
	_, err = callMethod(t, s, "list", 1)
	procWantFault(t, err, "TypeError", "positional arguments")
}

func TestProcessService_Start_limitEvictsFinished(t *testing.T) {
	s, _ := newProcSvc(t, func(c *ProcessConfig) { c.MaxBackground = 2 })
	a := mustCall(t, s, "start", procArgv("sleep", "100")).(string)
	b := mustCall(t, s, "start", procArgv("sleep", "100")).(string)
	_, err := callMethod(t, s, "start", procArgv("true"))
	procWantFault(t, err, "RuntimeError", "too many background processes")
	mustCall(t, s, "kill", b)
	mustCall(t, s, "wait", b, 60)
	c := mustCall(t, s, "start", procArgv("sleep", "100")).(string)
	var ids []string
	for _, e := range mustCall(t, s, "list").([]any) {
		ids = append(ids, procMember(t, e, "id").(string))
	}
	if !slices.Equal(ids, []string{a, c}) {
		t.Fatalf("list %v, want [%s %s]", ids, a, c)
	}
}

func TestProcessService_Start_finishedAreForgotten(t *testing.T) {
	s, _ := newProcSvc(t, func(c *ProcessConfig) { c.RetainFinished = time.Nanosecond })
	id := mustCall(t, s, "start", procArgv("true")).(string)
	if r := mustCall(t, s, "wait", id, 60); procMember(t, r, "running") != false {
		t.Fatalf("wait: %v", r)
	}
	if l := mustCall(t, s, "list").([]any); len(l) != 0 {
		t.Fatalf("list kept an expired process: %v", l)
	}
	_, err := callMethod(t, s, "poll", id)
	procWantFault(t, err, "KeyError", id)
}

func TestProcessService_Close_stopsEverything(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	var pids []int
	for range 3 {
		id := mustCall(t, s, "start", procArgv("sh", "-c", "sleep 100 & sleep 100")).(string)
		pids = append(pids, procMember(t, mustCall(t, s, "poll", id), "pid").(int))
	}
	// One that needs SIGKILL.
	id := mustCall(t, s, "start", procArgv("sh", "-c", `trap "" TERM; sleep 100`)).(string)
	pids = append(pids, procMember(t, mustCall(t, s, "poll", id), "pid").(int))

	// And a run call in flight.
	pidFile := filepath.Join(t.TempDir(), "pid")
	runErr := make(chan error, 1)
	go func() {
		_, err := callMethod(t, s, "run", procArgv("sh", "-c", `echo $$ > "$1"; sleep 100 & sleep 100`, "sh", pidFile))
		runErr <- err
	}()
	runPid, _ := strconv.Atoi(strings.TrimSpace(string(procWaitForFile(t, pidFile))))
	pids = append(pids, runPid)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		procWantGroupGone(t, pid)
	}
	procWantFault(t, <-runErr, "RuntimeError", "shut down")

	_, err := callMethod(t, s, "start", procArgv("true"))
	procWantFault(t, err, "RuntimeError", "shut down")
	_, err = callMethod(t, s, "run", procArgv("true"))
	procWantFault(t, err, "RuntimeError", "shut down")
	r := mustCall(t, s, "poll", id)
	if procMember(t, r, "running") != false || procMember(t, r, "exit_code") != -9 {
		t.Fatalf("final state after Close: %v", r)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewProcessService_config(t *testing.T) {
	s, err := NewProcessService(ProcessConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	def := DefaultProcessConfig()
	if s.cfg.MaxOutput != def.MaxOutput || s.cfg.MaxBackground != def.MaxBackground || s.cfg.MaxWait != def.MaxWait ||
		s.cfg.Dir != "/" || s.cfg.BaseEnv["LANG"] != "C.UTF-8" || s.Name() != "process" {
		t.Fatalf("defaults not applied: %+v", s.cfg)
	}
	r := NewRegistry()
	if err := r.Register(s); err != nil {
		t.Fatal(err)
	}
	want := []string{"process.kill", "process.list", "process.poll", "process.remove", "process.run", "process.start", "process.stop_others", "process.wait"}
	if got := r.Names(); !slices.Equal(got, want) {
		t.Fatalf("methods %v", got)
	}

	for name, cfg := range map[string]ProcessConfig{
		"MaxOutput":      {MaxOutput: -1},
		"MaxBackground":  {MaxBackground: -1},
		"KillGrace":      {KillGrace: -time.Second},
		"Dir":            {Dir: "relative"},
		"BaseEnv":        {BaseEnv: map[string]string{"A=B": "x"}},
		"MaxOutput big":  {MaxOutput: maxOutputCeiling + 1},
		"RetainFinished": {RetainFinished: -1},
	} {
		if _, err := NewProcessService(cfg, nil); err == nil || !strings.Contains(err.Error(), strings.Fields(name)[0]) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func TestRing_Write_keepsTail(t *testing.T) {
	// Against a reference: whatever the write sizes, the ring holds the
	// last max bytes and counts the rest as dropped.
	for _, max := range []int{0, 1, 7, 64} {
		r := &ring{max: max}
		var all []byte
		var dropped int64
		seed := uint32(max + 1)
		for i := range 200 {
			seed = seed*1664525 + 1013904223
			p := bytes.Repeat([]byte{byte(i)}, int(seed>>24)%150)
			if _, err := r.Write(p); err != nil {
				t.Fatal(err)
			}
			all = append(all, p...)
			if i%37 == 0 {
				got, d := r.drain()
				want := all[len(all)-min(len(all), max):]
				if !bytes.Equal(got, want) || d+dropped+int64(len(got)) != int64(len(all)) {
					t.Fatalf("max %d write %d: got %d bytes (dropped %d), want %d bytes of %d", max, i, len(got), d, len(want), len(all))
				}
				all, dropped = nil, 0
			}
		}
	}
}
