//go:build !vtcluster_noetcd

package etcdstore

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/etcdstore/etcdtest"
)

// Subprocess helpers: the test binary re-executed with helperEnv naming
// one, as a separate controller process that shares nothing but etcd.
const (
	helperEnv     = "VTCLUSTER_ETCDSTORE_HELPER"
	helperArgsEnv = "VTCLUSTER_ETCDSTORE_HELPER_ARGS"
)

func runHelper(name string) int {
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(helperArgsEnv)), &args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fail := func(err error) int { fmt.Fprintf(os.Stderr, "%s: %v\n", name, err); return 1 }
	cfg, err := ParseURL(args[0])
	if err != nil {
		return fail(err)
	}
	cfg.Cluster, cfg.Timeout = "lab", 3*time.Second
	st, err := Open(cfg)
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	ctx := context.Background()
	// Owners name another host, as a controller on another machine
	// would: nobody checks its pid, only the lease frees its nodes.
	owner := cluster.Owner{Host: "controller-" + strconv.Itoa(os.Getpid()), PID: os.Getpid()}
	switch name {
	case "hold": // url lease-seconds: allocate, print the id, renew forever
		secs, _ := strconv.Atoi(args[1])
		lease := time.Duration(secs) * time.Second
		p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: owner, Tags: []string{"a", "b"}, Lease: lease})
		if err != nil {
			return fail(err)
		}
		fmt.Println(p.ID)
		for {
			time.Sleep(lease / 3)
			if _, err := cluster.Renew(ctx, st, p.ID, lease); err != nil {
				return fail(err)
			}
		}
	case "worker": // url rounds recorddir: allocate, record on the nodes, release
		rounds, _ := strconv.Atoi(args[1])
		for range rounds {
			p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: owner, Tags: []string{"a", "b"}, Lease: 30 * time.Second, Wait: 2 * time.Minute})
			if err != nil {
				return fail(err)
			}
			// The record is created exclusively: a second holder of
			// the node fails here, whatever the store believes.
			for _, a := range p.Nodes {
				f, err := os.OpenFile(filepath.Join(args[2], a.Node), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
				if err != nil {
					return fail(fmt.Errorf("node %s double-booked: %w", a.Node, err))
				}
				fmt.Fprintln(f, p.ID)
				f.Close()
			}
			time.Sleep(10 * time.Millisecond)
			for _, a := range p.Nodes {
				os.Remove(filepath.Join(args[2], a.Node))
			}
			if err := cluster.Release(ctx, st, p.ID); err != nil {
				return fail(err)
			}
		}
		return 0
	}
	return fail(errors.New("unknown helper"))
}

func helper(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	enc, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+name, helperArgsEnv+"="+string(enc))
	cmd.Stderr = os.Stderr
	t.Cleanup(func() {
		if cmd.Process != nil && cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

func labStore(t *testing.T, members []*etcdtest.Member, nodes int) *Store {
	t.Helper()
	st := openTestStore(t, members, "lab")
	var ns []string
	for i := range nodes {
		ns = append(ns, fmt.Sprintf("n%d", i))
	}
	register(t, st, ns...)
	return st
}

// Controllers in separate processes, sharing only etcd, allocate the same
// nodes concurrently; each writes a record on the node it holds with
// O_EXCL, so a double booking fails that controller.
func TestEtcd_processesNeverDoubleBook(t *testing.T) {
	members := startEtcd(t, 1)
	st := labStore(t, members, 4)
	records := t.TempDir()
	const workers, rounds = 5, 12
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		cmd := helper(t, "worker", stateURL(members), strconv.Itoa(rounds), records)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = cmd.Wait() }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("controller %d: %v", i, err)
		}
	}
	s, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Partitions) != 0 {
		t.Errorf("%d partitions left after every controller released", len(s.Partitions))
	}
}

// startHold runs a controller that holds two nodes and renews their lease.
func startHold(t *testing.T, members []*etcdtest.Member, leaseSecs int) (*exec.Cmd, string) {
	t.Helper()
	cmd := helper(t, "hold", stateURL(members), strconv.Itoa(leaseSecs))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	id, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("holder: %v", err)
	}
	return cmd, strings.TrimSpace(id)
}

// A controller SIGKILLed while holding nodes frees them when its lease's
// TTL passes: another controller waiting for them gets them within the
// TTL plus a second, with no reclaim step and no pid check.
func TestEtcd_killedControllerFreesNodesWithinTTL(t *testing.T) {
	const ttl = 3
	members := startEtcd(t, 1)
	st := labStore(t, members, 2)
	cmd, id := startHold(t, members, ttl)

	// Alive and renewing, it keeps its nodes past its TTL.
	time.Sleep((ttl + 1) * time.Second)
	s, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Partition(id) == nil {
		t.Fatal("a renewing controller lost its partition")
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed := time.Now()
	p, err := cluster.Allocate(context.Background(), st, cluster.AllocRequest{
		Owner: testOwner("controller-a", os.Getpid()), Tags: []string{"x", "y"}, Lease: time.Minute, Wait: 2 * ttl * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(killed)
	t.Logf("nodes free %s after the holder was killed (lease TTL %ds)", took.Round(time.Millisecond), ttl)
	if took > (ttl+1)*time.Second {
		t.Errorf("got the nodes after %s, want within TTL %ds + 1s", took, ttl)
	}
	if p.Nodes[0].Node == "" {
		t.Fatal("no nodes")
	}
}

// A waiting allocation wakes on the release itself (a watch), not on a
// polling tick.
func TestEtcd_waitWakesOnRelease(t *testing.T) {
	members := startEtcd(t, 1)
	st := labStore(t, members, 1)
	ctx := context.Background()
	p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner("a", 1), Tags: []string{"x"}, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	other := openTestStore(t, members, "lab")
	got := make(chan time.Time, 1)
	go func() {
		_, err := cluster.Allocate(ctx, other, cluster.AllocRequest{Owner: testOwner("b", 2), Tags: []string{"x"}, Lease: time.Minute, Wait: time.Minute})
		if err != nil {
			t.Error(err)
		}
		got <- time.Now()
	}()
	time.Sleep(1500 * time.Millisecond) // past the polling backoff's first steps
	released := time.Now()
	if err := cluster.Release(ctx, st, p.ID); err != nil {
		t.Fatal(err)
	}
	at := <-got
	if d := at.Sub(released); d > 300*time.Millisecond {
		t.Errorf("waiting allocation took %s after the release", d)
	}
}

// With etcd frozen (SIGSTOP: connections hang as with a lost network) a
// command fails with a clear error within the timeout, having written
// nothing.
func TestEtcd_unreachableFailsWithinTimeoutWritingNothing(t *testing.T) {
	members := startEtcd(t, 1)
	st := labStore(t, members, 2)
	ctx := context.Background()
	if _, err := st.Load(ctx); err != nil { // connected before the freeze
		t.Fatal(err)
	}
	members[0].Freeze(t)
	start := time.Now()
	_, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner("a", 1), Tags: []string{"x"}, Lease: time.Minute})
	took := time.Since(start)
	members[0].Thaw()
	if err == nil {
		t.Fatal("allocation succeeded against a frozen etcd")
	}
	t.Logf("error after %s: %v", took.Round(time.Millisecond), err)
	if !strings.Contains(err.Error(), "did not answer within 3s") || !strings.Contains(err.Error(), members[0].Client) {
		t.Errorf("error does not say etcd at %s did not answer: %v", members[0].Client, err)
	}
	// One timeout for the whole command; the margin is for a busy
	// machine, not for a second timeout.
	if took > 3*time.Second+2*time.Second {
		t.Errorf("took %s, want the 3s timeout", took)
	}
	s, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Partitions) != 0 {
		t.Errorf("partition written by a failed allocation: %+v", s.Partitions)
	}

	// A store whose endpoint nobody listens on fails the same way.
	dead := freePorts(t, 1)[0]
	cfg, _ := ParseURL("etcd://" + dead + "/x")
	cfg.Cluster, cfg.Timeout = "lab", time.Second
	ds, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	start = time.Now()
	_, err = ds.Load(ctx)
	if err == nil || !strings.Contains(err.Error(), "did not answer within 1s") || time.Since(start) > 3*time.Second {
		t.Errorf("dead endpoint: %v after %s", err, time.Since(start))
	}
}

// etcd freezes while an allocation's transaction is in flight, after the
// read and the grant: the writer cannot know whether it committed (etcd
// may apply it when it resumes). The allocation fails within one timeout,
// and whatever etcd applied goes by itself soon after, not when the
// wanted lease (a minute) ends, though the writer could revoke nothing.
func TestEtcd_unknownOutcomeCleansItself(t *testing.T) {
	members := startEtcd(t, 1)
	st := labStore(t, members, 2)
	ctx := context.Background()
	var once sync.Once
	st.beforeTxn = func() { once.Do(func() { members[0].Freeze(t) }) }
	start := time.Now()
	_, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner("a", 1), Tags: []string{"x", "y"}, Lease: time.Minute})
	took := time.Since(start)
	members[0].Thaw()
	st.beforeTxn = nil
	if err == nil {
		t.Fatal("allocation succeeded against a frozen etcd")
	}
	t.Logf("error after %s: %v", took.Round(time.Millisecond), err)
	if !strings.Contains(err.Error(), "save state") || !strings.Contains(err.Error(), "did not answer within 3s") {
		t.Errorf("error does not say the save went unanswered: %v", err)
	}
	if took > 3*time.Second+2*time.Second {
		t.Errorf("took %s, want the 3s timeout for the whole allocation", took)
	}

	// Gone within the provisional lease, counted from the thaw (etcd's
	// lease clock ran on while frozen), plus a margin for a busy
	// machine; far below the wanted minute.
	thawed := time.Now()
	limit := time.Duration(st.provisionalTTL())*time.Second + 5*time.Second
	raw, err := clientv3.New(clientv3.Config{Endpoints: endpoints(members), DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	seen := false
	for {
		gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := raw.Get(gctx, st.root, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, kv := range resp.Kvs {
			if k := strings.TrimPrefix(string(kv.Key), st.root); strings.HasPrefix(k, "partitions/") || strings.HasPrefix(k, "holders/") {
				left = append(left, k)
			}
		}
		if len(left) == 0 {
			break
		}
		seen = true
		if time.Since(thawed) > limit {
			t.Fatalf("keys of the failed allocation still there %s after etcd resumed: %v", limit, left)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("etcd applied the transaction after resuming: %v; nothing left %s after the thaw", seen, time.Since(thawed).Round(time.Millisecond))

	// The nodes are free for the next allocation.
	p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner("b", 2), Tags: []string{"x", "y"}, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Release(ctx, st, p.ID); err != nil {
		t.Fatal(err)
	}
}

// answerDropper forwards connections to etcd and, once drop is set,
// stops passing etcd's answers back: requests still arrive and are
// applied, as when the network fails after a request went out.
type answerDropper struct {
	addr string
	drop atomic.Bool
}

func newAnswerDropper(t *testing.T, target string) *answerDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &answerDropper{addr: ln.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			go io.Copy(s, c)
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && !d.drop.Load() {
						c.Write(buf[:n])
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return d
}

// The network fails after an allocation's transaction went out: etcd
// applies it, the writer never hears so and fails within one timeout.
// The keys it wrote go by themselves when the provisional lease ends,
// not when the wanted minute does.
func TestEtcd_lostAnswerCleansItself(t *testing.T) {
	members := startEtcd(t, 1)
	labStore(t, members, 2)
	proxy := newAnswerDropper(t, members[0].Client)
	cfg, _ := ParseURL("etcd://" + proxy.addr + "/vtc-test")
	cfg.Cluster, cfg.Timeout = "lab", 3*time.Second
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.beforeTxn = func() { proxy.drop.Store(true) }
	ctx := context.Background()
	start := time.Now()
	_, err = cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner("a", 1), Tags: []string{"x", "y"}, Lease: time.Minute})
	took := time.Since(start)
	if err == nil {
		t.Fatal("allocation succeeded without etcd's answer")
	}
	t.Logf("error after %s: %v", took.Round(time.Millisecond), err)
	if !strings.Contains(err.Error(), "save state") || took > 3*time.Second+2*time.Second {
		t.Errorf("want the save to fail within the 3s timeout, got after %s: %v", took, err)
	}

	direct := openTestStore(t, members, "lab")
	s, err := direct.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Partitions) != 1 {
		t.Fatalf("etcd did not apply the transaction whose answer was lost: %+v", s.Partitions)
	}
	if left := time.Until(s.Partitions[0].Expires); left > time.Duration(direct.provisionalTTL())*time.Second {
		t.Errorf("the unconfirmed partition has %s left, want at most the provisional %ds", left, direct.provisionalTTL())
	}
	// Its nodes are free once the provisional lease ends: an allocation
	// waiting for them gets them well before the minute.
	p, err := cluster.Allocate(ctx, direct, cluster.AllocRequest{
		Owner: testOwner("b", 2), Tags: []string{"x", "y"}, Lease: time.Minute,
		Wait: time.Duration(direct.provisionalTTL())*time.Second + 5*time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("nodes free again %s after the failed allocation began", time.Since(start).Round(time.Millisecond))
	if err := cluster.Release(ctx, direct, p.ID); err != nil {
		t.Fatal(err)
	}
}

// In a three-member etcd, stopping one member (the leader, the worst
// case) mid-run does not stop allocations.
func TestEtcd_threeMembersSurviveOneStopped(t *testing.T) {
	members := startEtcd(t, 3)
	st := labStore(t, members, 4)
	ctx := context.Background()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints(members), DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	leader := -1
	for i, m := range members {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := cli.Status(sctx, m.Client)
		cancel()
		if err == nil && resp.Leader == resp.Header.MemberId {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader found")
	}

	// Requests in flight to the leader when it stops may run into the
	// timeout; every allocation started once a new leader had time to
	// be elected (election timeout 500ms) must succeed.
	var mu sync.Mutex
	var stoppedAt time.Time
	var okAfter int
	var inFlight, errs []error
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				started := time.Now()
				p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner("c", w+1), Tags: []string{"a", "b"}, Lease: 30 * time.Second, Wait: 10 * time.Second})
				if err == nil {
					err = cluster.Release(ctx, st, p.ID)
				}
				mu.Lock()
				switch {
				case stoppedAt.IsZero():
				case started.Before(stoppedAt.Add(time.Second)):
					if err != nil {
						inFlight = append(inFlight, err)
					}
				case err == nil:
					okAfter++
				default:
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	mu.Lock()
	stoppedAt = time.Now()
	mu.Unlock()
	members[leader].Stop()
	time.Sleep(6 * time.Second)
	close(done)
	wg.Wait()
	t.Logf("after stopping the leader %s: %d allocations; in flight at the stop, %d failed %v", members[leader].Name, okAfter, len(inFlight), inFlight)
	if okAfter < 5 {
		t.Errorf("only %d allocations after one of three members stopped", okAfter)
	}
	for _, err := range errs {
		t.Errorf("allocation failed after one member stopped: %v", err)
	}
}

// With etcd's authentication on, the store works with the user's
// password (here from a file) and fails clearly without it; the password
// is nowhere in what the store saves.
func TestEtcd_userAndPassword(t *testing.T) {
	members := startEtcd(t, 1)
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints(members), DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const password = "s3cret-Pa55"
	for _, step := range []func() error{
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "vtc"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "vtc", "/vtc-test/", clientv3.GetPrefixRangeEnd("/vtc-test/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "ci", password); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "ci", "vtc"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _ := ParseURL(stateURL(members))
	cfg.Cluster, cfg.Timeout = "lab", 3*time.Second

	anon, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	_, err = anon.Load(ctx)
	if err == nil || !strings.Contains(err.Error(), members[0].Client) {
		t.Errorf("without credentials: %v, want an error naming the store", err)
	}
	t.Logf("without credentials: %v", err)

	cfg.Creds = Credentials{Username: "ci", PasswordFile: pwFile}
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	register(t, st, "n1")
	p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{Owner: testOwner("a", 1), Tags: []string{"x"}, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	root, err := clientv3.New(clientv3.Config{Endpoints: endpoints(members), DialTimeout: 3 * time.Second, Username: "root", Password: "root-pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	resp, err := root.Get(ctx, "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) < 3 {
		t.Fatalf("only %d keys written", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), password) {
			t.Errorf("key %s holds the password", kv.Key)
		}
	}
	if err := cluster.Release(ctx, st, p.ID); err != nil {
		t.Fatal(err)
	}
}

// etcds:// with the CA and a client certificate reaches an etcd that
// requires them; without the certificate, or without TLS, it fails.
func TestEtcd_tlsClientCertificate(t *testing.T) {
	members, files := etcdtest.StartTLS(t)
	url := "etcds://" + members[0].Client + "/vtc-test"
	open := func(creds Credentials) (Opened, error) {
		return OpenState(Selection{State: url, Cluster: "lab", Creds: creds, Timeout: 2 * time.Second})
	}
	ctx := context.Background()
	st, err := open(Credentials{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	defer CloseStore(st)
	register(t, st, "n1")
	if s, err := st.Load(ctx); err != nil || len(s.Nodes) != 1 {
		t.Fatalf("over TLS: %v", err)
	}
	if !strings.HasPrefix(st.Path(), "etcds://") {
		t.Errorf("Path %q does not say TLS", st.Path())
	}

	for name, creds := range map[string]Credentials{
		"no client certificate": {CAFile: files.CA},
		"unknown CA":            {CertFile: files.ClientCert, KeyFile: files.ClientKey},
	} {
		st, err := open(creds)
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Load(ctx)
		CloseStore(st)
		if err == nil {
			t.Errorf("%s: Load succeeded", name)
		}
		t.Logf("%s: %v", name, err)
	}
	if _, err := open(Credentials{CAFile: files.CA, CertFile: files.ClientCert}); err == nil || !strings.Contains(err.Error(), "both the certificate and the key") {
		t.Errorf("certificate without key: %v", err)
	}
}
