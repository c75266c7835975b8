package bridge

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/vtcluster/vtcluster/cluster/lab"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// These tests run the vtcluster CLI against a real cluster: a lab of
// network namespaces, each with its own address, hostname and sshd, and the
// vtcluster binary (internal/testbin) deployed to them as the agent. The
// CLI runs in-process (Main) where that is enough, and as the built binary
// where a separate process is the point.

// cliCluster is a lab plus a cluster config for it and a state dir.
type cliCluster struct {
	lab      *lab.Lab
	config   string
	stateDir string
}

// newCLICluster starts a lab of n hosts; tweak may edit each host's entry
// of the cluster config. Everything is torn down when the test ends (the
// lab's teardown kills every process left in its namespaces).
func newCLICluster(tb testing.TB, n int, tweak func(name string, host map[string]any)) *cliCluster {
	tb.Helper()
	return clusterOn(tb, lab.Start(tb, n), tweak)
}

// clusterOn is newCLICluster for a lab built by the caller.
func clusterOn(tb testing.TB, l *lab.Lab, tweak func(name string, host map[string]any)) *cliCluster {
	tb.Helper()
	data, err := l.ClusterConfig()
	if err != nil {
		tb.Fatal(err)
	}
	var cfg struct {
		Hosts map[string]map[string]any `json:"hosts"`
		Pools map[string]any            `json:"pools"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		tb.Fatal(err)
	}
	if tweak != nil {
		for name, h := range cfg.Hosts {
			tweak(name, h)
		}
	}
	if data, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	c := &cliCluster{lab: l, config: filepath.Join(dir, "cluster.json"), stateDir: filepath.Join(dir, "state")}
	if err := os.WriteFile(c.config, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return c
}

// cli runs vtcluster in this process against the cluster's state.
func (c *cliCluster) cli(tb testing.TB, args ...string) (int, string, string) {
	tb.Helper()
	return runMain(tb, append([]string{"--state-dir", c.stateDir}, args...)...)
}

// bin runs the vtcluster binary as a new process against the cluster's
// state, given by environment variable as the Python shim may.
func (c *cliCluster) bin(tb testing.TB, env []string, args ...string) (int, string, string) {
	tb.Helper()
	return runVtcluster(tb, append([]string{"VTCLUSTER_STATE_DIR=" + c.stateDir}, env...), args...)
}

// startAgents starts every node's agent, stopped again when the test ends.
func (c *cliCluster) startAgents(t *testing.T) {
	t.Helper()
	c.mustCLI(t, "agents", "start")
	t.Cleanup(func() { c.cli(t, "agents", "stop") })
}

// mustCLI runs cli and fails the test unless it exits 0.
func (c *cliCluster) mustCLI(tb testing.TB, args ...string) string {
	tb.Helper()
	code, out, errOut := c.cli(tb, args...)
	if code != 0 {
		tb.Fatalf("vtcluster %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// bootstrap deploys the built binary to every host (in-process, so the
// binary is named with --agent-binary instead of being this test binary).
func (c *cliCluster) bootstrap(tb testing.TB, extra ...string) {
	tb.Helper()
	c.mustCLI(tb, append([]string{"bootstrap", "--vt-cluster-config", c.config, "--agent-binary", vtclusterBinary(tb)}, extra...)...)
}

// agentPIDs lists the vtcluster agents running in a lab host's network
// namespace; lab hosts share the process table, only the namespace tells
// them apart.
func agentPIDs(tb testing.TB, h lab.Host) []int {
	tb.Helper()
	return labPIDs(tb, h, func(p lab.Proc) bool {
		return len(p.Argv) > 1 && filepath.Base(p.Argv[0]) == "vtcluster" && p.Argv[1] == "agent"
	})
}

// netnsProcs lists the processes in a lab host's network namespace whose
// argv is exactly argv.
func netnsProcs(tb testing.TB, h lab.Host, argv ...string) []int {
	tb.Helper()
	return labPIDs(tb, h, func(p lab.Proc) bool { return slices.Equal(p.Argv, argv) })
}

// labPIDs lists the processes of a lab host that match.
func labPIDs(tb testing.TB, h lab.Host, match func(lab.Proc) bool) []int {
	tb.Helper()
	pids, err := h.PIDs(match)
	if err != nil {
		tb.Fatal(err)
	}
	return pids
}

// waitFor polls cond until it holds; hangGuard only ends a failing test.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func jsonOut(tb testing.TB, out string) gjson.Result {
	tb.Helper()
	if !gjson.Valid(out) {
		tb.Fatalf("output is not JSON:\n%s", out)
	}
	return gjson.Parse(out)
}

func TestCLI_bringUpCallExecStop(t *testing.T) {
	c := newCLICluster(t, 3, nil)
	l := c.lab

	// Bootstrap as a user runs it: the binary deploys itself.
	code, out, errOut := c.bin(t, nil, "bootstrap", "--vt-cluster-config", c.config, "--json")
	if code != 0 {
		t.Fatalf("bootstrap: exit %d\n%s\n%s", code, out, errOut)
	}
	for i, r := range jsonOut(t, out).Array() {
		if r.Get("node").Str != l.Hosts[i].Name || !r.Get("ok").Bool() || r.Get("detail").Str != "agent binary uploaded" {
			t.Errorf("bootstrap result %d: %s", i, r.Raw)
		}
	}
	if !strings.Contains(errOut, "deploy: 3 of 3 nodes ok") {
		t.Errorf("bootstrap progress lacks the summary:\n%s", errOut)
	}
	code, out, errOut = c.bin(t, nil, "bootstrap", "--vt-cluster-config", c.config, "--json")
	if code != 0 {
		t.Fatalf("second bootstrap: exit %d\n%s", code, errOut)
	}
	for _, r := range jsonOut(t, out).Array() {
		if r.Get("detail").Str != "agent binary already up to date" {
			t.Errorf("second bootstrap should skip the upload: %s", r.Raw)
		}
	}

	// The state survives the processes that wrote it.
	code, out, errOut = c.bin(t, nil, "node", "list", "--json")
	if code != 0 {
		t.Fatalf("node list: exit %d: %s", code, errOut)
	}
	nodes := jsonOut(t, out).Array()
	if len(nodes) != 3 {
		t.Fatalf("node list: %d nodes, want 3:\n%s", len(nodes), out)
	}
	for i, n := range nodes {
		if n.Get("name").Str != l.Hosts[i].Name || n.Get("address").Str != l.Hosts[i].Address || n.Get("agent_bind").Str != "tunnel" {
			t.Errorf("node list entry %d: %s", i, n.Raw)
		}
	}

	c.mustCLI(t, "agents", "start")
	// Agents started by one process answer the next one.
	code, out, errOut = c.bin(t, nil, "status", "--json")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for i, r := range jsonOut(t, out).Array() {
		h := l.Hosts[i]
		if !r.Get("agent_up").Bool() || r.Get("properties.hostname").Str != h.Hostname ||
			r.Get("properties.cpu_count").Int() < 1 || r.Get("properties.arch").Str == "" {
			t.Errorf("status of %s: %s", h.Name, r.Raw)
		}
	}
	out = c.mustCLI(t, "status")
	if !strings.Contains(out, "HOSTNAME") || !strings.Contains(out, l.Hosts[2].Hostname) {
		t.Errorf("status table:\n%s", out)
	}

	t.Run("tunnelOpensNoPort", func(t *testing.T) {
		for _, h := range l.Hosts {
			addr := net.JoinHostPort(h.Address, "9999")
			if conn, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
				conn.Close()
				t.Errorf("%s accepts connections; a tunnelled agent listens on the node's loopback only", addr)
			}
		}
	})

	t.Run("call", func(t *testing.T) {
		for _, h := range l.Hosts {
			out := c.mustCLI(t, "call", h.Name, "examples.hello.ping")
			if want := strconv.Quote("Pong from " + h.Hostname); strings.TrimSpace(out) != want {
				t.Errorf("ping %s = %s, want %s", h.Name, out, want)
			}
		}
		out := c.mustCLI(t, "call", "node1", "process.run", `["sh", "-c", "printf hi; exit 4"]`, `{"timeout": 10}`)
		r := jsonOut(t, out)
		if r.Get("stdout.__base64__").Str != "aGk=" || r.Get("exit_code").Int() != 4 || r.Get("stderr.__base64__").Str != "" {
			t.Errorf("process.run result:\n%s", out)
		}
		code, _, errOut := c.cli(t, "call", "node1", "no.such.method")
		if code != 1 || strings.TrimSpace(errOut) != `Exception: method "no.such.method" is not supported` {
			t.Errorf("unknown method: exit %d, stderr %q", code, errOut)
		}
		code, _, errOut = c.cli(t, "call", "node1", "process.run", "[sh]")
		if code != 2 || !strings.Contains(errOut, "quote strings as JSON") {
			t.Errorf("non-JSON argument: exit %d, stderr %q", code, errOut)
		}
		code, _, errOut = c.cli(t, "call", "node9", "examples.hello.ping")
		if code != 1 || !strings.Contains(errOut, "node1, node2, node3") {
			t.Errorf("unknown node: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("exec", func(t *testing.T) {
		code, out, errOut := c.cli(t, "exec", "node3", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
		if code != 3 || out != "out\n" || errOut != "err\n" {
			t.Errorf("exec: exit %d, stdout %q, stderr %q; want 3, \"out\\n\", \"err\\n\"", code, out, errOut)
		}
		code, out, _ = c.cli(t, "exec", "node2", "--", "hostname")
		if code != 0 || out != l.Hosts[1].Hostname+"\n" {
			t.Errorf("exec hostname: exit %d, %q", code, out)
		}
		code, _, errOut = c.cli(t, "exec", "--timeout", "1", "node1", "--", "sleep", "60")
		if code != 124 || !strings.Contains(errOut, "timeout") {
			t.Errorf("exec past its timeout: exit %d, stderr %q; want 124", code, errOut)
		}
		code, _, errOut = c.cli(t, "exec", "node1", "--", "sh", "-c", "kill -TERM $$")
		if code != 128+int(syscall.SIGTERM) {
			t.Errorf("exec killed by SIGTERM: exit %d, stderr %q; want %d", code, errOut, 128+int(syscall.SIGTERM))
		}
		// As a shell says it: 127 for no such command, 126 for one that
		// cannot be executed.
		code, _, errOut = c.cli(t, "exec", "node1", "--", "/no/such/program")
		if code != 127 || !strings.Contains(errOut, "/no/such/program") || strings.Contains(errOut, "FileNotFoundError") {
			t.Errorf("exec of a missing program: exit %d, stderr %q; want 127", code, errOut)
		}
		noExec := filepath.Join(t.TempDir(), "not-executable") // lab hosts share this file system
		if err := os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errOut = c.cli(t, "exec", "node1", "--", noExec)
		if code != 126 || !strings.Contains(errOut, noExec) {
			t.Errorf("exec of a file that is not executable: exit %d, stderr %q; want 126", code, errOut)
		}
	})

	t.Run("execInterruptedKillsRemoteCommand", func(t *testing.T) {
		cmd := exec.Command(vtclusterBinary(t), "--state-dir", c.stateDir, "exec", "node1", "--", "sleep", "3017")
		var errb testutil.SyncBuffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-done })
		sleeping := func() bool { return len(netnsProcs(t, l.Hosts[0], "sleep", "3017")) > 0 }
		waitFor(t, "the remote sleep to start", sleeping)
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(hangGuard):
			t.Fatal("exec ignored SIGINT")
		}
		if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(errb.String(), "exec: interrupt signal received") {
			t.Errorf("interrupted exec: exit %d, stderr %q", code, errb.String())
		}
		waitFor(t, "the agent to kill the remote sleep", func() bool { return !sleeping() })
	})

	t.Run("tagsFromPartitionFile", func(t *testing.T) {
		pf := filepath.Join(t.TempDir(), "partition.json")
		data := fmt.Sprintf(`{"id": "0123456789abcdef0123456789abcdef", "nodes": {"src": {"name": "node2", "address": %q, "agent_url": "", "properties": {}}}}`, l.Hosts[1].Address)
		if err := os.WriteFile(pf, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		env := []string{"VTCLUSTER_PARTITION_FILE=" + pf}
		code, out, errOut := c.bin(t, env, "call", "src", "examples.hello.ping")
		if code != 0 || strings.TrimSpace(out) != strconv.Quote("Pong from "+l.Hosts[1].Hostname) {
			t.Errorf("call src: exit %d, %q, %q", code, out, errOut)
		}
		code, out, _ = c.bin(t, env, "exec", "src", "--", "hostname")
		if code != 0 || out != l.Hosts[1].Hostname+"\n" {
			t.Errorf("exec src: exit %d, %q", code, out)
		}
		code, out, _ = c.bin(t, env, "call", "node3", "examples.hello.ping")
		if code != 0 || !strings.Contains(out, l.Hosts[2].Hostname) {
			t.Errorf("a node name still works with a partition file: exit %d, %q", code, out)
		}
		code, _, errOut = c.bin(t, env, "call", "dst", "examples.hello.ping")
		if code != 1 || !strings.Contains(errOut, "tags: src") {
			t.Errorf("unknown tag: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("selectCollectedProperties", func(t *testing.T) {
		h := l.Hosts[2]
		out := c.mustCLI(t, "select", "--selectors", fmt.Sprintf("[{'key': 'hostname', 'operator': '==', 'values': '%s'}]", h.Hostname))
		if out != h.Name+"\n" {
			t.Errorf("select by hostname = %q, want %s", out, h.Name)
		}
		out = c.mustCLI(t, "select", "--selectors", `[{"key": "cpu_count", "operator": ">=", "values": 1}, {"key": "memory_gb", "operator": ">", "values": 0}]`)
		if out != "node1\nnode2\nnode3\n" {
			t.Errorf("select by cpu_count and memory_gb = %q", out)
		}
	})

	t.Run("logsFetch", func(t *testing.T) {
		dir := t.TempDir()
		c.mustCLI(t, "logs", "fetch", "--dir", dir, "node1")
		if b, err := os.ReadFile(filepath.Join(dir, "node1", "agent.log")); err != nil || !strings.Contains(string(b), "Agent daemon starting") {
			t.Errorf("fetched agent.log: %v\n%s", err, b)
		}
	})

	c.mustCLI(t, "agents", "stop")
	for _, h := range l.Hosts {
		if pids := agentPIDs(t, h); len(pids) != 0 {
			t.Errorf("%s: agent processes left after agents stop: %v", h.Name, pids)
		}
	}
	code, out, errOut = c.cli(t, "agents", "status", "--json")
	if code != 1 || !strings.Contains(errOut, "3 of 3 agents are down") {
		t.Errorf("agents status after stop: exit %d, stderr %q", code, errOut)
	}
	for _, r := range jsonOut(t, out).Array() {
		if r.Get("up").Bool() {
			t.Errorf("agent still up: %s", r.Raw)
		}
		// A stopped agent is said to be not running, not a tunnel failure.
		if e := r.Get("error").String(); !strings.Contains(e, "the agent is not running on the node") || strings.Contains(e, "tunnel") {
			t.Errorf("stopped agent's error: %s", e)
		}
	}
}

// directModeAgents is an n-node cluster whose agents are started in
// direct mode (listening on the node's address) with a token file.
func directModeAgents(t *testing.T, n int) *cliCluster {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(rand.Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCLICluster(t, n, func(_ string, h map[string]any) {
		h["agent_bind"] = "direct"
		h["token_file"] = tokenFile
	})
	c.bootstrap(t)
	c.mustCLI(t, "agents", "start")
	return c
}

func TestCLI_directModeWithToken(t *testing.T) {
	c := directModeAgents(t, 2)
	out := c.mustCLI(t, "agents", "status", "--json")
	for _, r := range jsonOut(t, out).Array() {
		if !r.Get("up").Bool() || r.Get("agent_bind").Str != "direct" {
			t.Errorf("agents status: %s", r.Raw)
		}
	}
	for _, h := range c.lab.Hosts {
		if out := c.mustCLI(t, "call", h.Name, "examples.hello.ping"); !strings.Contains(out, h.Hostname) {
			t.Errorf("ping %s: %s", h.Name, out)
		}
		// Reachable from the network, and useless without the token.
		url := "http://" + net.JoinHostPort(h.Address, "9999") + "/"
		resp, err := http.Post(url, "text/xml", strings.NewReader(`<?xml version='1.0'?><methodCall><methodName>core.is_alive</methodName><params></params></methodCall>`))
		if err != nil {
			t.Fatalf("direct agent not reachable at %s: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without the token: HTTP %d, want 401", url, resp.StatusCode)
		}
	}
	c.mustCLI(t, "agents", "stop")
	for _, h := range c.lab.Hosts {
		if pids := agentPIDs(t, h); len(pids) != 0 {
			t.Errorf("%s: agent processes left: %v", h.Name, pids)
		}
	}
}

func TestCLI_hostKeys_trustOnFirstUseThenMismatchRefused(t *testing.T) {
	known := filepath.Join(t.TempDir(), "known_hosts") // nothing trusted yet
	c := newCLICluster(t, 1, func(_ string, h map[string]any) { h["known_hosts"] = known })
	h := c.lab.Hosts[0]

	code, _, errOut := c.cli(t, "bootstrap", "--vt-cluster-config", c.config, "--agent-binary", vtclusterBinary(t))
	if code != 1 || !strings.Contains(errOut, "is not known") || !strings.Contains(errOut, "--accept-new-host-keys") {
		t.Fatalf("bootstrap with an unknown host key: exit %d, stderr:\n%s", code, errOut)
	}
	c.bootstrap(t, "--accept-new-host-keys")
	recorded, err := os.ReadFile(known)
	if err != nil || !strings.Contains(string(recorded), h.Address) {
		t.Fatalf("known_hosts after trust on first use: %v\n%s", err, recorded)
	}
	c.mustCLI(t, "agents", "start")
	c.mustCLI(t, "agents", "stop")

	// The host now presents a key other than the recorded one.
	forged := testutil.ForgedKnownHost(t, h.Addr())
	if err := os.WriteFile(known, []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"agents", "start"},
		{"agents", "deploy", "--accept-new-host-keys", "--agent-binary", vtclusterBinary(t)},
	} {
		code, _, errOut = c.cli(t, args...)
		if code != 1 || !strings.Contains(errOut, "HOST KEY MISMATCH") {
			t.Errorf("%v with a changed host key: exit %d, stderr:\n%s", args, code, errOut)
		}
	}
	if got, _ := os.ReadFile(known); string(got) != forged {
		t.Errorf("known_hosts was changed:\n%s", got)
	}
	if pids := agentPIDs(t, h); len(pids) != 0 {
		t.Errorf("an agent was started despite the mismatch: %v", pids)
	}
}

func TestCLI_bootstrap_partialFailureRegistersTheRest(t *testing.T) {
	c := newCLICluster(t, 2, func(name string, h map[string]any) {
		if name == "node2" {
			h["shell_port"] = "2222" // nothing listens there
		}
	})
	code, out, errOut := c.cli(t, "bootstrap", "--vt-cluster-config", c.config, "--agent-binary", vtclusterBinary(t))
	if code != 1 || !strings.Contains(errOut, "bootstrap: 1 of 2 nodes failed") {
		t.Fatalf("bootstrap: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^node1 +ok +agent binary uploaded$`).MatchString(out) || !regexp.MustCompile(`(?m)^node2 +FAILED +`).MatchString(out) {
		t.Errorf("bootstrap summary:\n%s", out)
	}
	out = c.mustCLI(t, "node", "list", "--json")
	if names := jsonOut(t, out).Get("#.name").String(); names != `["node1"]` {
		t.Errorf("registered nodes = %s, want only node1", names)
	}
	code, _, errOut = c.cli(t, "bootstrap", "--vt-cluster-config", filepath.Join(t.TempDir(), "missing.json"))
	if code != 1 || !strings.Contains(errOut, "missing.json") {
		t.Errorf("bootstrap with a missing config: exit %d, stderr %q", code, errOut)
	}
}

// TestCLI_logsServe_realAgentLinesInUpstreamFormat runs "logs serve" as its
// own process, points a real agent's log stream at it and reads the lines.
// The server starts before the node is registered: upstream looks the
// sender up per connection, and so do we.
func TestCLI_logsServe_realAgentLinesInUpstreamFormat(t *testing.T) {
	c := newCLICluster(t, 1, nil)
	h := c.lab.Hosts[0]

	nodeDir := t.TempDir()
	host, port, stdout, stop := startLogServe(t, c.stateDir, c.lab.Gateway, "--dir", nodeDir)
	c.bootstrap(t)
	c.startAgents(t)
	c.mustCLI(t, "call", h.Name, "core.start_log_redirection", strconv.Quote(host), port)
	c.mustCLI(t, "call", h.Name, "process.run", `["echo", "hello from the node"]`, `{"log_output": true}`)
	c.mustCLI(t, "call", h.Name, "core.stop_log_redirection")

	// The controller half, then the worker half, as avocado-vt's test logs.
	line := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} logserver L\d{4} INFO \| node1\(` + regexp.QuoteMeta(h.Address) +
		`\) \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} avocado\.service\.process INFO \| \[pid \d+ stdout\] hello from the node$`)
	deadline := time.Now().Add(hangGuard)
	for !line.MatchString(stdout.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no unified line for the command's output; logs serve printed:\n%s", stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// stop sends SIGINT and checks the exit code.
	if errLines := stop(); !strings.Contains(errLines, "log server stopped") {
		t.Errorf("logs serve after SIGINT did not say it stopped; stderr:\n%s", errLines)
	}
	if b, err := os.ReadFile(filepath.Join(nodeDir, "node1.log")); err != nil || !line.Match(b) {
		t.Errorf("per-node log file: %v\n%s", err, b)
	}
}

// registerLabelledNodes adds three nodes that are never contacted: enough
// for partitions and selectors, which only read the state.
func registerLabelledNodes(tb testing.TB, stateDir string) {
	tb.Helper()
	for _, n := range []struct {
		name   string
		labels []string
	}{
		{"n1", []string{"rack=a", "cores=4", "mem=16", "virt=true", "model=Xeon Gold 6338", "zone=eu-1"}},
		{"n2", []string{"rack=b", "cores=16", "mem=64", "virt=false", "model=EPYC 7763", "zone=us-2"}},
		{"n3", []string{"rack=c", "cores=8", "mem=32", "virt=true", "model=Xeon Silver 4314", "zone=eu-2"}},
	} {
		args := []string{"--state-dir", stateDir, "node", "add", n.name, "--address", "192.0.2." + n.name[1:]}
		for _, l := range n.labels {
			args = append(args, "--label", l)
		}
		if code, _, errOut := runMain(tb, args...); code != 0 {
			tb.Fatalf("node add %s: exit %d: %s", n.name, code, errOut)
		}
	}
}

func TestCLI_select_everyOperatorBothSyntaxes(t *testing.T) {
	state := t.TempDir()
	registerLabelledNodes(t, state)
	sel := func(key, op, pyValue, jsonValue string) [2]string {
		return [2]string{
			fmt.Sprintf("[{'key': '%s', 'operator': '%s', 'values': %s}]", key, op, pyValue),
			fmt.Sprintf(`[{"key": "%s", "operator": "%s", "values": %s}]`, key, op, jsonValue),
		}
	}
	for _, c := range []struct {
		sels [2]string
		want string
	}{
		{sel("cores", "<", "8", "8"), "n1"},
		{sel("cores", "lt", "'8'", `"8"`), "n1"},
		{sel("cores", ">", "4", "4"), "n2 n3"}, // numbers, not text: "16" > "4"
		{sel("mem", "gt", "16.5", "16.5"), "n2 n3"},
		{sel("rack", "==", "'b'", `"b"`), "n2"},
		{sel("virt", "eq", "True", "true"), "n1 n3"},
		{sel("rack", "!=", "'b'", `"b"`), "n1 n3"},
		{sel("virt", "ne", "False", "false"), "n1 n3"},
		{sel("model", "contains", "'Xeon'", `"Xeon"`), "n1 n3"},
		{sel("model", "not contains", "'Xeon'", `"Xeon"`), "n2"},
		{sel("cores", ">=", "8", "8"), "n2 n3"},
		{sel("cores", "ge", "16", "16"), "n2"},
		{sel("mem", "<=", "32", "32"), "n1 n3"},
		{sel("mem", "le", "16", "16"), "n1"},
		{sel("zone", "in", "['eu-1', 'us-2']", `["eu-1", "us-2"]`), "n1 n2"},
		{sel("zone", "not in", "('eu-1', 'us-2')", `["eu-1", "us-2"]`), "n3"},
		{sel("model", "matches", "'Xeon (Gold|Silver) [0-9]+'", `"Xeon (Gold|Silver) [0-9]+"`), "n1 n3"},
		{sel("zone", "matches", "'eu'", `"eu"`), "none"}, // the whole value must match
		{sel("gpu", "==", "'yes'", `"yes"`), "none"},     // nobody has the key
		{sel("gpu", "!=", "'yes'", `"yes"`), "n1 n2 n3"},
	} {
		for i, s := range c.sels {
			code, out, errOut := runMain(t, "--state-dir", state, "select", "--selectors", s)
			got := strings.Join(strings.Fields(out), " ")
			if code == 2 && got == "" && strings.Contains(errOut, "no node matches") {
				got = "none"
			} else if code != 0 {
				t.Errorf("select %s: exit %d, stderr %q", s, code, errOut)
				continue
			}
			if got != c.want {
				t.Errorf("select %s (syntax %d) = %q, want %q", s, i, got, c.want)
			}
		}
	}

	// Tags get distinct nodes, all at once: a broad first tag does not
	// take the only node the narrow second one accepts.
	code, out, errOut := runMain(t, "--state-dir", state, "select", "--json", "--tag", "any", "--tag", "big",
		"--selectors", "big=[{'key': 'mem', 'operator': '>=', 'values': 64}]", "--selectors", "[]")
	if code != 0 || gjson.Get(out, "big").Str != "n2" || gjson.Get(out, "any").Str != "n1" {
		t.Errorf("select with tags: exit %d, %s %s", code, out, errOut)
	}
	code, _, errOut = runMain(t, "--state-dir", state, "select", "--tag", "a", "--tag", "b",
		"--selectors", "[{'key': 'mem', 'operator': '>=', 'values': 64}]")
	if code != 2 || !strings.Contains(errOut, "taken by other tags") {
		t.Errorf("two tags, one matching node: exit %d, stderr %q", code, errOut)
	}

	for _, bad := range []struct{ sels, want string }{
		{"[{'key': 'rack', 'operator': '~', 'values': 'a'}]", "unknown operator '~'"},
		{"[{'key': 'rack', 'operator': '=='}]", "values"},
		{"[{'key': 'rack', 'operator': '==', 'values': ''}]", "values"},
		{"[{'key': 'rack', 'operator': '==', 'values': 'a'}", "never closed"},
		{`[{"key": "rack", "operator": "==", "values": true, "extra": 1}]`, "extra"},
		{"[{'key': 'model', 'operator': 'matches', 'values': '('}]", "matches"},
	} {
		code, _, errOut := runMain(t, "--state-dir", state, "select", "--selectors", bad.sels)
		if code != 2 || !strings.Contains(errOut, bad.want) {
			t.Errorf("select %s: exit %d, stderr %q; want 2 and %q", bad.sels, code, errOut, bad.want)
		}
	}
	if code, _, errOut := runMain(t, "--state-dir", t.TempDir(), "select", "--selectors", "[]"); code != 2 || !strings.Contains(errOut, "no nodes registered") {
		t.Errorf("select on an empty cluster: exit %d, stderr %q", code, errOut)
	}
}

// startOwner runs, as a child process, a shell that reserves nodes with
// "vtcluster partition create" (so the shell is the partition's owner)
// and then turns into a long sleep, as a test runner would hold them.
func startOwner(tb testing.TB, stateDir string, args ...string) (*exec.Cmd, string) {
	tb.Helper()
	idFile := filepath.Join(tb.TempDir(), "id")
	script := `"$0" partition create "$@" > "` + idFile + `.tmp" && mv "` + idFile + `.tmp" "` + idFile + `" && exec sleep 300`
	cmd := exec.Command("sh", append([]string{"-c", script, vtclusterBinary(tb)}, args...)...)
	cmd.Env = append(os.Environ(), "VTCLUSTER_STATE_DIR="+stateDir)
	var errb testutil.SyncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(hangGuard)
	for {
		if b, err := os.ReadFile(idFile); err == nil {
			return cmd, strings.TrimSpace(string(b))
		}
		select {
		case err := <-done:
			tb.Fatalf("owner exited before allocating: %v\n%s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("owner did not allocate:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killOwner SIGKILLs the owner and waits until it is gone for good: a
// killed process stays a zombie until its parent (this test) reaps it.
func killOwner(tb testing.TB, cmd *exec.Cmd) {
	tb.Helper()
	if err := cmd.Process.Kill(); err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(hangGuard)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", cmd.Process.Pid)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("owner %d still exists after SIGKILL", cmd.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCLI_partition_killedOwnerReclaimed(t *testing.T) {
	state := t.TempDir()
	registerLabelledNodes(t, state)
	owner, id := startOwner(t, state, "--tag", "src", "--tag", "dst")

	code, out, _ := runMain(t, "--state-dir", state, "partition", "list", "--json")
	parts := jsonOut(t, out).Array()
	if code != 0 || len(parts) != 1 || parts[0].Get("id").Str != id || parts[0].Get("owner.pid").Int() != int64(owner.Process.Pid) ||
		parts[0].Get("nodes.#.node").String() != `["n1","n2"]` {
		t.Fatalf("partition list: exit %d\n%s\nwant %s owned by pid %d", code, out, id, owner.Process.Pid)
	}
	self := strconv.Itoa(os.Getpid())
	code, _, errOut := runMain(t, "--state-dir", state, "partition", "create", "--owner-pid", self, "--tag", "a", "--tag", "b")
	if code != 1 || !strings.Contains(errOut, "busy") || !strings.Contains(errOut, id) {
		t.Fatalf("allocating held nodes: exit %d, stderr %q; want busy, naming partition %s", code, errOut, id)
	}

	killOwner(t, owner)
	code, out, errOut = runMain(t, "--state-dir", state, "partition", "create", "--owner-pid", self, "--tag", "a", "--tag", "b", "--json")
	if code != 0 || gjson.Get(out, "nodes.#.node").String() != `["n1","n2"]` || gjson.Get(out, "owner.pid").Int() != int64(os.Getpid()) {
		t.Fatalf("allocation after the owner died: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, id) || !strings.Contains(errOut, "owner process has exited") {
		t.Errorf("the reclaim is not reported: %q", errOut)
	}

	// release --all-dead frees what dead owners hold, and nothing else.
	owner2, id2 := startOwner(t, state, "--tag", "x")
	killOwner(t, owner2)
	code, out, _ = runMain(t, "--state-dir", state, "partition", "release", "--all-dead")
	if code != 0 || strings.TrimSpace(out) != fmt.Sprintf("released %s (owner pid %d on %s)", id2, owner2.Process.Pid, hostnameOf(t)) {
		t.Errorf("release --all-dead: exit %d, %q", code, out)
	}
	code, out, _ = runMain(t, "--state-dir", state, "partition", "list", "--json")
	if left := jsonOut(t, out).Get("#.id").String(); code != 0 || strings.Contains(left, id2) || strings.Count(left, ",") != 0 {
		t.Errorf("partitions after release --all-dead: %s", left)
	}
}

func hostnameOf(tb testing.TB) string {
	tb.Helper()
	h, err := os.Hostname()
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func TestCLI_partition_createListRenewRelease(t *testing.T) {
	state := t.TempDir()
	registerLabelledNodes(t, state)
	run := func(args ...string) (int, string, string) {
		return runMain(t, append([]string{"--state-dir", state, "partition"}, args...)...)
	}
	// The owner defaults to vtcluster's parent: here, this test process.
	code, out, errOut := runVtcluster(t, []string{"VTCLUSTER_STATE_DIR=" + state}, "partition", "create", "--tag", "vm",
		"--selectors", "[{'key': 'cores', 'operator': '>=', 'values': 16}]", "--job-id", "job-1", "--lease", "10m")
	id := strings.TrimSpace(out)
	if code != 0 || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) || !strings.Contains(errOut, "vm=n2") {
		t.Fatalf("partition create: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = run("list", "--json")
	p := jsonOut(t, out).Get("0")
	if code != 0 || p.Get("id").Str != id || p.Get("owner.pid").Int() != int64(os.Getpid()) || p.Get("owner.job_id").Str != "job-1" ||
		p.Get("lease_seconds_left").Float() > 600 || p.Get("nodes.0.address").Str != "192.0.2.2" {
		t.Fatalf("partition list: %s", out)
	}
	if code, out, _ = run("list"); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "vm=n2") {
		t.Errorf("partition list table:\n%s", out)
	}
	if code, _, errOut = run("renew", id, "--lease", "2h"); code != 0 {
		t.Fatalf("renew: exit %d: %s", code, errOut)
	}
	if _, out, _ = run("list", "--json"); gjson.Get(out, "0.lease_seconds_left").Float() <= 600 {
		t.Errorf("lease not renewed: %s", out)
	}
	code, _, errOut = run("create", "--owner-pid", strconv.Itoa(os.Getpid()), "--tag", "vm",
		"--selectors", "[{'key': 'cores', 'operator': '>=', 'values': 64}]")
	if code != 2 || !strings.Contains(errOut, "no node matches") {
		t.Errorf("unsatisfiable request: exit %d, stderr %q; want 2", code, errOut)
	}
	if code, out, _ = run("release", id); code != 0 || strings.TrimSpace(out) != "released "+id {
		t.Errorf("release: exit %d, %q", code, out)
	}
	if code, _, errOut = run("release", id); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("second release: exit %d, stderr %q", code, errOut)
	}
	if _, out, _ = run("list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("partitions left: %s", out)
	}
	// A node held by a live partition is not unregistered by accident.
	code, _, _ = run("create", "--owner-pid", strconv.Itoa(os.Getpid()), "--tag", "t")
	if code != 0 {
		t.Fatal("create")
	}
	code, _, errOut = runMain(t, "--state-dir", state, "node", "remove", "n1")
	if code != 1 || !strings.Contains(errOut, "--force") {
		t.Errorf("removing a held node: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut = runMain(t, "--state-dir", state, "node", "remove", "--force", "n1"); code != 0 {
		t.Errorf("node remove --force: exit %d, %s", code, errOut)
	}
	if _, out, _ = runMain(t, "--state-dir", state, "node", "list", "--json"); !slices.Equal(namesOf(out), []string{"n2", "n3"}) {
		t.Errorf("nodes after remove: %s", out)
	}
}

func namesOf(out string) []string {
	var names []string
	for _, n := range gjson.Get(out, "#.name").Array() {
		names = append(names, n.Str)
	}
	return names
}

// A direct node whose agent already runs on a port of its own is driven
// without SSH: its shell port here has nothing listening, so any SSH
// attempt would fail. (Upstream's tokenless Python agent is covered by
// tests/python/test_python_agent_interop.py.)
func TestCLI_directNode_runningAgentNeedsNoSSH(t *testing.T) {
	a := startAgent(t, agentSpec{})
	state := t.TempDir()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(a.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (int, string, string) {
		return runMain(t, append([]string{"--state-dir", state}, args...)...)
	}
	if code, _, errOut := cli("node", "add", "py1", "--address", "127.0.0.1", "--port", "1",
		"--proxy-port", strconv.Itoa(a.port), "--agent-bind", "direct", "--token-file", tokenFile); code != 0 {
		t.Fatalf("node add: exit %d: %s", code, errOut)
	}
	host := hostnameOf(t)
	if code, out, errOut := cli("call", "py1", "examples.hello.ping"); code != 0 || strings.TrimSpace(out) != strconv.Quote("Pong from "+host) {
		t.Fatalf("call: exit %d, %q, %q", code, out, errOut)
	}
	if code, out, errOut := cli("agents", "start", "--json"); code != 0 || !gjson.Get(out, "0.ok").Bool() {
		t.Fatalf("agents start (reusing the running agent): exit %d, %s %s", code, out, errOut)
	}
	if code, out, errOut := cli("select", "--selectors", fmt.Sprintf(`[{"key": "hostname", "operator": "==", "values": %q}]`, host)); code != 0 || out != "py1\n" {
		t.Errorf("select on properties collected from the running agent: exit %d, %q, %q", code, out, errOut)
	}
	if code, out, errOut := cli("status", "--json"); code != 0 || !gjson.Get(out, "0.agent_up").Bool() {
		t.Errorf("status: exit %d, %s %s", code, out, errOut)
	}
	// "agents stop" would also check the pid file over SSH (the node has a
	// token, so vtcluster may have started it); core.quit needs none.
	if code, _, errOut := cli("call", "py1", "core.quit"); code != 0 {
		t.Fatalf("call core.quit: exit %d: %s", code, errOut)
	}
	if code := a.wait(t); code != 0 {
		t.Errorf("agent exit code %d after core.quit", code)
	}
}

// A host known only by password: bootstrap logs in with it, and with
// --install-key authorizes the host's key_file, after which nothing needs
// the password, which was never stored.
func TestCLI_bootstrap_installKeyThenNoPassword(t *testing.T) {
	l := lab.StartSpec(t, lab.Spec{Hosts: 1, PasswordUser: true})
	// A key of our own: the lab's shared authorized_keys does not list it,
	// so only an installed ~/.ssh/authorized_keys entry can let it in.
	keyFile := lab.StrangerKey(t)
	// The agent runs as the lab user, who cannot enter the test's private
	// temporary directories.
	base, err := os.MkdirTemp("", "vtc-agents-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o1777); err != nil {
		t.Fatal(err)
	}
	c := clusterOn(t, l, func(_ string, h map[string]any) {
		h["username"] = l.User.Name
		h["password"] = l.User.Password
		h["key_file"] = keyFile
		h["agent_base_dir"] = base
	})

	c.bootstrap(t)
	code, _, errOut := c.cli(t, "agents", "start")
	if code != 1 || !strings.Contains(errOut, "unable to authenticate") {
		t.Fatalf("agents start without an installed key: exit %d, stderr:\n%s", code, errOut)
	}
	c.bootstrap(t, "--install-key")
	c.startAgents(t)
	if code, out, errOut := c.cli(t, "exec", "node1", "--", "id", "-un"); code != 0 || out != l.User.Name+"\n" {
		t.Errorf("exec id -un: exit %d, %q, %q", code, out, errOut)
	}
	state, err := os.ReadFile(filepath.Join(c.stateDir, "default.json"))
	if err != nil || strings.Contains(string(state), l.User.Password) {
		t.Errorf("the state file holds the password (or is unreadable: %v)", err)
	}
	c.mustCLI(t, "agents", "stop")
	if pids := agentPIDs(t, l.Hosts[0]); len(pids) != 0 {
		t.Errorf("agent processes left: %v", pids)
	}
}

func TestCLI_node_addListRemove(t *testing.T) {
	state := t.TempDir()
	cli := func(args ...string) (int, string, string) {
		return runMain(t, append([]string{"--state-dir", state, "node"}, args...)...)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := cli("add", "n1", "--address", "192.0.2.1", "--key-file", "keys/id", "--label", "rack=a,b", "--label", "gpu=2"); code != 0 {
		t.Fatalf("node add: exit %d: %s", code, errOut)
	}
	code, _, errOut := cli("add", "n1", "--address", "192.0.2.9")
	if code != 1 || !strings.Contains(errOut, "--replace") {
		t.Errorf("adding a name twice: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := cli("add", "n1", "--address", "192.0.2.9", "--replace", "--key-file", "keys/id", "--label", "rack=a,b", "--label", "gpu=2"); code != 0 {
		t.Fatalf("node add --replace: exit %d: %s", code, errOut)
	}
	for _, bad := range [][]string{
		{"add", "n2"}, // neither address nor hostname
		{"add", "n2", "--address", "192.0.2.2", "--token-file", "/etc/t"},           // token without direct
		{"add", "n2", "--address", "192.0.2.2", "--label", "hostname=x"},            // a collected property
		{"add", "n2", "--address", "192.0.2.2", "--label", "novalue"},               // not KEY=VALUE
		{"add", "n2", "--address", "192.0.2.2", "--agent-base-dir", "rel"},          // not absolute
		{"add", "n2", "--address", "192.0.2.2", "--label", "a=1", "--label", "a=2"}, // twice
		{"add", "n2", "n3", "--address", "192.0.2.2"},                               // two names
	} {
		if code, _, errOut := cli(bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr %q", bad, code, errOut)
		}
	}
	// Refused by cluster.ValidateHost before the state is touched: a usage
	// error like every other bad node add argument.
	if code, _, errOut := cli("add", "../evil", "--address", "192.0.2.3"); code != 2 || !strings.Contains(errOut, "letters, digits") {
		t.Errorf("a node name with a slash: exit %d, stderr %q", code, errOut)
	}
	code, out, _ := cli("list", "--json")
	n := jsonOut(t, out).Get("0")
	if code != 0 || n.Get("address").Str != "192.0.2.9" || n.Get("key_file").Str != filepath.Join(wd, "keys/id") ||
		n.Get("labels.rack").Str != "a,b" || n.Get("labels.gpu").Str != "2" || n.Get("agent_bind").Str != "tunnel" || n.Get("shell_port").Int() != 22 {
		t.Errorf("node list --json: %s", out)
	}
	if code, out, _ = cli("list"); code != 0 || !strings.Contains(out, "gpu=2 rack=a,b") {
		t.Errorf("node list table:\n%s", out)
	}
	if code, _, errOut = cli("remove", "n1", "n7"); code != 1 || !strings.Contains(errOut, "nothing was removed") {
		t.Errorf("removing an unknown node: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ = cli("remove", "n1"); code != 0 {
		t.Errorf("node remove: exit %d", code)
	}
	if code, out, _ = cli("list", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("nodes left: %s", out)
	}
}
