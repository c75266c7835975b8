package runner

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseStatusURI(t *testing.T) {
	cases := []struct {
		in, network, addr string
		bad               bool
	}{
		{"/tmp/avocado_x/.status_server.sock", "unix", "/tmp/avocado_x/.status_server.sock", false},
		{"127.0.0.1:8888", "tcp", "127.0.0.1:8888", false},
		{"localhost:1", "tcp", "localhost:1", false},
		{"::1:8888", "", "", true},
		{"host:", "", "", true},
		{"", "", "", true},
	}
	for _, c := range cases {
		u, err := parseStatusURI(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: accepted as %+v", c.in, u)
			}
			continue
		}
		if err != nil || u.Network != c.network || u.Address != c.addr {
			t.Errorf("%q: got %+v, %v", c.in, u, err)
		}
	}
}

func TestStatusClient_Post_unixAndTCP(t *testing.T) {
	us := newUnixStatusServer(t)
	ts := newTCPStatusServer(t)
	c, err := newStatusClient([]string{us.URI, ts.URI}, defaultStatusConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		line, _ := encodeLine(heartbeatMessage().With("n", i))
		if err := c.Post(context.Background(), line); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*statusServer{us, ts} {
		msgs := s.waitFor(func(m []map[string]any) bool { return len(m) == 3 })
		if n := s.connCount(); n != 1 {
			t.Errorf("%s: %d connections, want 1 for the whole task", s.URI, n)
		}
		if msgs[2]["n"] != 2.0 {
			t.Errorf("%s: messages out of order: %v", s.URI, msgs)
		}
	}
}

func TestStatusClient_Post_unreachableUnixSocketFails(t *testing.T) {
	c, err := newStatusClient([]string{filepath.Join(t.TempDir(), "nothing.sock")}, defaultStatusConfig())
	if err != nil {
		t.Fatal(err)
	}
	line, _ := encodeLine(heartbeatMessage())
	if err := c.Post(context.Background(), line); err == nil {
		t.Fatal("posting to a missing unix socket succeeded")
	}
	// The URI is given up: later posts neither retry nor report again.
	if err := c.Post(context.Background(), line); err != nil {
		t.Fatalf("second post: %v", err)
	}
}

func TestStatusClient_Post_retriesRefusedTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused until the server below starts
	cfg := defaultStatusConfig()
	cfg.TCPRetryInterval = 20 * time.Millisecond
	c, err := newStatusClient([]string{addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		line, _ := encodeLine(heartbeatMessage())
		done <- c.Post(context.Background(), line)
	}()
	time.Sleep(100 * time.Millisecond) // let a few attempts be refused
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s was taken by someone else meanwhile: %v", addr, err)
	}
	s := startStatusServer(t, ln2, addr)
	if err := <-done; err != nil {
		t.Fatalf("post after retries: %v", err)
	}
	s.waitFor(func(m []map[string]any) bool { return len(m) == 1 })
}

func TestStatusClient_Post_retryBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := defaultStatusConfig()
	cfg.TCPRetries = 2
	cfg.TCPRetryInterval = time.Millisecond
	c, _ := newStatusClient([]string{addr}, cfg)
	line, _ := encodeLine(heartbeatMessage())
	if err := c.Post(context.Background(), line); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("got %v, want connection refused after the retries", err)
	}
}

func TestStatusClient_Post_reconnectsOnceAfterBrokenPipe(t *testing.T) {
	s := newUnixStatusServer(t)
	s.setCloseAfter(1) // every connection is dropped after its first line
	c, err := newStatusClient([]string{s.URI}, defaultStatusConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line1, _ := encodeLine(heartbeatMessage().With("n", 1))
	if err := c.Post(context.Background(), line1); err != nil {
		t.Fatal(err)
	}
	s.waitFor(func(m []map[string]any) bool { return len(m) == 1 })
	// Posting before the server has closed would only fill its buffer.
	s.waitClosed(1)
	// The server has closed; keep posting until the broken pipe shows (the
	// first write after a close may still land in the socket buffer).
	var err2 error
	for i := 2; i < 10 && len(s.messages()) < 2 && err2 == nil; i++ {
		line, _ := encodeLine(heartbeatMessage().With("n", i))
		err2 = c.Post(context.Background(), line)
	}
	if err2 != nil {
		t.Fatalf("post after the server dropped the connection: %v", err2)
	}
	s.waitFor(func(m []map[string]any) bool { return len(m) >= 2 })
	if n := s.connCount(); n < 2 {
		t.Errorf("server saw %d connections, want a reconnect", n)
	}
}

func TestReporter_taskModeStampsAndFinishesOnce(t *testing.T) {
	s := newUnixStatusServer(t)
	sc, err := newStatusClient([]string{s.URI}, defaultStatusConfig())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	job := "0123456789abcdef"
	r := newReporter(reporterConfig{Status: sc, Stdout: &out, Task: true, ID: "1-mytest", JobID: &job, OutputDir: "/res/1"})
	ctx := context.Background()
	r.Send(ctx, startedMessage())
	r.Send(ctx, outputMessage("stdout", []byte("hello\n")))
	if !r.Finish(ctx, finishedMessage(resultPass, "", nil)) {
		t.Fatal("first Finish refused")
	}
	if r.Finish(ctx, finishedMessage(resultFail, "late", nil)) {
		t.Error("second Finish sent")
	}
	if r.Send(ctx, heartbeatMessage()) {
		t.Error("message after finished was sent")
	}
	r.Close()
	msgs := s.waitFor(func(m []map[string]any) bool { return len(m) == 3 })
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	var last float64
	for i, m := range msgs {
		if m["id"] != "1-mytest" || m["job_id"] != job {
			t.Errorf("message %d lacks id/job_id: %v", i, m)
		}
		tm, _ := m["time"].(float64)
		if tm <= 0 || tm < last {
			t.Errorf("message %d: time %v after %v", i, m["time"], last)
		}
		last = tm
	}
	if msgs[0]["output_dir"] != "/res/1" {
		t.Errorf("started lacks output_dir: %v", msgs[0])
	}
	if msgs[2]["status"] != "finished" || msgs[2]["result"] != "pass" {
		t.Errorf("last message = %v", msgs[2])
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "{'status': 'started', 'time': ") ||
		!strings.HasSuffix(lines[0], ", 'output_dir': '/res/1', 'id': '1-mytest', 'job_id': '0123456789abcdef'}") ||
		!strings.HasPrefix(lines[1], "{'type': 'stdout', 'log': b'hello\\n', 'status': 'running', 'time': ") {
		t.Errorf("printed lines:\n%s", out.String())
	}
}

func TestReporter_Finish_afterCancelStillDelivers(t *testing.T) {
	s := newUnixStatusServer(t)
	sc, _ := newStatusClient([]string{s.URI}, defaultStatusConfig())
	r := newReporter(reporterConfig{Status: sc, Task: true, ID: "x"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Finish(ctx, finishedMessage(resultInterrupted, "interrupted by SIGTERM", nil))
	r.Close()
	msgs := s.waitFor(func(m []map[string]any) bool { return len(m) == 1 })
	if msgs[0]["result"] != "interrupted" {
		t.Errorf("got %v", msgs[0])
	}
	if _, ok := msgs[0]["job_id"]; ok {
		t.Errorf("job_id sent although -j was not given: %v", msgs[0])
	}
}
