package bridge

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent/logframe"
	"github.com/vtcluster/vtcluster/cluster/lab"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// setLink takes a lab host's link to the bridge down or up from the root
// namespace, as a pulled cable would: the host keeps running.
func setLink(tb testing.TB, h lab.Host, up bool) {
	tb.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command("ip", "link", "set", h.Veth, state).CombinedOutput(); err != nil {
		tb.Fatalf("ip link set %s %s: %v\n%s", h.Veth, state, err, out)
	}
}

// A job's post hook with one node's link down ends in seconds, names the
// node once, and still fetches the logs of and stops the other agents.
func TestCLI_hooksPostTests_lostNodeDoesNotHoldTheJob(t *testing.T) {
	c := newCLICluster(t, 2, nil)
	live, lost := c.lab.Hosts[0], c.lab.Hosts[1]
	c.bootstrap(t)
	logdir := t.TempDir()
	c.mustCLI(t, "hooks", "pre-tests", "--job-id", "job1", "--job-logdir", logdir)
	t.Cleanup(func() {
		setLink(t, lost, true)
		c.cli(t, "agents", "stop")
	})
	setLink(t, lost, false)

	start := time.Now()
	code, _, errOut := c.cli(t, "hooks", "post-tests", "--job-id", "job1", "--job-logdir", logdir)
	took := time.Since(start)
	t.Logf("post-tests with %s down took %s", lost.Name, took)
	if code != 1 {
		t.Errorf("post-tests exit %d, want 1 (a node was not cleaned up); stderr:\n%s", code, errOut)
	}
	// The job must end within 20 s of its last test; the hook is most of
	// what runs after it.
	if took > 10*time.Second {
		t.Errorf("post-tests took %s with %s's link down; stderr:\n%s", took, lost.Name, errOut)
	}
	if n := strings.Count(errOut, `"`+lost.Name+`"`) + strings.Count(errOut, " "+lost.Name+":"); n != 1 {
		t.Errorf("the lost node is named %d times, want once; stderr:\n%s", n, errOut)
	}
	if !strings.Contains(errOut, "unreachable") {
		t.Errorf("stderr does not say the node is unreachable:\n%s", errOut)
	}
	if _, err := os.Stat(filepath.Join(logdir, "cluster", live.Name, "agent.log")); err != nil {
		t.Errorf("the live node's agent log was not fetched: %v", err)
	}
	if pids := agentPIDs(t, live); len(pids) != 0 {
		t.Errorf("the live node's agent still runs: %v", pids)
	}
	if pids := agentPIDs(t, lost); len(pids) != 1 {
		t.Errorf("the lost node's agent: %v, want it left alone (unreachable)", pids)
	}
}

// agents cleanup stops the agent and removes its directory, refuses while
// a live partition holds the node, and node remove --cleanup does both.
func TestCLI_agentsCleanup_andNodeRemoveCleanup(t *testing.T) {
	c := newCLICluster(t, 2, nil)
	h1, h2 := c.lab.Hosts[0], c.lab.Hosts[1]
	c.bootstrap(t)
	c.startAgents(t)
	agentDir := func(h lab.Host) string {
		out := c.mustCLI(t, "node", "list", "--json")
		for _, n := range jsonOut(t, out).Array() {
			if n.Get("name").String() == h.Name {
				return filepath.Join(n.Get("agent_base_dir").String(), h.Name)
			}
		}
		t.Fatalf("node %s not listed", h.Name)
		return ""
	}
	dirExists := func(h lab.Host, dir string) bool {
		// Lab hosts share the controller's file system; only the
		// network is theirs.
		_, err := os.Stat(dir)
		return err == nil
	}
	d1 := agentDir(h1)
	if !dirExists(h1, d1) {
		t.Fatalf("agent dir %s not deployed", d1)
	}

	// Held by a live partition (this test process owns it): refused,
	// nothing touched.
	owner, id := startOwner(t, c.stateDir, "--tag", "a", "--selectors",
		fmt.Sprintf("[{'key': 'hostname', 'operator': '==', 'values': '%s'}]", h1.Hostname))
	code, _, errOut := c.cli(t, "agents", "cleanup", h1.Name)
	if code != 1 || !strings.Contains(errOut, "is held by partition "+id) {
		t.Errorf("cleanup of a held node: exit %d, stderr:\n%s", code, errOut)
	}
	if len(agentPIDs(t, h1)) != 1 || !dirExists(h1, d1) {
		t.Error("a refused cleanup touched the node")
	}
	killOwner(t, owner)

	out := c.mustCLI(t, "agents", "cleanup", "--json", h1.Name)
	res := jsonOut(t, out)
	if !res.Get("0.ok").Bool() || res.Get("0.node").String() != h1.Name {
		t.Errorf("cleanup --json: %s", out)
	}
	if pids := agentPIDs(t, h1); len(pids) != 0 {
		t.Errorf("agent still runs after cleanup: %v", pids)
	}
	if dirExists(h1, d1) {
		t.Errorf("%s still exists after cleanup", d1)
	}
	// Cleaning up a node already clean is not an error.
	c.mustCLI(t, "agents", "cleanup", h1.Name)

	d2 := agentDir(h2)
	c.mustCLI(t, "node", "remove", "--cleanup", h2.Name)
	if pids := agentPIDs(t, h2); len(pids) != 0 || dirExists(h2, d2) {
		t.Errorf("node remove --cleanup left agent %v / dir exists %v", pids, dirExists(h2, d2))
	}
	if out := c.mustCLI(t, "node", "list", "--json"); strings.Contains(out, `"`+h2.Name+`"`) {
		t.Errorf("node still registered:\n%s", out)
	}
}

// startLogServe runs "vtcluster logs serve" as its own process, as a user
// would in another terminal, and returns its address and output.
func startLogServe(t *testing.T, stateDir, listenHost string, args ...string) (host, port string, stdout *testutil.SyncBuffer, stop func() string) {
	t.Helper()
	srv := exec.Command(vtclusterBinary(t), append([]string{"--state-dir", stateDir, "logs", "serve", "--listen", net.JoinHostPort(listenHost, "0")}, args...)...)
	stdout = &testutil.SyncBuffer{}
	srv.Stdout = stdout
	stderr, err := srv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var errLines testutil.SyncBuffer
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(&errLines, sc.Text())
			if a, ok := strings.CutPrefix(sc.Text(), "vtcluster: log server listening on "); ok {
				addrc <- a
			}
		}
		srv.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		srv.Process.Kill()
		<-exited
	})
	select {
	case a := <-addrc:
		if host, port, err = net.SplitHostPort(a); err != nil {
			t.Fatal(err)
		}
	case <-exited:
		t.Fatalf("logs serve exited:\n%s", errLines.String())
	case <-time.After(hangGuard):
		t.Fatalf("logs serve printed no address:\n%s", errLines.String())
	}
	stop = func() string {
		srv.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(hangGuard):
			t.Fatal("logs serve ignored SIGINT")
		}
		if code := srv.ProcessState.ExitCode(); code != 0 {
			t.Errorf("logs serve exit %d:\n%s", code, errLines.String())
		}
		return errLines.String()
	}
	return host, port, stdout, stop
}

// avocado-vt's vt_cluster usage example, step by step, with the CLI: start
// a log server; register two nodes; create a partition with both; for each
// node set up the agent environment, start the agent, start log
// redirection, call is_alive and examples.hello.ping, stop redirection,
// stop the agent and clean up its environment; then stop the log server,
// remove the partition and unregister the nodes.
func TestCLI_seedExample_everyStep(t *testing.T) {
	c := newCLICluster(t, 2, nil)
	logDir := t.TempDir()
	host, port, out, stopServer := startLogServe(t, c.stateDir, c.lab.Gateway, "--dir", logDir)

	// Registered after the log server started.
	for _, h := range c.lab.Hosts {
		c.mustCLI(t, "node", "add", h.Name, "--address", h.Address, "--port", strconv.Itoa(h.Port),
			"--key-file", c.lab.ClientKey, "--known-hosts", c.lab.KnownHosts,
			"--agent-base-dir", filepath.Join(c.lab.Dir, "agents"))
	}
	id := strings.TrimSpace(c.mustCLI(t, "partition", "create", "--tag", "first", "--tag", "second"))
	t.Cleanup(func() { c.cli(t, "partition", "release", id) })

	for _, h := range c.lab.Hosts {
		c.mustCLI(t, "agents", "deploy", "--agent-binary", vtclusterBinary(t), h.Name)
		agentDir := filepath.Join(c.lab.Dir, "agents", h.Name)
		if _, err := os.Stat(filepath.Join(agentDir, "vtcluster")); err != nil {
			t.Fatalf("setup_agent_env: %v", err)
		}
		c.mustCLI(t, "agents", "start", h.Name)
		t.Cleanup(func() { c.cli(t, "agents", "stop", h.Name) })
		c.mustCLI(t, "call", h.Name, "core.start_log_redirection", strconv.Quote(host), port)
		if got := strings.TrimSpace(c.mustCLI(t, "call", h.Name, "core.is_alive")); got != "true" {
			t.Errorf("%s: is_alive = %q", h.Name, got)
		}
		if got := strings.TrimSpace(c.mustCLI(t, "call", h.Name, "examples.hello.ping")); got != strconv.Quote("Pong from "+h.Hostname) {
			t.Errorf("%s: ping = %q", h.Name, got)
		}
		// The ping's log record, tagged with the node's name.
		line := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} logserver L\d{4} INFO \| ` + regexp.QuoteMeta(h.Name+"("+h.Address+")") +
			` \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \S+ INFO \| ` + regexp.QuoteMeta(h.Hostname+": Executing ping") + `$`)
		waitFor(t, h.Name+"'s ping record in the log server's output", func() bool { return line.MatchString(out.String()) })
		c.mustCLI(t, "call", h.Name, "core.stop_log_redirection")
		c.mustCLI(t, "agents", "stop", h.Name)
		if pids := agentPIDs(t, h); len(pids) != 0 {
			t.Errorf("%s: agent still runs: %v", h.Name, pids)
		}
		// cleanup_agent_env, inside the caller's own partition.
		c.mustCLI(t, "agents", "cleanup", h.Name)
		if _, err := os.Stat(agentDir); !os.IsNotExist(err) {
			t.Errorf("%s: agent dir after cleanup: %v", h.Name, err)
		}
	}
	if strings.Contains(out.String(), "Unknown(") {
		t.Errorf("records from an unnamed node:\n%s", out.String())
	}
	if errOut := stopServer(); !strings.Contains(errOut, "log server stopped") {
		t.Errorf("logs serve: %s", errOut)
	}
	c.mustCLI(t, "partition", "release", id)
	c.mustCLI(t, "node", "remove", c.lab.Hosts[0].Name, c.lab.Hosts[1].Name)
	if out := c.mustCLI(t, "node", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("nodes left: %s", out)
	}
	for _, h := range c.lab.Hosts {
		if b, err := os.ReadFile(filepath.Join(logDir, h.Name+".log")); err != nil || !strings.Contains(string(b), h.Hostname+": Executing ping") {
			t.Errorf("%s's log file: %v\n%s", h.Name, err, b)
		}
	}
}

// --worker-only prints the LoggerServer message alone, as upstream does.
func TestCLI_logsServe_workerOnly(t *testing.T) {
	host, port, out, stop := startLogServe(t, t.TempDir(), "127.0.0.1", "--worker-only", "--node", "127.0.0.1=n1")
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), hangGuard)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rec := &logframe.LogRecord{Name: "avocado.service.x", Levelno: 40, Levelname: "ERROR", Asctime: "2026-12-01 10:00:00,001", Msg: "boom"}
	if err := logframe.EncodeFrame(conn, rec); err != nil {
		t.Fatal(err)
	}
	want := "n1(127.0.0.1) 2026-12-01 10:00:00,001 avocado.service.x ERROR | boom\n"
	waitFor(t, "the record", func() bool { return out.String() != "" })
	conn.Close()
	stop()
	if got := out.String(); got != want {
		t.Errorf("logs serve --worker-only printed %q, want %q", got, want)
	}
}
