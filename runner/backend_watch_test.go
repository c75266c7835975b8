package runner

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/lab"
)

// labBackend returns a backend holding connections to every host of l,
// each with a running agent (this repository's binary), and the partition
// of them, tagged "node1", "node2", ... as the hosts are named.
func labBackend(t *testing.T, l *lab.Lab) (*backend, *Partition) {
	t.Helper()
	data, err := l.ClusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	conf, err := cluster.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(runnerBinary(t)), "vtcluster")
	b := &backend{
		log:       slog.New(slog.DiscardHandler),
		conns:     map[string]*cluster.NodeConn{},
		renewals:  map[string]context.CancelFunc{},
		leaseLost: map[string]chan error{},
		lost:      map[string]error{},
	}
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, nc := range b.conns {
			nc.Close()
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	part := &Partition{ID: "watch-test"}
	for _, h := range conf.Hosts {
		n := h.Node()
		nc, err := cluster.Connect(ctx, n, cluster.ConnectOptions{AcceptNewHostKeys: true})
		if err != nil {
			t.Fatal(err)
		}
		b.conns[n.Name] = nc
		if _, err := nc.SetupAgentEnv(ctx, bin); err != nil {
			t.Fatal(err)
		}
		if _, err := nc.StartAgent(ctx); err != nil {
			t.Fatal(err)
		}
		part.Nodes = append(part.Nodes, PartitionNode{Tag: n.Name, Name: n.Name, Address: n.Host()})
	}
	return b, part
}

// A node cut off the network in the middle of a test (its link taken
// down: packets vanish and nothing resets the TCP connections, as in the
// e2e node-death specs) is reported within the health deadline of its
// last answer, however its probes fare; its connection is closed then, so
// the teardown that follows (log forwarding, process calls) does not wait
// on it. The node that stays up is never reported.
func TestBackend_Watch_reportsANodeCutOffTheNetwork(t *testing.T) {
	l := lab.Start(t, 2)
	b, part := labBackend(t, l)
	victim, survivor := part.Nodes[0], part.Nodes[1]
	ctx := t.Context()
	// Log forwarding holds a remote forward on the node's SSH connection:
	// stopping it asks sshd, which a dead node never answers.
	stopLogs, err := b.StartLogs(ctx, part, func(LogRecord) {})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := b.Watch(wctx, part)

	select {
	case err := <-lost:
		t.Fatalf("reported with every node up: %v", err)
	case <-time.After(healthDeadline + 2*healthInterval):
	}

	cut := time.Now()
	if _, err := l.Exec(ctx, 0, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	// The last answer came before the cut, so the report is due at most
	// healthDeadline after it; the rest is slack for a loaded machine's
	// timers, far below what the old probing needed there.
	const slack = 3 * time.Second
	const notWaiting = 15 * time.Second
	select {
	case err := <-lost:
		took := time.Since(cut)
		t.Logf("reported %s after the cut: %v", took.Round(time.Millisecond), err)
		msg := err.Error()
		if !strings.Contains(msg, `node "`+victim.Name+`"`) || strings.Contains(msg, survivor.Name) {
			t.Errorf("report %q; want it to name %s only", msg, victim.Name)
		}
		if took > healthDeadline+slack {
			t.Errorf("reported %s after the cut; want within %s", took, healthDeadline+slack)
		}
	case <-time.After(time.Minute):
		t.Fatalf("a node cut off the network was not reported within a minute")
	}

	start := time.Now()
	if _, err := b.Exec(ctx, victim, []string{"true"}, ExecOptions{}); err == nil || !strings.Contains(err.Error(), "lost") {
		t.Errorf("Exec on the lost node: %v; want the loss", err)
	}
	stopLogs()
	// Not a speed check: what waits on a dead node waits for SSH keepalives
	// or TCP to give up (51 s before the loss closed the connection), and a
	// loaded machine took 1.6 s here without waiting on it.
	if d := time.Since(start); d > notWaiting {
		t.Errorf("the teardown waited %s on the lost node", d)
	}
	res, err := b.Exec(ctx, survivor, []string{"true"}, ExecOptions{})
	if err != nil || res.ExitCode != 0 {
		t.Errorf("Exec on the survivor after the loss: %+v, %v", res, err)
	}
	select {
	case err := <-lost:
		t.Errorf("a second report: %v", err)
	case <-time.After(healthDeadline):
	}
}
