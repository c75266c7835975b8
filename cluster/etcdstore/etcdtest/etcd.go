// Package etcdtest runs real etcd servers (Debian's etcd-server) for tests
// of the etcd state store and of the commands that use it. It is imported
// by tests only.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Member is one real etcd server (Debian's etcd-server) run by a test.
type Member struct {
	Name, Client, peer string // Client and peer are host:port
	dir                string
	Cmd                *exec.Cmd
	done               chan struct{}
}

// Binary is the etcd server, or a skip: these tests need a real one.
func Binary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/etcd"); serr == nil {
			return "/usr/bin/etcd"
		}
		t.Skip("etcd server not installed (apt-get install etcd-server): the etcd store is tested against a real server only")
	}
	return p
}

// FreePorts returns n ports free right now on 127.0.0.1.
func FreePorts(t *testing.T, n int) []string {
	t.Helper()
	var ls []net.Listener
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// Start starts an etcd cluster of size members on loopback, each with
// its own data directory, and stops them all when the test ends.
func Start(t *testing.T, size int) []*Member {
	t.Helper()
	bin := Binary(t)
	ports := FreePorts(t, 2*size)
	var members []*Member
	var initial []string
	for i := range size {
		m := &Member{Name: fmt.Sprintf("m%d", i), Client: ports[2*i], peer: ports[2*i+1], dir: filepath.Join(t.TempDir(), "data")}
		members = append(members, m)
		initial = append(initial, m.Name+"=http://"+m.peer)
	}
	for _, m := range members {
		m.start(t, bin, strings.Join(initial, ","))
	}
	waitHealthy(t, members)
	return members
}

func (m *Member) start(t *testing.T, bin, initial string) {
	t.Helper()
	log, err := os.Create(filepath.Join(filepath.Dir(m.dir), "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	m.Cmd = exec.Command(bin,
		"--name", m.Name, "--data-dir", m.dir,
		"--listen-client-urls", "http://"+m.Client, "--advertise-client-urls", "http://"+m.Client,
		"--listen-peer-urls", "http://"+m.peer, "--initial-advertise-peer-urls", "http://"+m.peer,
		"--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", "vtcluster-test",
		// Short elections so that losing a member costs about a second.
		"--heartbeat-interval", "50", "--election-timeout", "500",
	)
	m.Cmd.Stdout, m.Cmd.Stderr = log, log
	m.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.done = make(chan struct{})
	go func() { m.Cmd.Wait(); log.Close(); close(m.done) }()
	t.Cleanup(m.Stop)
}

// Stop kills the member and waits for it; stopping twice is harmless.
func (m *Member) Stop() {
	select {
	case <-m.done:
		return
	default:
	}
	m.Cmd.Process.Signal(syscall.SIGCONT) // in case a test froze it
	m.Cmd.Process.Kill()
	<-m.done
}

func waitHealthy(t *testing.T, members []*Member) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: Endpoints(members), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Put(ctx, "/health", "ok")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			for _, m := range members {
				b, _ := os.ReadFile(filepath.Join(filepath.Dir(m.dir), "etcd.log"))
				t.Logf("etcd %s log:\n%s", m.Name, b)
			}
			t.Fatalf("etcd did not become healthy: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func Endpoints(members []*Member) []string {
	var eps []string
	for _, m := range members {
		eps = append(eps, m.Client)
	}
	return eps
}

// URL is a --state value for members, with prefix /vtc-test.
func URL(members []*Member) string {
	return "etcd://" + strings.Join(Endpoints(members), ",") + "/vtc-test"
}
