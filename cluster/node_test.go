package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster/lab"
	"github.com/vtcluster/vtcluster/cluster/sshx"
	"github.com/vtcluster/vtcluster/internal/testbin"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// The tests in this file drive real agents (the vtcluster binary itself,
// built once per test binary) on real SSH hosts of a lab.

func agentBinaryForTest(tb testing.TB) string {
	tb.Helper()
	return testbin.Path(tb)
}

// labNodes returns the lab's hosts as registered nodes, through the
// cluster config the lab writes; tweak may change each host's entry.
func labNodes(tb testing.TB, l *lab.Lab, tweak func(name string, host map[string]any)) []Node {
	tb.Helper()
	data, err := l.ClusterConfig()
	if err != nil {
		tb.Fatal(err)
	}
	if tweak != nil {
		data = tweakConfig(tb, data, tweak)
	}
	path := filepath.Join(tb.TempDir(), "cluster.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	conf, err := LoadConfig(path)
	if err != nil {
		tb.Fatal(err)
	}
	nodes := make([]Node, len(conf.Hosts))
	for i, h := range conf.Hosts {
		nodes[i] = h.Node()
	}
	return nodes
}

func tweakConfig(tb testing.TB, data []byte, tweak func(string, map[string]any)) []byte {
	tb.Helper()
	var cfg struct {
		Hosts map[string]map[string]any `json:"hosts"`
		Pools map[string]any            `json:"pools"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		tb.Fatal(err)
	}
	for name, h := range cfg.Hosts {
		tweak(name, h)
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func connectNode(tb testing.TB, n Node, opts ConnectOptions) *NodeConn {
	tb.Helper()
	nc, err := Connect(testCtx(tb), n, opts)
	if err != nil {
		tb.Fatalf("Connect %s: %v", n.Name, err)
	}
	tb.Cleanup(func() { nc.Close() })
	return nc
}

// agentPIDs lists the vtcluster agent processes in a lab host's network
// namespace. Lab hosts share the machine's process table, so only the
// namespace tells them apart.
func agentPIDs(tb testing.TB, h lab.Host) []int {
	tb.Helper()
	pids, err := h.PIDs(func(p lab.Proc) bool {
		return len(p.Argv) > 1 && filepath.Base(p.Argv[0]) == agentBinaryName && p.Argv[1] == "agent"
	})
	if err != nil {
		tb.Fatal(err)
	}
	return pids
}

func TestBinaryArch(t *testing.T) {
	got, err := BinaryArch(agentBinaryForTest(t))
	if err != nil || got != runtime.GOARCH {
		t.Fatalf("BinaryArch(vtcluster) = %q, %v; want %q", got, err, runtime.GOARCH)
	}
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := BinaryArch(script); err == nil || !strings.Contains(err.Error(), "not a Linux executable") {
		t.Fatalf("BinaryArch(script) = %v, want an error", err)
	}
}

func TestNodeConn_SetupAgentEnv_uploadsThenSkips(t *testing.T) {
	l := lab.Start(t, 1)
	n := labNodes(t, l, nil)[0]
	nc := connectNode(t, n, ConnectOptions{})
	ctx := testCtx(t)
	bin := agentBinaryForTest(t)
	first, err := nc.SetupAgentEnv(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	second, err := nc.SetupAgentEnv(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	if first.Skipped || !second.Skipped || first.SHA256 != second.SHA256 {
		t.Fatalf("first %+v, second %+v: want an upload, then a skip of the same content", first, second)
	}
	// Lab hosts share this machine's filesystem, so the copy is visible here.
	want, got := testutil.ReadFile(t, bin), testutil.ReadFile(t, filepath.Join(n.AgentDir(), agentBinaryName))
	if string(want) != string(got) {
		t.Fatal("the deployed binary differs from the local one")
	}
}

// The node is real; the foreign binary is this binary with its ELF header
// rewritten to say arm64, since building a real one would need a second
// toolchain target.
func TestNodeConn_SetupAgentEnv_refusesOtherArch_fakeELFHeader(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the node's architecture must differ from arm64")
	}
	l := lab.Start(t, 1)
	n := labNodes(t, l, nil)[0]
	data := testutil.ReadFile(t, agentBinaryForTest(t))
	data[18], data[19] = 0xb7, 0x00 // e_machine = EM_AARCH64, little endian
	foreign := filepath.Join(t.TempDir(), "vtcluster-arm64")
	if err := os.WriteFile(foreign, data, 0o755); err != nil {
		t.Fatal(err)
	}
	nc := connectNode(t, n, ConnectOptions{})
	_, err := nc.SetupAgentEnv(testCtx(t), foreign)
	var ae *ArchError
	if !errors.As(err, &ae) || ae.NodeArch != "x86_64" || ae.BinaryArch != "arm64" || !strings.Contains(err.Error(), "--agent-binary") {
		t.Fatalf("err = %v, want an *ArchError x86_64 vs arm64 naming --agent-binary", err)
	}
	if _, err := os.Stat(filepath.Join(n.AgentDir(), agentBinaryName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("something was uploaded: %v", err)
	}
}

func TestConnect_hostKeyMismatchRefused(t *testing.T) {
	l := lab.Start(t, 1)
	n := labNodes(t, l, nil)[0]
	// Record another key for the host, as if it had been reinstalled or
	// someone were in the middle.
	forged := testutil.ForgedKnownHost(t, l.Hosts[0].Addr())
	if err := os.WriteFile(l.KnownHosts, []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, accept := range []bool{false, true} {
		_, err := Connect(testCtx(t), n, ConnectOptions{AcceptNewHostKeys: accept})
		var hk *sshx.HostKeyError
		if !errors.As(err, &hk) || !hk.Mismatch {
			t.Fatalf("accept new keys %v: err = %v, want a *sshx.HostKeyError with Mismatch", accept, err)
		}
	}
	if got := string(testutil.ReadFile(t, l.KnownHosts)); got != forged {
		t.Fatalf("known_hosts changed:\n%s", got)
	}
}

// startTestAgent deploys and starts the agent of n.
func startTestAgent(tb testing.TB, nc *NodeConn) AgentInfo {
	tb.Helper()
	ctx := testCtx(tb)
	if _, err := nc.SetupAgentEnv(ctx, agentBinaryForTest(tb)); err != nil {
		tb.Fatal(err)
	}
	info, err := nc.StartAgent(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info
}

func TestNodeConn_StartAgent_tunnelOutlivesConnectionAndOpensNoPort(t *testing.T) {
	l := lab.Start(t, 1)
	h := l.Hosts[0]
	n := labNodes(t, l, nil)[0]
	ctx := testCtx(t)
	nc := connectNode(t, n, ConnectOptions{})
	info := startTestAgent(t, nc)
	if info.PID <= 0 {
		t.Fatalf("agent info %+v has no pid", info)
	}
	if pids := agentPIDs(t, h); len(pids) != 1 || pids[0] != info.PID {
		t.Fatalf("agent processes in %s: %v, want [%d]", h.Netns, pids, info.PID)
	}
	// Tunnel mode: the agent listens on the node's loopback only.
	addr := net.JoinHostPort(h.Address, strconv.Itoa(n.ProxyPort))
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("%s accepts connections from the controller; a tunnelled agent must not", addr)
	}
	// Upstream's agent dies with the controller's SSH session; ours does not.
	nc.Close()
	nc2 := connectNode(t, n, ConnectOptions{})
	v, err := nc2.Call(ctx, "examples.hello.ping")
	if err != nil || v != "Pong from "+h.Hostname {
		t.Fatalf("ping after reconnecting = %v, %v; want Pong from %s", v, err, h.Hostname)
	}
	again, err := nc2.StartAgent(ctx)
	if err != nil || again.PID != info.PID {
		t.Fatalf("second StartAgent = %+v, %v; want the running agent (pid %d) reused", again, err, info.PID)
	}
	if err := nc2.StopAgent(ctx); err != nil {
		t.Fatal(err)
	}
	if pids := agentPIDs(t, h); len(pids) != 0 {
		t.Fatalf("agent processes left after StopAgent: %v", pids)
	}
	if err := nc2.StopAgent(ctx); err != nil {
		t.Fatalf("stopping a stopped agent: %v", err)
	}
}

func TestNodeConn_StartAgent_directNeedsToken(t *testing.T) {
	l := lab.Start(t, 1)
	h := l.Hosts[0]
	var tok [16]byte
	rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := labNodes(t, l, func(_ string, host map[string]any) {
		host["agent_bind"] = "direct"
		host["token_file"] = tokenFile
	})[0]
	ctx := testCtx(t)
	nc := connectNode(t, n, ConnectOptions{})
	startTestAgent(t, nc)
	t.Cleanup(func() { nc.StopAgent(context.Background()) })

	v, err := nc.Call(ctx, "examples.hello.ping")
	if err != nil || v != "Pong from "+h.Hostname {
		t.Fatalf("ping = %v, %v", v, err)
	}
	url := "http://" + net.JoinHostPort(h.Address, strconv.Itoa(n.ProxyPort)) + "/"
	body := `<?xml version='1.0'?><methodCall><methodName>core.is_alive</methodName><params></params></methodCall>`
	resp, err := http.Post(url, "text/xml", strings.NewReader(body))
	if err != nil {
		t.Fatalf("a direct agent must be reachable at %s: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST without the token: HTTP %d, want 401", resp.StatusCode)
	}
	wrong := NewClient(n.Name, NewDirectTransport(h.Address, n.ProxyPort), "not-the-token")
	defer wrong.Close()
	if _, err := wrong.Call(ctx, "core.is_alive"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("call with a wrong token: %v, want HTTP 401", err)
	}
}

// A direct node without a token_file can only be served by an agent that
// is already running (upstream's); vtcluster refuses to start one open.
func TestNodeConn_StartAgent_directWithoutTokenStartsNothing(t *testing.T) {
	l := lab.Start(t, 1)
	n := labNodes(t, l, func(_ string, host map[string]any) { host["agent_bind"] = "direct" })[0]
	nc := connectNode(t, n, ConnectOptions{})
	_, err := nc.StartAgent(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "never starts an agent without a token") {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if pids := agentPIDs(t, l.Hosts[0]); len(pids) != 0 {
		t.Fatalf("agent processes started: %v", pids)
	}
}

func TestNodeConn_FetchAgentLogsAndCleanup(t *testing.T) {
	l := lab.Start(t, 1)
	n := labNodes(t, l, nil)[0]
	ctx := testCtx(t)
	nc := connectNode(t, n, ConnectOptions{})
	startTestAgent(t, nc)
	if err := nc.StopAgent(ctx); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "logs")
	if err := nc.FetchAgentLogs(ctx, local); err != nil {
		t.Fatal(err)
	}
	if log := testutil.ReadFile(t, filepath.Join(local, "agent.log")); !strings.Contains(string(log), "Agent daemon starting with PID") {
		t.Fatalf("fetched agent.log lacks the start line:\n%s", log)
	}
	if err := nc.CleanupAgentEnv(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.AgentDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("agent dir still there: %v", err)
	}
	if _, err := os.Stat(n.AgentBaseDir); err != nil {
		t.Fatalf("cleanup removed the base dir too: %v", err)
	}
}

func TestNodeConn_CleanupAgentEnv_refusesOutsideItsDir(t *testing.T) {
	for _, n := range []Node{
		{Name: "n1", AgentBaseDir: "/"},
		{Name: "n1", AgentBaseDir: "relative/dir"},
		{Name: "..", AgentBaseDir: "/var/lib/vtcluster/agents"},
		{Name: "a/b", AgentBaseDir: "/var/lib/vtcluster/agents"},
	} {
		// No SSH connection: the check must come before any remote command.
		nc := &NodeConn{node: n}
		err := nc.CleanupAgentEnv(context.Background())
		if err == nil || !strings.Contains(err.Error(), "refusing to remove") {
			t.Errorf("node %+v: err = %v, want a refusal", n, err)
		}
	}
}

func TestController_StartAgents_collectsPropertiesInParallel(t *testing.T) {
	l := lab.Start(t, 3)
	data, err := l.ClusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	data = tweakConfig(t, data, func(name string, host map[string]any) {
		host["labels"] = map[string]any{"rack": "r-" + name, "gpus": 2}
	})
	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	conf, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	st := newTestStore(t)
	c := NewController(st, ControllerConfig{Binary: agentBinaryForTest(t)})
	ctx := testCtx(t)
	if _, err := c.Bootstrap(ctx, conf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartAgents(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.StopAgents(context.Background()) })
	s, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range l.Hosts {
		n := s.Node(h.Name)
		if n == nil {
			t.Fatalf("node %s not registered", h.Name)
		}
		p := n.Properties
		if p["hostname"] != h.Hostname || p["rack"] != "r-"+h.Name || fmt.Sprint(p["gpus"]) != "2" {
			t.Errorf("host %d: properties %v: want hostname %s, rack r-%s, gpus 2", i, p, h.Hostname, h.Name)
		}
		for _, k := range []string{"arch", "cpu_vendor_id", "cpu_model_name", "kernel", "cpu_count", "mem_total", "memory_gb", "kvm"} {
			if _, ok := p[k]; !ok {
				t.Errorf("host %d: property %q missing from %v", i, k, p)
			}
		}
		if n.Agent.PID <= 0 || n.PropertiesAt.IsZero() {
			t.Errorf("host %d: agent %+v, properties at %v: want both recorded", i, n.Agent, n.PropertiesAt)
		}
	}
	rows, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if !r.AgentUp {
			t.Errorf("status %s: agent down: %s", r.Name, r.AgentError)
		}
	}
	if _, err := c.StopAgents(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts {
		if pids := agentPIDs(t, h); len(pids) != 0 {
			t.Errorf("%s: agent processes left: %v", h.Name, pids)
		}
	}
	// The state forgets the stopped agents.
	if s, err = st.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range s.Nodes {
		if n.Agent != (AgentInfo{}) {
			t.Errorf("%s: agent record %+v left after stop", n.Name, n.Agent)
		}
	}
}

// BenchmarkBringUp measures bringing up N hosts from nothing: deploy the
// agent binary to each (a fresh agent dir every round, so the upload
// really happens), start every agent and collect properties. Agents are
// stopped outside the timer. Compare ns/op of N=16 with N=1 to see how
// well bring-up runs in parallel.
func BenchmarkBringUp(b *testing.B) {
	const maxHosts = 16
	l := lab.Start(b, maxHosts)
	bin := agentBinaryForTest(b)
	for _, n := range []int{1, 2, 4, 8, 16} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			round := 0
			for b.Loop() {
				b.StopTimer()
				round++
				base := filepath.Join(b.TempDir(), fmt.Sprintf("round%d", round))
				data, err := l.ClusterConfig()
				if err != nil {
					b.Fatal(err)
				}
				data = tweakConfig(b, data, func(_ string, host map[string]any) { host["agent_base_dir"] = base })
				data = keepHosts(b, data, n)
				path := filepath.Join(b.TempDir(), "cluster.json")
				if err := os.WriteFile(path, data, 0o600); err != nil {
					b.Fatal(err)
				}
				conf, err := LoadConfig(path)
				if err != nil {
					b.Fatal(err)
				}
				c := NewController(newTestStore(b), ControllerConfig{Binary: bin})
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				b.StartTimer()
				_, err = c.Bootstrap(ctx, conf)
				if err == nil {
					_, err = c.StartAgents(ctx)
				}
				b.StopTimer()
				if _, serr := c.StopAgents(ctx); serr != nil {
					b.Errorf("stop agents: %v", serr)
				}
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// keepHosts trims a lab cluster config to node1..nodeN.
func keepHosts(tb testing.TB, data []byte, n int) []byte {
	tb.Helper()
	var cfg struct {
		Hosts map[string]any `json:"hosts"`
		Pools map[string]any `json:"pools"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		tb.Fatal(err)
	}
	for name := range cfg.Hosts {
		i, err := strconv.Atoi(strings.TrimPrefix(name, "node"))
		if err != nil || i > n {
			delete(cfg.Hosts, name)
		}
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	tb.Cleanup(cancel)
	return ctx
}
