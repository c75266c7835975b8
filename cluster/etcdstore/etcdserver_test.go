package etcdstore

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

// etcdMember is one real etcd server (Debian's etcd-server) run by a test.
type etcdMember struct {
	name, client, peer string // client and peer are host:port
	dir                string
	cmd                *exec.Cmd
	done               chan struct{}
}

// etcdBinary is the etcd server, or a skip: these tests need a real one.
func etcdBinary(t *testing.T) string {
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

// freePorts returns n ports free right now on 127.0.0.1.
func freePorts(t *testing.T, n int) []string {
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

// startEtcd starts an etcd cluster of size members on loopback, each with
// its own data directory, and stops them all when the test ends.
func startEtcd(t *testing.T, size int) []*etcdMember {
	t.Helper()
	bin := etcdBinary(t)
	ports := freePorts(t, 2*size)
	var members []*etcdMember
	var initial []string
	for i := range size {
		m := &etcdMember{name: fmt.Sprintf("m%d", i), client: ports[2*i], peer: ports[2*i+1], dir: filepath.Join(t.TempDir(), "data")}
		members = append(members, m)
		initial = append(initial, m.name+"=http://"+m.peer)
	}
	for _, m := range members {
		m.start(t, bin, strings.Join(initial, ","))
	}
	waitHealthy(t, members)
	return members
}

func (m *etcdMember) start(t *testing.T, bin, initial string) {
	t.Helper()
	log, err := os.Create(filepath.Join(filepath.Dir(m.dir), "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(bin,
		"--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", "http://"+m.client, "--advertise-client-urls", "http://"+m.client,
		"--listen-peer-urls", "http://"+m.peer, "--initial-advertise-peer-urls", "http://"+m.peer,
		"--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", "vtcluster-test",
		// Short elections so that losing a member costs about a second.
		"--heartbeat-interval", "50", "--election-timeout", "500",
	)
	m.cmd.Stdout, m.cmd.Stderr = log, log
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.done = make(chan struct{})
	go func() { m.cmd.Wait(); log.Close(); close(m.done) }()
	t.Cleanup(m.stop)
}

// stop kills the member and waits for it; stopping twice is harmless.
func (m *etcdMember) stop() {
	select {
	case <-m.done:
		return
	default:
	}
	m.cmd.Process.Signal(syscall.SIGCONT) // in case a test froze it
	m.cmd.Process.Kill()
	<-m.done
}

func waitHealthy(t *testing.T, members []*etcdMember) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints(members), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
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
				t.Logf("etcd %s log:\n%s", m.name, b)
			}
			t.Fatalf("etcd did not become healthy: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func endpoints(members []*etcdMember) []string {
	var eps []string
	for _, m := range members {
		eps = append(eps, m.client)
	}
	return eps
}

// stateURL is the --state value for members.
func stateURL(members []*etcdMember) string {
	return "etcd://" + strings.Join(endpoints(members), ",") + "/vtc-test"
}

// openTestStore opens the cluster's store on members, closed at the end
// of the test.
func openTestStore(t *testing.T, members []*etcdMember, clusterName string) *Store {
	t.Helper()
	cfg, err := ParseURL(stateURL(members))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cluster = clusterName
	cfg.Timeout = 3 * time.Second
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
