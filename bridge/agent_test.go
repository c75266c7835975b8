package bridge

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kolo/xmlrpc"
	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/internal/testbin"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// hangGuard bounds waits that only run out when a test fails; no test
// asserts on how fast something happens.
const hangGuard = 60 * time.Second

// vtclusterBinary returns the vtcluster binary, built at most once per go
// test run.
func vtclusterBinary(tb testing.TB) string {
	tb.Helper()
	return testbin.Path(tb)
}

func freeTCPPort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// runVtcluster runs the binary to completion and returns its exit code.
func runVtcluster(tb testing.TB, env []string, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	cmd := exec.Command(vtclusterBinary(tb), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	timer := time.AfterFunc(hangGuard, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		tb.Fatalf("running vtcluster %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

// agentProc is a running "vtcluster agent".
type agentProc struct {
	cmd     *exec.Cmd
	pid     int
	port    int
	pidFile string
	dataDir string
	url     string
	token   string // sent by kolo when no user info is given
	stdout  *testutil.SyncBuffer
	stderr  *testutil.SyncBuffer
	exited  chan struct{}
	state   *os.ProcessState
}

// testAgentToken is the token of test agents that are given none: TCP
// needs one, loopback included.
const testAgentToken = "bridge-test-token-0123456789"

type agentSpec struct {
	socket  string // --unix-socket instead of --host/--port
	host    string
	port    int
	pidFile string
	dataDir string
	extra   []string
	env     []string
}

// startAgent starts an agent and waits for its banner. It stops the agent
// (SIGKILL if need be) when the test ends.
func startAgent(tb testing.TB, spec agentSpec) *agentProc {
	tb.Helper()
	a, banner := launchAgent(tb, spec)
	if !banner {
		tb.Fatalf("agent exited before its banner (%v)\nstdout:\n%s\nstderr:\n%s", a.state, a.stdout, a.stderr)
	}
	return a
}

// launchAgent starts an agent and returns once it printed its banner
// (true) or exited (false).
func launchAgent(tb testing.TB, spec agentSpec) (*agentProc, bool) {
	tb.Helper()
	dir := tb.TempDir()
	if spec.host == "" {
		spec.host = "127.0.0.1"
	}
	if spec.port == 0 {
		spec.port = freeTCPPort(tb)
	}
	if spec.pidFile == "" {
		spec.pidFile = filepath.Join(dir, "agent.pid")
	}
	if spec.dataDir == "" {
		spec.dataDir = filepath.Join(dir, "data")
	}
	args := []string{"agent", "--pid-file", spec.pidFile, "--data-dir", spec.dataDir}
	if spec.socket != "" {
		args = append(args, "--unix-socket", spec.socket)
	} else {
		args = append(args, "--host", spec.host, "--port", strconv.Itoa(spec.port))
	}
	args = append(args, spec.extra...)
	cmd := exec.Command(vtclusterBinary(tb), args...)
	cmd.Env = append(os.Environ(), spec.env...)
	token := ""
	if spec.socket == "" && !slices.Contains(spec.extra, "--token-file") && !slices.ContainsFunc(spec.env, func(v string) bool {
		return strings.HasPrefix(v, "VTCLUSTER_AGENT_TOKEN=")
	}) {
		token = testAgentToken
		cmd.Env = append(cmd.Env, "VTCLUSTER_AGENT_TOKEN="+token)
	}
	a := &agentProc{
		token: token,
		cmd:   cmd, port: spec.port, pidFile: spec.pidFile, dataDir: spec.dataDir,
		url:    fmt.Sprintf("http://127.0.0.1:%d/", spec.port),
		stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, exited: make(chan struct{}),
	}
	cmd.Stderr = a.stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	a.pid = cmd.Process.Pid
	bannerSeen := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pipe)
		once := sync.Once{}
		for sc.Scan() {
			fmt.Fprintln(a.stdout, sc.Text())
			if strings.HasPrefix(sc.Text(), "Agent daemon starting with PID ") {
				once.Do(func() { close(bannerSeen) })
			}
		}
		cmd.Wait()
		a.state = cmd.ProcessState
		close(a.exited)
	}()
	tb.Cleanup(func() {
		select {
		case <-a.exited:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(hangGuard):
			cmd.Process.Kill()
			<-a.exited
		}
	})
	select {
	case <-bannerSeen:
		return a, true
	case <-a.exited:
		return a, false
	case <-time.After(hangGuard):
		tb.Fatalf("agent printed no banner\nstdout:\n%s\nstderr:\n%s", a.stdout, a.stderr)
	}
	return a, false
}

// wait waits for the agent to exit and returns its exit code.
func (a *agentProc) wait(tb testing.TB) int {
	tb.Helper()
	select {
	case <-a.exited:
	case <-time.After(hangGuard):
		tb.Fatalf("agent %d did not exit\nstderr:\n%s", a.pid, a.stderr)
	}
	return a.state.ExitCode()
}

func (a *agentProc) kolo(tb testing.TB, userinfo string) *xmlrpc.Client {
	tb.Helper()
	url := a.url
	if userinfo == "" && a.token != "" {
		userinfo = "vtc:" + a.token
	}
	if userinfo != "" {
		url = strings.Replace(url, "http://", "http://"+userinfo+"@", 1)
	}
	c, err := xmlrpc.NewClient(url, &http.Transport{ResponseHeaderTimeout: hangGuard})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func TestAgentCommand_version(t *testing.T) {
	code, out, _ := runVtcluster(t, nil, "agent", "--version")
	if code != 0 || !strings.HasPrefix(out, "Avocado VT Agent v0.1.0") || strings.Count(out, "\n") != 1 {
		t.Fatalf("agent --version: exit %d, %q", code, out)
	}
}

// TestAgentCommand_usageErrors: every invalid invocation exits 2 (argparse's
// status) with a message saying what is wrong, before anything starts.
func TestAgentCommand_usageErrors(t *testing.T) {
	dir := t.TempDir()
	pid := filepath.Join(dir, "p.pid")
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("tok\n"), 0o600)
	openToken := filepath.Join(dir, "open-token")
	os.WriteFile(openToken, []byte("a-long-enough-token-but-world-readable\n"), 0o644)
	os.Chmod(openToken, 0o644)
	emptyToken := filepath.Join(dir, "empty")
	os.WriteFile(emptyToken, []byte("\n"), 0o600)
	roDir := filepath.Join(dir, "ro")
	os.Mkdir(roDir, 0o555)

	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{}, nil, "required: --pid-file"},
		{[]string{"--pid-file", pid, "--port", "0"}, nil, "Port must be between 1 and 65535, got: 0"},
		{[]string{"--pid-file", pid, "--port", "65536"}, nil, "Port must be between 1 and 65535"},
		{[]string{"--pid-file", pid, "--port", "nine"}, nil, "Port must be a number, got: nine"},
		{[]string{"--pid-file", pid, "--host", "bad_host"}, nil, "Invalid host address: bad_host"},
		{[]string{"--pid-file", pid, "--host", strings.Repeat("a.", 127) + "ab"}, nil, "Invalid host address"},
		{[]string{"--pid-file", pid, "--host", ""}, nil, "Host cannot be empty"},
		{[]string{"--pid-file", filepath.Join(dir, "nope", "p.pid")}, nil, "PID file directory does not exist"},
		{[]string{"--pid-file", filepath.Join(roDir, "p.pid")}, nil, "not writable"},
		{[]string{"--pid-file", pid, "extra"}, nil, "unrecognized arguments: extra"},
		{[]string{"--pid-file", pid, "--no-such-flag"}, nil, "no-such-flag"},
		{[]string{"--pid-file", pid, "--host", "0.0.0.0"}, nil, "--token-file"},
		{[]string{"--pid-file", pid, "--host", "192.0.2.1"}, nil, "without a token"},
		{[]string{"--pid-file", pid}, nil, "or listen with --unix-socket PATH"},
		{[]string{"--pid-file", pid, "--host", "localhost"}, nil, "without a token"},
		{[]string{"--pid-file", pid, "--token-file", tokenFile}, nil, "at least 16 are required"},
		{[]string{"--pid-file", pid}, []string{"VTCLUSTER_AGENT_TOKEN=short"}, "at least 16 are required"},
		{[]string{"--pid-file", pid, "--token-file", openToken}, nil, "accessible by other users (mode 0644)"},
		{[]string{"--pid-file", pid, "--unix-socket", filepath.Join(dir, "s"), "--port", "9998"}, nil, "replaces --host and --port"},
		{[]string{"--pid-file", pid, "--unix-socket", "/" + strings.Repeat("d", 120)}, nil, "at most 107 fit"},
		{[]string{"--pid-file", pid, "--unix-socket", filepath.Join(dir, "s"), "--allow-host", "node1"}, nil, "--allow-host applies to TCP only"},
		{[]string{"--pid-file", pid, "--allow-host", "bad_name"}, []string{"VTCLUSTER_AGENT_TOKEN=" + testAgentToken}, "Invalid host name: bad_name"},
		{[]string{"--pid-file", pid, "--token-file", emptyToken}, nil, "is empty"},
		{[]string{"--pid-file", pid, "--token-file", filepath.Join(dir, "missing")}, nil, "cannot read the token"},
		{[]string{"--pid-file", pid, "--token-file", tokenFile}, []string{"VTCLUSTER_AGENT_TOKEN=x"}, "give the token one way"},
	} {
		if os.Geteuid() == 0 && strings.Contains(c.want, "not writable") {
			continue // root writes anywhere
		}
		code, _, stderr := runVtcluster(t, c.env, append([]string{"agent"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("agent %q: exit %d, stderr %q; want exit 2 mentioning %q", c.args, code, stderr, c.want)
		}
	}
	if _, err := os.Stat(pid); err == nil {
		t.Error("a failed invocation wrote the pid file")
	}
}

func TestAgentCommand_warnings(t *testing.T) {
	dir := t.TempDir()
	pid := filepath.Join(dir, "p.pid")
	os.WriteFile(pid, []byte("1\n"), 0o644)
	a := startAgent(t, agentSpec{pidFile: pid, env: []string{"VTCLUSTER_AGENT_TOKEN=" + testAgentToken}, host: "0.0.0.0"})
	for _, want := range []string{
		"Warning: PID file already exists and will be overwritten: " + pid,
		"Warning: Binding to 0.0.0.0 exposes the agent to external networks",
	} {
		if !strings.Contains(a.stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, a.stderr)
		}
	}
}

// TestAgent_koloClient drives a real agent with kolo/xmlrpc, a client
// that shares no code with ours.
func TestAgent_koloClient(t *testing.T) {
	a := startAgent(t, agentSpec{})
	c := a.kolo(t, "")
	host, _ := os.Hostname()

	var pong string
	if err := c.Call("examples.hello.ping", nil, &pong); err != nil || pong != "Pong from "+host {
		t.Fatalf("ping = %q, %v", pong, err)
	}
	var alive bool
	if err := c.Call("core.is_alive", nil, &alive); err != nil || !alive {
		t.Fatalf("core.is_alive = %v, %v", alive, err)
	}
	if err := c.Call("agent.services.core.is_alive", nil, &alive); err != nil || !alive {
		t.Fatalf("agent.services.core.is_alive = %v, %v", alive, err)
	}
	// kolo maps <nil/> to an untouched value, so look at the wire too.
	var none any
	if err := c.Call("core.get_job_data_log", []any{"no-such-job"}, &none); err != nil || none != nil {
		t.Fatalf("core.get_job_data_log = %#v, %v; want nil", none, err)
	}
	body := `<?xml version="1.0"?><methodCall><methodName>core.get_job_data_log</methodName>` +
		`<params><param><value><string>no-such-job</string></value></param></params></methodCall>`
	req, _ := http.NewRequest(http.MethodPost, a.url, strings.NewReader(body))
	req.SetBasicAuth("vtc", a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(raw), "<value><nil/></value>") {
		t.Fatalf("None is not sent as <nil/>:\n%s", raw)
	}
	var mem int64
	if err := c.Call("host.memory.get_mem_total", nil, &mem); err != nil || mem <= 0 {
		t.Fatalf("host.memory.get_mem_total = %d, %v", mem, err)
	}
	// A value above int32 travels as <i8>, which kolo and Python both read.
	var big any
	if err := c.Call("core.save_job_data", []any{"j1", map[string]any{"size": int64(5) << 32}}, &alive); err != nil || !alive {
		t.Fatalf("save_job_data = %v, %v", alive, err)
	}
	if err := c.Call("core.load_job_data", []any{"j1"}, &big); err != nil {
		t.Fatal(err)
	}
	if m, ok := big.(map[string]any); !ok || m["size"] != int64(5)<<32 {
		t.Fatalf("load_job_data = %#v, want size 5<<32", big)
	}
	err = c.Call("nope.method", nil, &big)
	if err == nil || !strings.Contains(err.Error(), `method \"nope.method\" is not supported`) || !strings.Contains(err.Error(), `"exc_type": "Exception"`) {
		t.Fatalf("unknown method error = %v", err)
	}
	if !strings.Contains(a.stderr.String(), "agent: serving") {
		t.Errorf("agent logged nothing on stderr:\n%s", a.stderr)
	}
	if data, err := os.ReadFile(filepath.Join(a.dataDir, "log", "agent.log")); err != nil || !strings.Contains(string(data), "method=core.is_alive") {
		t.Errorf("agent.log lacks the calls (%v):\n%s", err, data)
	}
}

// TestAgent_pidFileLifecycle: the pid file holds "<pid>\n" while the agent
// runs and is gone after SIGTERM, SIGINT and core.quit, each exiting 0.
func TestAgent_pidFileLifecycle(t *testing.T) {
	for _, stop := range []string{"SIGTERM", "SIGINT", "core.quit"} {
		t.Run(stop, func(t *testing.T) {
			a := startAgent(t, agentSpec{})
			data, err := os.ReadFile(a.pidFile)
			if err != nil || string(data) != fmt.Sprintf("%d\n", a.pid) {
				t.Fatalf("pid file = %q, %v; want %d", data, err, a.pid)
			}
			if !strings.Contains(a.stdout.String(), fmt.Sprintf("Agent daemon starting with PID %d\n", a.pid)) {
				t.Fatalf("banner missing from stdout: %q", a.stdout)
			}
			switch stop {
			case "SIGTERM":
				a.cmd.Process.Signal(syscall.SIGTERM)
			case "SIGINT":
				a.cmd.Process.Signal(syscall.SIGINT)
			case "core.quit":
				var reply any
				if err := a.kolo(t, "").Call("core.quit", nil, &reply); err != nil || reply != nil {
					t.Fatalf("core.quit = %v, %v; want None", reply, err)
				}
			}
			if code := a.wait(t); code != 0 {
				t.Fatalf("exit %d after %s, want 0\nstderr:\n%s", code, stop, a.stderr)
			}
			if _, err := os.Stat(a.pidFile); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("pid file still there after %s: %v", stop, err)
			}
		})
	}
}

// TestAgent_secondAgentCannotBind: upstream's second agent deleted the
// first one's pid file on its way out; ours leaves it alone.
func TestAgent_secondAgentCannotBind(t *testing.T) {
	first := startAgent(t, agentSpec{})
	second, banner := launchAgent(t, agentSpec{port: first.port, pidFile: first.pidFile})
	if banner {
		t.Fatal("second agent on the same port started")
	}
	if code := second.wait(t); code != 1 {
		t.Errorf("second agent exit %d, want 1", code)
	}
	if !strings.Contains(second.stderr.String(), "address already in use") {
		t.Errorf("second agent's stderr does not say why:\n%s", second.stderr)
	}
	if data, err := os.ReadFile(first.pidFile); err != nil || string(data) != fmt.Sprintf("%d\n", first.pid) {
		t.Fatalf("first agent's pid file = %q, %v; want %d", data, err, first.pid)
	}
	var alive bool
	if err := first.kolo(t, "").Call("core.is_alive", nil, &alive); err != nil || !alive {
		t.Fatalf("first agent no longer answers: %v", err)
	}
}

func TestAgent_pidFileTakenOverIsLeft(t *testing.T) {
	a := startAgent(t, agentSpec{})
	// Someone else (a newer agent) owns the file now.
	os.WriteFile(a.pidFile, []byte("999999\n"), 0o644)
	a.cmd.Process.Signal(syscall.SIGTERM)
	if code := a.wait(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if data, _ := os.ReadFile(a.pidFile); string(data) != "999999\n" {
		t.Fatalf("pid file of another process changed to %q", data)
	}
}

// TestAgent_token: off loopback the agent demands its token as the Basic
// auth password; any user name will do.
func TestAgent_token(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret-of-16-bytes-or-more\n"), 0o600)
	a := startAgent(t, agentSpec{host: "0.0.0.0", extra: []string{"--token-file", tokenFile}})
	var pong string
	err := a.kolo(t, "").Call("examples.hello.ping", nil, &pong)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("call without token: %v, want HTTP 401", err)
	}
	if err := a.kolo(t, "vtc:wrong").Call("examples.hello.ping", nil, &pong); err == nil {
		t.Fatal("call with a wrong token succeeded")
	}
	if err := a.kolo(t, "vtc:s3cret-of-16-bytes-or-more").Call("examples.hello.ping", nil, &pong); err != nil || !strings.HasPrefix(pong, "Pong from ") {
		t.Fatalf("call with the token: %q, %v", pong, err)
	}

	b := startAgent(t, agentSpec{extra: nil, env: []string{"VTCLUSTER_AGENT_TOKEN=from-env-0123456789"}})
	if err := b.kolo(t, "").Call("examples.hello.ping", nil, &pong); err == nil {
		t.Fatal("token from the environment not enforced")
	}
	if err := b.kolo(t, "x:from-env-0123456789").Call("examples.hello.ping", nil, &pong); err != nil {
		t.Fatalf("token from the environment refused: %v", err)
	}
	// The token does not leak into the commands the agent runs.
	var res map[string]any
	if err := b.kolo(t, "x:from-env-0123456789").Call("process.run", []any{[]any{"sh", "-c", "env"}, map[string]any{}}, &res); err != nil {
		t.Fatal(err)
	}
	if out, _ := res["stdout"].(string); strings.Contains(out, "from-env-0123456789") {
		t.Fatalf("a command sees the token:\n%s", out)
	}
}

// TestAgent_secondSignalExitsAtOnce: a call that would hold the graceful
// shutdown is cut short by a second SIGTERM, and the pid file still goes.
func TestAgent_secondSignalExitsAtOnce(t *testing.T) {
	a := startAgent(t, agentSpec{})
	marker := filepath.Join(t.TempDir(), "running")
	callDone := make(chan error, 1)
	go func() {
		var res any
		callDone <- a.kolo(t, "").Call("process.run", []any{[]any{"sh", "-c", "touch " + marker + "; exec sleep 300"}, map[string]any{}}, &res)
	}()
	deadline := time.Now().Add(hangGuard)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the long call never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	// Signals sent back to back can merge into one: send the second once
	// the agent has taken the first.
	for !strings.Contains(a.stderr.String(), "shutting down gracefully") {
		if time.Now().After(deadline) {
			t.Fatalf("agent did not react to SIGTERM:\n%s", a.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	if code := a.wait(t); code != 1 {
		t.Fatalf("exit %d after two signals, want 1\nstderr:\n%s", code, a.stderr)
	}
	if _, err := os.Stat(a.pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid file left after a forced exit: %v", err)
	}
	<-callDone
}

// TestAgent_detach: --detach returns once the agent serves; the agent runs
// in its own session and outlives the command that started it.
func TestAgent_detach(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "agent.pid")
	dataDir := filepath.Join(dir, "data")
	port := freeTCPPort(t)
	tokenEnv := []string{"VTCLUSTER_AGENT_TOKEN=" + testAgentToken}
	code, out, stderr := runVtcluster(t, tokenEnv, "agent", "--detach", "--port", strconv.Itoa(port), "--pid-file", pidFile, "--data-dir", dataDir)
	if code != 0 {
		t.Fatalf("agent --detach: exit %d\n%s", code, stderr)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	t.Cleanup(func() { unix.Kill(pid, unix.SIGKILL) })
	if out != fmt.Sprintf("Agent daemon starting with PID %d\n", pid) {
		t.Fatalf("detach printed %q, want the daemon's banner (pid %d)", out, pid)
	}
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("daemon session = %d, %v; want its own (%d)", sid, err, pid)
	}
	c, err := xmlrpc.NewClient(fmt.Sprintf("http://vtc:%s@127.0.0.1:%d/", testAgentToken, port), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var alive bool
	if err := c.Call("core.is_alive", nil, &alive); err != nil || !alive {
		t.Fatalf("detached agent: %v, %v", alive, err)
	}

	// A second detached start fails with the child's status and reason:
	// the data dir's process record names the running agent.
	code, _, stderr = runVtcluster(t, tokenEnv, "agent", "--detach", "--port", strconv.Itoa(port), "--pid-file", pidFile, "--data-dir", dataDir)
	if code != 1 || !strings.Contains(stderr, fmt.Sprintf("another agent (pid %d) runs with this data dir", pid)) {
		t.Errorf("second --detach: exit %d, stderr %q", code, stderr)
	}

	var none any
	if err := c.Call("core.quit", nil, &none); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hangGuard)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatal("detached agent did not exit after core.quit")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left after quit: %v", err)
	}
	if logs, _ := os.ReadFile(filepath.Join(dataDir, "log", "agent.out")); !strings.Contains(string(logs), "agent: serving") {
		t.Errorf("agent.out lacks the daemon's log:\n%s", logs)
	}
}

func TestAgent_defaultDataDirBesideExecutable(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "agent.pid")
	port := freeTCPPort(t)
	// A private copy: the shared binary's directory (bin/, or the test
	// build cache) must not collect a data dir.
	data, err := os.ReadFile(vtclusterBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "vtcluster")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "agent", "--port", strconv.Itoa(port), "--pid-file", pidFile)
	cmd.Env = append(os.Environ(), "VTCLUSTER_AGENT_TOKEN="+testAgentToken)
	pipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	line, _ := bufio.NewReader(pipe).ReadString('\n')
	if !strings.HasPrefix(line, "Agent daemon starting with PID") {
		t.Fatalf("no banner: %q", line)
	}
	want := filepath.Join(filepath.Dir(bin), "data", "log", "agent.log")
	if _, err := os.Stat(want); err != nil {
		t.Fatalf("default data dir not beside the executable: %v", err)
	}
}

// processGone reports whether pid has exited: it no longer exists, or it
// is a zombie waiting for an init that reaps lazily (a detached agent's
// parent has exited, so nothing here can reap it).
func processGone(pid int) bool {
	if unix.Kill(pid, 0) != nil {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// TestAgent_sigtermKeepsEveryCallsLogLine: the agent writes its logs
// behind the calls (a group commit); stopped by SIGTERM while several
// clients are calling it, it has still written, each whole, the Debug
// record in agent.log and ping's line in service.log of every call it
// answered, and its own last line.
func TestAgent_sigtermKeepsEveryCallsLogLine(t *testing.T) {
	a := startAgent(t, agentSpec{})
	const clients, before = 4, 2000
	var answered atomic.Int64
	signalled := make(chan struct{})
	var wg sync.WaitGroup
	for range clients {
		c := a.kolo(t, "")
		wg.Go(func() {
			for {
				var pong string
				if err := c.Call("examples.hello.ping", nil, &pong); err != nil {
					select {
					case <-signalled: // the agent is going away
					default:
						t.Errorf("ping before SIGTERM: %v", err)
					}
					return
				}
				if !strings.HasPrefix(pong, "Pong from ") {
					t.Errorf("ping = %q", pong)
					return
				}
				if answered.Add(1) == before {
					close(signalled)
					if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if code := a.wait(t); code != 0 {
		t.Fatalf("agent exit code %d on SIGTERM\nstderr:\n%s", code, a.stderr)
	}
	logDir := filepath.Join(a.dataDir, "log")
	agentLog, err := os.ReadFile(filepath.Join(logDir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	serviceLog, err := os.ReadFile(filepath.Join(logDir, "service.log"))
	if err != nil {
		t.Fatal(err)
	}
	callLine := regexp.MustCompile(`(?m)^time=\S+ level=DEBUG msg="agent: call" service=examples\.hello method=examples\.hello\.ping duration_seconds=\S+ outcome=ok$`)
	pingLine := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} avocado\.service\.examples INFO \| \S+: Executing ping$`)
	calls, pings, n := len(callLine.FindAll(agentLog, -1)), len(pingLine.FindAll(serviceLog, -1)), int(answered.Load())
	// A call whose reply the client did not get may still have logged.
	if calls < n || pings < n || calls != pings {
		t.Errorf("%d pings answered; agent.log has %d whole call lines, service.log %d ping lines", n, calls, pings)
	}
	if !bytes.HasSuffix(agentLog, []byte("msg=\"agent: stopped\"\n")) {
		t.Errorf("agent.log does not end with the stop line:\n%s", agentLog[max(0, len(agentLog)-400):])
	}
	t.Logf("%d pings answered, %d logged", n, calls)
}
