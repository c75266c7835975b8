package cluster

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster/lab"
	"github.com/vtcluster/vtcluster/cluster/sshx"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// startHolderForTest serves a holder for job "job-1" under a private
// TMPDIR and returns it with the channel ServeHolder's result arrives on.
func startHolderForTest(t *testing.T, cfg HolderConfig) (*Holder, <-chan error) {
	t.Helper()
	shortTempDir(t)
	sock, err := HolderSocket("job-1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Socket = sock
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		done <- ServeHolder(ctx, cfg, func() { close(ready) })
	}()
	t.Cleanup(func() {
		cancel()
		<-ended
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("ServeHolder: %v", err)
	}
	h, err := OpenHolder(testCtx(t), sock)
	if err != nil {
		t.Fatal(err)
	}
	return h, done
}

// shortTempDir points TMPDIR at a short new directory: t.TempDir() is
// named after the test, too long for a socket path.
func shortTempDir(t *testing.T) {
	dir, err := os.MkdirTemp("", "vth")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("TMPDIR", dir)
}

func TestHolder_testPathThroughOneConnection(t *testing.T) {
	l := lab.Start(t, 1)
	n := labNodes(t, l, nil)[0]
	own := connectNode(t, n, ConnectOptions{})
	startTestAgent(t, own)
	h, done := startHolderForTest(t, HolderConfig{})
	ctx := testCtx(t)

	nc, err := ConnectHeld(n, h, ConnectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if v, err := nc.Call(ctx, "core.is_alive"); err != nil || v != true {
		t.Fatalf("core.is_alive through the holder = %v, %v", v, err)
	}
	link, err := nc.Link(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The agent's log stream reaches this process through the holder.
	sock, err := NewLogSocketPath(n)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := link.ListenRemoteUnix(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			buf := make([]byte, 4)
			_, err = c.Read(buf) // the first frame's length prefix
			c.Close()
		}
		accepted <- err
	}()
	if _, err := nc.Call(ctx, "core.start_log_redirection_unix", sock); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Call(ctx, "examples.hello.ping"); err != nil { // logs a record
		t.Fatal(err)
	}
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatalf("log stream through the holder: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the agent's log connection never arrived")
	}
	if _, err := nc.Call(ctx, "core.stop_log_redirection"); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	ssh, err := own.SSH(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if err := ssh.Run(ctx, []string{"test", "-e", sock}, sshx.RunOptions{}); err != nil {
			break // gone: the holder removed what sshd left
		}
		if ctx.Err() != nil {
			t.Fatalf("log socket %s still on the node after the listener closed", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Collection over the holder's SFTP session.
	v, err := nc.Call(ctx, "core.get_service_log_filename")
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "service.log")
	if err := link.CopyFrom(ctx, v.(string), local); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(local); err != nil || st.Size() == 0 {
		t.Fatalf("collected service log: %v, %v", st, err)
	}
	// What the log gains from here on, alone.
	mark, err := link.Size(ctx, v.(string))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Call(ctx, "process.run", []any{"true"}, map[string]any{}); err != nil {
		t.Fatal(err)
	}
	tail := filepath.Join(t.TempDir(), "tail.log")
	if err := link.CopyTail(ctx, v.(string), tail, mark); err != nil {
		t.Fatal(err)
	}
	whole := filepath.Join(t.TempDir(), "whole.log")
	if err := link.CopyFrom(ctx, v.(string), whole); err != nil {
		t.Fatal(err)
	}
	got, want := testutil.ReadFile(t, tail), testutil.ReadFile(t, whole)
	if len(got) == 0 || int64(len(want)) < mark || !bytes.HasPrefix(want[mark:], got) {
		t.Fatalf("tail from %d = %q; the whole log is %d bytes", mark, got, len(want))
	}
	if err := link.CopyFrom(ctx, path.Join(n.AgentDir(), "no-such-file"), filepath.Join(t.TempDir(), "x")); err == nil {
		t.Fatal("copying a missing file through the holder succeeded")
	}

	// The holder ends: the test's watch sees it, and calls fail at once.
	watch := link.Done()
	if err := h.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-watch:
	case <-ctx.Done():
		t.Fatal("Done did not close when the holder quit")
	}
	if err := <-done; err != nil {
		t.Fatalf("ServeHolder after quit: %v", err)
	}
	if _, err := os.Stat(h.socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("holder socket left behind: %v", err)
	}
	if _, err := nc.Call(ctx, "core.is_alive"); err == nil {
		t.Fatal("a call through a holder that quit succeeded")
	}
}

func TestHolder_endsWithItsJob(t *testing.T) {
	job := exec.Command("sleep", "60")
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	owner, err := ProcessOwner(job.Process.Pid, "job-1", "")
	if err != nil {
		t.Fatal(err)
	}
	_, done := startHolderForTest(t, HolderConfig{Owner: &owner})
	job.Process.Kill()
	job.Wait()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the holder outlived its job's process")
	}
}

func TestHolder_sweepsSocketsOfKilledProcesses(t *testing.T) {
	shortTempDir(t)
	dir, err := HolderDir()
	if err != nil {
		t.Fatal(err)
	}
	// A runner killed mid-test leaves its socket file; a live one answers.
	dead := filepath.Join(dir, "l-DEAD.sock")
	ln, err := net.Listen("unix", dead)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	live := filepath.Join(dir, "l-LIVE.sock")
	ln2, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	sweepDeadSockets(dir)
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead runner's socket was kept: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live runner's socket was removed: %v", err)
	}
}

func TestHolder_endsWhenIdle(t *testing.T) {
	_, done := startHolderForTest(t, HolderConfig{Idle: 10 * time.Millisecond})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("an idle holder did not exit")
	}
}

func TestHolderDir_refusesAPlantedDirectory(t *testing.T) {
	shortTempDir(t)
	dir, err := HolderDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := HolderSocket("job-1"); err == nil {
		t.Fatal("a holder directory open to others was accepted")
	}
	os.Remove(dir)
	if err := os.Symlink(t.TempDir(), dir); err != nil {
		t.Fatal(err)
	}
	if _, err := HolderSocket("job-1"); err == nil {
		t.Fatal("a symlink in place of the holder directory was accepted")
	}
}

func TestHolder_refusesWhatIsNotALogSocketOrTunnelNode(t *testing.T) {
	h, _ := startHolderForTest(t, HolderConfig{})
	ctx := testCtx(t)
	direct := Node{Name: "n1", Address: "192.0.2.1", AgentBind: AgentBindDirect}
	if _, err := h.request(ctx, holderRequest{Op: "dial", Node: &direct}); err == nil {
		t.Fatal("the holder dialed a direct-mode node")
	}
	if _, err := h.request(ctx, holderRequest{Op: "dance"}); err == nil {
		t.Fatal("an unknown operation was accepted")
	}
}
