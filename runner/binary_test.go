package runner

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/internal/testbin"
)

// These tests run the real vtcluster binary under the name
// avocado-runner-multihost, as Avocado does, against a real status server
// on a unix socket.

// runnerBinary returns the avocado-runner-multihost symlink to the
// vtcluster binary, built at most once per go test run.
func runnerBinary(tb testing.TB) string {
	tb.Helper()
	return testbin.RunnerPath(tb)
}

type runResult struct {
	code           int
	stdout, stderr string
}

// runRunner runs the binary from the repository root to completion.
func runRunner(tb testing.TB, args ...string) runResult {
	tb.Helper()
	cmd := exec.Command(runnerBinary(tb), args...)
	cmd.Dir = ".."
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		tb.Fatal(err)
	}
	return runResult{code, out.String(), errb.String()}
}

const localSpec = "testdata/multihost/local.json"

// taskRun runs one test of local.json the way Avocado does and returns the
// messages the status server received.
func taskRun(t *testing.T, test string, extra ...string) ([]map[string]any, runResult, string) {
	t.Helper()
	s := newUnixStatusServer(t)
	out := filepath.Join(t.TempDir(), "1-test")
	args := append([]string{"task-run", "-i", "1-" + test, "-j", "job1", "-k", "multihost", "-u", localSpec,
		"-c", `{"run.keep_tmp": false, "runner.identifier_format": "{uri}"}`, "output_dir=" + out, "test=" + test}, extra...)
	args = append(args, "-s", s.URI)
	res := runRunner(t, args...)
	msgs := s.waitFor(hasFinished)
	checkStream(t, msgs, "1-"+test, "job1")
	return msgs, res, out
}

// checkStream asserts what Avocado 113.0 needs of every message stream.
func checkStream(t *testing.T, msgs []map[string]any, id, job string) {
	t.Helper()
	if len(msgs) == 0 {
		t.Fatal("no messages")
	}
	var last float64
	finished := 0
	for i, m := range msgs {
		if m["id"] != id || m["job_id"] != job {
			t.Errorf("message %d: id/job_id = %v/%v", i, m["id"], m["job_id"])
		}
		tm, _ := m["time"].(float64)
		if tm <= 0 || tm < last {
			t.Errorf("message %d: time %v after %v", i, m["time"], last)
		}
		last = tm
		if m["status"] == "finished" {
			finished++
		}
		if log, ok := m["log"]; ok {
			if _, isBytes := log.([]byte); !isBytes {
				t.Errorf("message %d: log is not base64-wrapped bytes: %v", i, m)
			}
		}
		if _, ok := m["log_name"]; ok && m["encoding"] == nil {
			t.Errorf("message %d: log_name without encoding", i)
		}
	}
	if msgs[0]["status"] != "started" || msgs[0]["output_dir"] == nil {
		t.Errorf("first message = %v, want started with output_dir", msgs[0])
	}
	if finished != 1 || msgs[len(msgs)-1]["status"] != "finished" {
		t.Errorf("%d finished messages, last is %v; want exactly one, last", finished, msgs[len(msgs)-1])
	}
}

func finishedOf(msgs []map[string]any) map[string]any { return msgs[len(msgs)-1] }

func outputOf(msgs []map[string]any, stream string) string {
	var b strings.Builder
	for _, m := range msgs {
		if m["type"] == stream {
			b.Write(m["log"].([]byte))
		}
	}
	return b.String()
}

func TestRunnerBinary_capabilities(t *testing.T) {
	res := runRunner(t, "capabilities")
	want := `{"runnables": ["multihost"], "commands": ["capabilities", "runnable-run", "runnable-run-recipe", "task-run", "task-run-recipe"], "configuration_used": ["job.run.timeout", "multihost.alloc_timeout", "multihost.binary", "multihost.cluster", "multihost.hold_on_failure", "multihost.lease", "multihost.node_lost_after", "multihost.priority", "multihost.quarantine_after", "multihost.retry_infra", "multihost.state", "multihost.state_dir", "run.keep_tmp", "task.timeout.running"]}` + "\n"
	if res.code != 0 || res.stdout != want || res.stderr != "" {
		t.Errorf("exit %d\nstdout %q\nstderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestRunnerBinary_helpAndUsage(t *testing.T) {
	if res := runRunner(t, "--help"); res.code != 0 || !strings.Contains(res.stdout, "capabilities") {
		t.Errorf("--help: %+v", res)
	}
	for _, args := range [][]string{{"task-run"}, {"runnable-run", "-a", "-c"}, {"runnable-run-recipe"}, {"task-run-recipe"}, {}} {
		res := runRunner(t, args...)
		if res.code != 2 || !strings.HasPrefix(res.stderr, "usage: avocado-runner-multihost") || res.stdout != "" {
			t.Errorf("%v: %+v", args, res)
		}
	}
}

func TestRunnerBinary_taskRun_pass(t *testing.T) {
	msgs, res, out := taskRun(t, "pass", "KW=from-kwarg", "-a", "base64:LWM=")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	fin := finishedOf(msgs)
	if fin["result"] != "pass" || fin["returncode"] != 0.0 {
		t.Errorf("finished = %v", fin)
	}
	if msgs[0]["output_dir"] != out {
		t.Errorf("output_dir = %v, want %s", msgs[0]["output_dir"], out)
	}
	stdout := outputOf(msgs, "stdout")
	abs, _ := filepath.Abs(specDir)
	for _, want := range []string{"args: hello -c\n", "greeting: hi\n", "nodes: []\n", `{"id": "", "nodes": {}}` + "\n",
		"partition file: " + filepath.Join(out, "partition.json") + "\n", "cwd: " + abs + "\n", "kwarg: from-kwarg\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("body stdout lacks %q:\n%s", want, stdout)
		}
	}
	if got := outputOf(msgs, "stderr"); got != "to stderr\n" {
		t.Errorf("stderr = %q", got)
	}
	if _, err := os.Stat(filepath.Join(out, "partition.json")); err != nil {
		t.Error(err)
	}
	// task-run also prints each message as Python would.
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if !strings.HasPrefix(lines[0], "{'status': 'started', 'time': ") ||
		!strings.HasPrefix(lines[len(lines)-1], "{'result': 'pass', 'returncode': 0, 'status': 'finished', 'time': ") ||
		!strings.HasSuffix(lines[len(lines)-1], "'id': '1-pass', 'job_id': 'job1'}") {
		t.Errorf("printed:\n%s", res.stdout)
	}
}

func TestRunnerBinary_taskRun_fail(t *testing.T) {
	msgs, res, _ := taskRun(t, "fail")
	fin := finishedOf(msgs)
	if res.code != 0 || fin["result"] != "fail" || fin["returncode"] != 3.0 || fin["fail_reason"] != "command 'sh' exited with status 3" {
		t.Errorf("exit %d, finished %v", res.code, fin)
	}
	if outputOf(msgs, "stdout") != "going to fail\n" || outputOf(msgs, "stderr") != "oops\n" {
		t.Errorf("output: %q %q", outputOf(msgs, "stdout"), outputOf(msgs, "stderr"))
	}
}

func TestRunnerBinary_taskRun_bodyNotFound(t *testing.T) {
	msgs, res, _ := taskRun(t, "missing-body")
	fin := finishedOf(msgs)
	if res.code != 0 || fin["result"] != "error" || !strings.Contains(fin["fail_reason"].(string), "./bodies/does-not-exist.sh' not found") {
		t.Errorf("exit %d, finished %v", res.code, fin)
	}
}

func TestRunnerBinary_taskRun_bodyCrashes(t *testing.T) {
	msgs, _, _ := taskRun(t, "crash")
	fin := finishedOf(msgs)
	if fin["result"] != "fail" || fin["fail_reason"] != "command 'sh' was killed by signal SIGSEGV" || fin["returncode"] != -11.0 {
		t.Errorf("finished %v", fin)
	}
}

func TestRunnerBinary_taskRun_testTimeout(t *testing.T) {
	msgs, _, _ := taskRun(t, "timeout")
	fin := finishedOf(msgs)
	if fin["result"] != "interrupted" || fin["fail_reason"] != "Test interrupted: test timeout of 0.5 s reached" {
		t.Errorf("finished %v", fin)
	}
}

func TestRunnerBinary_taskRun_bigOutputIsChunked(t *testing.T) {
	msgs, _, _ := taskRun(t, "bigout")
	want := strings.Repeat("x", 3000000) + "\nline 1\nline 2\nline 3\nno newline at end"
	if got := outputOf(msgs, "stdout"); got != want {
		t.Fatalf("stdout: got %d bytes, want %d", len(got), len(want))
	}
	var chunks []map[string]any
	for _, m := range msgs {
		if m["type"] == "stdout" {
			chunks = append(chunks, m)
		}
	}
	if len(chunks) < 4 {
		t.Errorf("%d chunks for 3 MB", len(chunks))
	}
	for i, c := range chunks {
		b := c["log"].([]byte)
		last := i == len(chunks)-1
		switch {
		case len(b) > maxChunk:
			t.Errorf("chunk %d has %d bytes", i, len(b))
		case !last && b[len(b)-1] != '\n' && len(b) != maxChunk:
			t.Errorf("chunk %d (%d bytes) neither ends a line nor is full", i, len(b))
		case !last && c["encoding"] != nil:
			t.Errorf("chunk %d has an encoding", i)
		case last && (string(b) != "no newline at end" || c["encoding"] != "utf-8"):
			t.Errorf("last chunk = %q, encoding %v", b, c["encoding"])
		}
	}
}

func TestRunnerBinary_taskRun_specErrors(t *testing.T) {
	s := newUnixStatusServer(t)
	bad := "testdata/multihost/bad/bad-selector.json"
	res := runRunner(t, "task-run", "-i", "1-x", "-j", "j", "-u", bad, "test=bad", "output_dir="+t.TempDir(), "-s", s.URI)
	msgs := s.waitFor(hasFinished)
	checkStream(t, msgs, "1-x", "j")
	reason, _ := finishedOf(msgs)["fail_reason"].(string)
	if res.code != 0 || finishedOf(msgs)["result"] != "error" || !strings.Contains(reason, bad+":3:36: tests[1].nodes.src: selectors[0]") || strings.Contains(reason, "\n") {
		t.Errorf("exit %d, finished %v", res.code, finishedOf(msgs))
	}

	s2 := newUnixStatusServer(t)
	runRunner(t, "task-run", "-i", "1-x", "-j", "j", "-u", localSpec, "test=nope", "-s", s2.URI)
	msgs = s2.waitFor(hasFinished)
	checkStream(t, msgs, "1-x", "j")
	if reason, _ := finishedOf(msgs)["fail_reason"].(string); !strings.Contains(reason, `no test named "nope"`) {
		t.Errorf("finished %v", finishedOf(msgs))
	}
	// The task directory made for a test that never ran is removed.
	if dir, _ := msgs[0]["output_dir"].(string); dir == "" {
		t.Error("started without output_dir")
	} else if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("empty task dir %s left behind (%v)", dir, err)
	}
}

func TestRunnerBinary_taskRun_unreachableStatusServer(t *testing.T) {
	res := runRunner(t, "task-run", "-i", "1-pass", "-u", localSpec, "test=pass", "-s", filepath.Join(t.TempDir(), "none.sock"))
	if res.code != 1 || !strings.Contains(res.stderr, "cannot report to any status server") {
		t.Errorf("%+v", res)
	}
}

func TestRunnerBinary_taskRun_tcpStatusServer(t *testing.T) {
	s := newTCPStatusServer(t)
	res := runRunner(t, "task-run", "-i", "7", "-j", "J", "-u", localSpec+":pass", "output_dir="+t.TempDir(), "-s", s.URI)
	msgs := s.waitFor(hasFinished)
	checkStream(t, msgs, "7", "J")
	if res.code != 0 || finishedOf(msgs)["result"] != "pass" {
		t.Errorf("exit %d, finished %v", res.code, finishedOf(msgs))
	}
}

func TestRunnerBinary_runnableRun(t *testing.T) {
	res := runRunner(t, "runnable-run")
	if res.code != 0 || !strings.Contains(res.stdout, "'status': 'finished'") || !strings.Contains(res.stdout, "'result': 'error'") {
		t.Errorf("no args: %+v", res)
	}
	res = runRunner(t, "runnable-run", "-k", "bogus", "-u", "x")
	if res.code != 0 || !strings.Contains(res.stdout, `unsupported kind of runnable "bogus"`) {
		t.Errorf("bogus kind: %+v", res)
	}
	res = runRunner(t, "runnable-run", "-u", localSpec, "test=fail")
	if res.code != 0 || !strings.Contains(res.stdout, "{'type': 'stdout', 'log': b'going to fail\\n', 'status': 'running', 'time': ") ||
		!strings.Contains(res.stdout, "'result': 'fail'") || strings.Contains(res.stdout, "'id'") {
		t.Errorf("fail: %+v", res)
	}
}

func TestRunnerBinary_recipes(t *testing.T) {
	res := runRunner(t, "runnable-run-recipe", "testdata/nrunner/recipe_runnable_multihost.json")
	if res.code != 0 || !strings.Contains(res.stdout, "'result': 'pass'") {
		t.Errorf("runnable recipe: %+v", res)
	}
	res = runRunner(t, "task-run-recipe", "testdata/nrunner/recipe_task_multihost.json")
	if res.code != 0 || !strings.Contains(res.stdout, "'result': 'pass'") || !strings.Contains(res.stdout, "'id': '1-testdata/multihost/local.json:pass'") {
		t.Errorf("task recipe: %+v", res)
	}
	res = runRunner(t, "runnable-run-recipe", "testdata/nrunner/recipe_task_multihost.json")
	if res.code != 1 || !strings.Contains(res.stderr, "recipe_task_multihost.json: id: unknown key") {
		t.Errorf("task recipe given as a runnable recipe: %+v", res)
	}
}

// processGone reports whether pid no longer runs (a zombie counts as gone:
// only its parent can reap it).
func processGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

func TestRunnerBinary_signalKillsBodyGroupAndFinishesOnce(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(signalName(sig), func(t *testing.T) {
			s := newUnixStatusServer(t)
			out := t.TempDir()
			cmd := exec.Command(runnerBinary(t), "task-run", "-i", "1-sleep", "-j", "J", "-u", localSpec, "test=sleep", "output_dir="+out, "-s", s.URI)
			cmd.Dir = ".."
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			s.waitFor(func(msgs []map[string]any) bool { return strings.Contains(outputOf(msgs, "stdout"), "sleeping\n") })
			data, err := os.ReadFile(filepath.Join(out, "pids"))
			if err != nil {
				t.Fatal(err)
			}
			var pids []int
			for _, f := range strings.Fields(string(data)) {
				pid, _ := strconv.Atoi(f)
				pids = append(pids, pid)
			}
			if len(pids) != 2 || processGone(pids[0]) || processGone(pids[1]) {
				t.Fatalf("body processes %v not running before the signal", pids)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err = cmd.Wait()
			if err != nil {
				t.Errorf("runner exit: %v", err)
			}
			msgs := s.waitFor(hasFinished)
			checkStream(t, msgs, "1-sleep", "J")
			fin := finishedOf(msgs)
			if fin["result"] != "interrupted" || fin["fail_reason"] != "Test interrupted: runner received "+signalName(sig) {
				t.Errorf("finished = %v", fin)
			}
			for _, pid := range pids {
				if !processGone(pid) {
					t.Errorf("body process %d survived the runner", pid)
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		})
	}
}

// A signal that arrives while the body may still be starting is handled
// like any other: one finished message, then exit.
func TestRunnerBinary_sigtermEarly(t *testing.T) {
	s := newUnixStatusServer(t)
	cmd := exec.Command(runnerBinary(t), "task-run", "-i", "1-sleep", "-j", "J", "-u", localSpec, "test=sleep", "output_dir="+t.TempDir(), "-s", s.URI)
	cmd.Dir = ".."
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.waitFor(func(msgs []map[string]any) bool { return len(msgs) >= 2 })
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runner exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("runner still running 30 s after SIGTERM")
	}
	checkStream(t, s.waitFor(hasFinished), "1-sleep", "J")
}

// testStarted is no earlier than this test process's start, so a wait
// measured from it is a lower bound of the process's age.
var testStarted = time.Now()

// A SIGTERM that comes once Avocado's time budget is spent is reported as
// the timeout Avocado would name, not as a bare signal: the runner reads
// job.run.timeout and task.timeout.running and its parent's age.
func TestRunnerBinary_sigtermAtTimeoutSaysWhichTimeout(t *testing.T) {
	for _, tc := range []struct {
		name, config, want string
	}{
		{"job", `{"job.run.timeout": 1}`, "Test interrupted: Timeout reached (the job timeout of 1 s, --job-timeout)"},
		{"task", `{"task.timeout.running": 1}`, "Test interrupted: Timeout reached (the task timeout of 1 s)"},
		{"before-the-job-timeout", `{"job.run.timeout": 3600, "task.timeout.running": 3600}`, "Test interrupted: runner received SIGTERM"},
		{"unreadable-limit", `{"job.run.timeout": "soon"}`, "Test interrupted: runner received SIGTERM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newUnixStatusServer(t)
			cmd := exec.Command(runnerBinary(t), "task-run", "-i", "1-sleep", "-j", "J", "-u", localSpec, "test=sleep",
				"output_dir="+t.TempDir(), "-s", s.URI, "-c", tc.config)
			cmd.Dir = ".."
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			s.waitFor(func(msgs []map[string]any) bool { return strings.Contains(outputOf(msgs, "stdout"), "sleeping\n") })
			// Past both 1 s budgets: the runner's own and its parent's.
			time.Sleep(max(time.Until(start.Add(time.Second)), time.Until(testStarted.Add(time.Second)), 0) + 100*time.Millisecond)
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("runner exit: %v", err)
			}
			fin := finishedOf(s.waitFor(hasFinished))
			if fin["result"] != "interrupted" || fin["fail_reason"] != tc.want {
				t.Errorf("finished = %v, want fail_reason %q", fin, tc.want)
			}
		})
	}
}
