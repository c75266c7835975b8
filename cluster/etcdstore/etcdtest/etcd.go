// Package etcdtest runs real etcd servers (Debian's etcd-server) for tests
// of the etcd state store and of the commands that use it. It is imported
// by tests only.
package etcdtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
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
// Under -short (make unit) they skip, as the lab tests do: starting real
// servers is the slow part of this package's tests.
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("real etcd servers are not started under -short")
	}
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
func FreePorts(t testing.TB, n int) []string {
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
func Start(t testing.TB, size int) []*Member {
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
		m.start(t, bin, strings.Join(initial, ","), "http")
	}
	waitHealthy(t, members, nil)
	return members
}

// TLSFiles are the PEM files of a test CA, an etcd server certificate for
// 127.0.0.1 and a client certificate, all signed by the CA.
type TLSFiles struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

// StartTLS starts one etcd member that serves clients over TLS only and
// requires a client certificate signed by the test CA.
func StartTLS(t testing.TB) ([]*Member, TLSFiles) {
	t.Helper()
	bin := Binary(t)
	files := newTLSFiles(t)
	ports := FreePorts(t, 2)
	m := &Member{Name: "tls", Client: ports[0], peer: ports[1], dir: filepath.Join(t.TempDir(), "data")}
	m.start(t, bin, m.Name+"=http://"+m.peer, "https",
		"--client-cert-auth", "--trusted-ca-file", files.CA, "--cert-file", files.ServerCert, "--key-file", files.ServerKey)
	cert, err := tls.LoadX509KeyPair(files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(files.CA)
	pool.AppendCertsFromPEM(caPEM)
	waitHealthy(t, []*Member{m}, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}})
	return []*Member{m}, files
}

func newTLSFiles(t testing.TB) TLSFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vtcluster test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	srv, srvKey := leaf(2, "etcd", x509.ExtKeyUsageServerAuth)
	cli, cliKey := leaf(3, "vtcluster", x509.ExtKeyUsageClientAuth)
	return TLSFiles{
		CA:         write("ca.pem", "CERTIFICATE", caDER),
		ServerCert: write("server.pem", "CERTIFICATE", srv), ServerKey: write("server-key.pem", "PRIVATE KEY", keyDER(srvKey)),
		ClientCert: write("client.pem", "CERTIFICATE", cli), ClientKey: write("client-key.pem", "PRIVATE KEY", keyDER(cliKey)),
	}
}

func (m *Member) start(t testing.TB, bin, initial, scheme string, extra ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(filepath.Dir(m.dir), "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	m.Cmd = exec.Command(bin, append([]string{
		"--name", m.Name, "--data-dir", m.dir,
		"--listen-client-urls", scheme + "://" + m.Client, "--advertise-client-urls", scheme + "://" + m.Client,
		"--listen-peer-urls", "http://" + m.peer, "--initial-advertise-peer-urls", "http://" + m.peer,
		"--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", "vtcluster-test",
		// Short elections so that losing a member costs about a second.
		"--heartbeat-interval", "50", "--election-timeout", "500",
	}, extra...)...)
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

// Freeze stops the member (SIGSTOP: its connections hang, as with a lost
// network) and returns once every one of its threads is stopped. kill
// returns before that: on a busy machine the thread that takes the signal
// may not run for a while, and the others go on serving requests.
func (m *Member) Freeze(t testing.TB) {
	t.Helper()
	if err := m.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	tasks := fmt.Sprintf("/proc/%d/task", m.Cmd.Process.Pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		stopped, err := allStopped(tasks)
		if err != nil {
			t.Fatal(err)
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd %s: still running 10s after SIGSTOP", m.Name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Thaw resumes a frozen member.
func (m *Member) Thaw() { m.Cmd.Process.Signal(syscall.SIGCONT) }

func allStopped(tasks string) (bool, error) {
	ents, err := os.ReadDir(tasks)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(tasks, e.Name(), "stat"))
		if err != nil {
			continue // the thread ended
		}
		// "pid (comm) state ...", and comm may hold ") " itself.
		st := string(b)
		rest := st[strings.LastIndex(st, ") ")+2:]
		if !strings.HasPrefix(rest, "T") && !strings.HasPrefix(rest, "t") {
			return false, nil
		}
	}
	return true, nil
}

func waitHealthy(t testing.TB, members []*Member, tc *tls.Config) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: Endpoints(members), DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: tc})
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
