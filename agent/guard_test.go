package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

func TestAuthThrottle_delaysGrowAndReset(t *testing.T) {
	var a authThrottle
	now := time.Unix(1000, 0)
	var got []time.Duration
	for range 9 {
		got = append(got, a.fail("10.0.0.1", now))
	}
	want := []time.Duration{0, 0, 0, 0, 0, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	for range 20 {
		a.fail("10.0.0.1", now)
	}
	if d := a.fail("10.0.0.1", now); d != authMaxDelay {
		t.Errorf("after many failures: %v, want the cap %v", d, authMaxDelay)
	}
	if d := a.fail("10.0.0.2", now); d != 0 {
		t.Errorf("another address pays for the first: %v", d)
	}
	if d := a.fail("10.0.0.1", now.Add(authWindow+time.Second)); d != 0 {
		t.Errorf("after a quiet minute: %v, want 0", d)
	}
	// Bounded: a flood from many addresses never grows past the cap.
	for i := range 3 * authMaxEntries {
		a.fail(fmt.Sprintf("10.1.%d.%d", i/256, i%256), now)
	}
	if len(a.m) > authMaxEntries {
		t.Errorf("%d entries, cap %d", len(a.m), authMaxEntries)
	}
}

func TestWarnLimiter_oncePerInterval(t *testing.T) {
	w := warnLimiter{every: 10 * time.Second}
	t0 := time.Unix(0, 0)
	if ok, n := w.allow(t0); !ok || n != 0 {
		t.Fatalf("first: %v %d", ok, n)
	}
	for i := range 99 {
		if ok, _ := w.allow(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			t.Fatal("second warning within the interval logged")
		}
	}
	if ok, n := w.allow(t0.Add(11 * time.Second)); !ok || n != 99 {
		t.Fatalf("after the interval: %v, suppressed %d; want true, 99", ok, n)
	}
}

func TestHostPolicy(t *testing.T) {
	host, _ := os.Hostname()
	unixP := newHostPolicy("", true, nil)
	bound := newHostPolicy("192.0.2.7", false, []string{"node1.lab"})
	any4 := newHostPolicy("0.0.0.0", false, nil)
	for _, c := range []struct {
		p    *hostPolicy
		host string
		ok   bool
	}{
		{unixP, "127.0.0.1", true},
		{unixP, "127.0.0.1:9999", true},
		{unixP, "localhost", true},
		{unixP, "[::1]:80", true},
		{unixP, "LOCALHOST.", true},
		{unixP, host, false},
		{unixP, "evil.example", false},
		{unixP, "", false},
		{bound, "192.0.2.7:9999", true},
		{bound, "node1.lab:9999", true},
		{bound, "NODE1.LAB", true},
		{bound, host, true},
		{bound, "127.0.0.1:1", true},
		{bound, "192.0.2.8", false},
		{bound, "evil.example:9999", false},
		{any4, "127.0.0.1", true},
		{any4, "203.0.113.9", false}, // TEST-NET-3, on no interface here
		{any4, "evil.example", false},
	} {
		if got := c.p.allowed(c.host); got != c.ok {
			t.Errorf("policy %+v: Host %q allowed = %v, want %v", c.p.names, c.host, got, c.ok)
		}
	}
}

// TestServer_slowAuthenticatedBodyCutOff: a body arriving slower than
// MinBodyRate ends the request after the grace instead of holding a
// connection forever.
func TestServer_slowAuthenticatedBodyCutOff(t *testing.T) {
	s, _ := startTestServer(t, func(c *Config) {
		c.ReadHeaderTimeout = 300 * time.Millisecond
		c.MinBodyRate = 1 << 20
	}, echoService())
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(hangGuard))
	start := time.Now()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\nContent-Length: 1000\r\n\r\n<", basicAuthValue(testToken))
	// Dribble a byte every 100 ms; the agent must give up at its deadline.
	go func() {
		for range 50 {
			time.Sleep(100 * time.Millisecond)
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	st, _ := bufio.NewReader(c).ReadString('\n')
	if el := time.Since(start); !strings.HasPrefix(st, "HTTP/1.1 400") || el > 3*time.Second {
		t.Fatalf("slow body: %q after %v, want 400 within about 0.3 s", st, el)
	}
}

func basicAuthValue(token string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth("vtc", token)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func TestServer_unixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "vtc-sock-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "a.sock")
	// A stale socket (nobody accepts) is replaced.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	startTestServer(t, func(c *Config) { c.SocketPath = sock; c.Token = "" }, echoService())
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v, want mode 0600", fi, err)
	}
	// A live one is in use.
	second, err := New(Config{SocketPath: sock, MaxRequestBytes: 1, ReadHeaderTimeout: 1, IdleTimeout: 1, ShutdownTimeout: 1,
		MaxHeaderBytes: 1, MaxConns: 1, MinBodyRate: 1, MaxLargeCalls: 1, LargeCallBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Listen(); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second listener on a live socket: %v, want EADDRINUSE", err)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(_ context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", sock)
	}}}
	body := string(encodeCall(t, "t.echo", "hi"))
	resp, err := client.Post("http://127.0.0.1/", "text/xml", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if v, err := xmlrpc.DecodeResponse(data); err != nil || fmt.Sprint(v) != "[hi]" {
		t.Fatalf("call over the socket: %v, %v", v, err)
	}
	// On a socket only loopback names are ours.
	req, _ := http.NewRequest(http.MethodPost, "http://evil.example/", strings.NewReader(body))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign Host over the socket: HTTP %d, want 403", resp.StatusCode)
	}
	for _, mode := range []os.FileMode{0o755, 0o710, 0o701} {
		os.Chmod(dir, mode)
		srv, err := New(Config{SocketPath: filepath.Join(dir, "b.sock"), MaxRequestBytes: 1, ReadHeaderTimeout: 1, IdleTimeout: 1, ShutdownTimeout: 1,
			MaxHeaderBytes: 1, MaxConns: 1, MinBodyRate: 1, MaxLargeCalls: 1, LargeCallBytes: 1})
		if err != nil {
			t.Fatal(err)
		}
		var de *SocketDirError
		if err := srv.Listen(); !errors.As(err, &de) {
			t.Errorf("directory mode %04o: %v, want a SocketDirError", mode, err)
		}
	}
	os.Chmod(dir, 0o700)
}

func TestRotatingFile_rotatesBySizeKeepingGenerations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	r, err := OpenRotatingFile(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("a", 39) + "\n" // 40 bytes
	for i := range 10 {
		if _, err := r.WriteString(fmt.Sprintf("%d", i%10) + line[1:]); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	sizes := map[string]int64{}
	for _, n := range []string{"x.log", "x.log.1", "x.log.2", "x.log.3"} {
		if fi, err := os.Stat(filepath.Join(filepath.Dir(path), n)); err == nil {
			sizes[n] = fi.Size()
		}
	}
	// 10 lines of 40 bytes, 2 per file: x.log has 8,9; .1 has 6,7; .2 has 4,5; no .3.
	if fmt.Sprint(sizes) != "map[x.log:80 x.log.1:80 x.log.2:80]" {
		t.Fatalf("files %v", sizes)
	}
	if data, _ := os.ReadFile(path); !strings.HasPrefix(string(data), "8") {
		t.Fatalf("current file starts %q, want the newest lines", data[:1])
	}
	if _, err := r.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	// Reopening a file already past its size rotates it first.
	os.WriteFile(path, []byte(strings.Repeat("b", 150)), 0o644)
	r, err = OpenRotatingFile(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Fatalf("oversized file not rotated at open: %d bytes", fi.Size())
	}
}

func TestCopyLogTail_boundedAtLineStart(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "line %04d\n", i) // 10 bytes
	}
	os.WriteFile(filepath.Join(dir, "big.log"), []byte(b.String()), 0o644)
	if err := CopyLogTail(root, "big.log", "copy.log", 105); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "copy.log"))
	want := "[vtcluster: the first 9900 bytes of big.log were left out; the copy keeps its last 105 bytes]\n" +
		"line 0990\nline 0991\nline 0992\nline 0993\nline 0994\nline 0995\nline 0996\nline 0997\nline 0998\nline 0999\n"
	if string(got) != want {
		t.Fatalf("copy:\n%s\nwant:\n%s", got, want)
	}
	os.WriteFile(filepath.Join(dir, "small.log"), []byte("one\n"), 0o644)
	if err := CopyLogTail(root, "small.log", "copy.log", 105); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "copy.log")); string(got) != "one\n" {
		t.Fatalf("small copy %q", got)
	}
}

// TestProcessService_Run_concurrencyCapped: beyond maxConcurrentRuns calls
// in flight, run answers a RuntimeError at once instead of starting more
// children.
func TestProcessService_Run_concurrencyCapped(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	run := s.Methods()["run"]
	done := make(chan error, maxConcurrentRuns)
	for range maxConcurrentRuns {
		go func() {
			_, err := run(ctx, Args{procArgv("sleep", "30"), map[string]any{}})
			done <- err
		}()
	}
	deadline := time.Now().Add(hangGuard)
	for len(s.runs) < maxConcurrentRuns {
		if time.Now().After(deadline) {
			t.Fatalf("only %d runs in flight", len(s.runs))
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, err := run(context.Background(), Args{procArgv("true"), map[string]any{}})
	procWantFault(t, err, "RuntimeError", fmt.Sprintf("too many process.run calls in flight (at most %d); retry when some have finished", maxConcurrentRuns))
	cancel()
	for range maxConcurrentRuns {
		<-done
	}
	if _, err := run(context.Background(), Args{procArgv("true"), map[string]any{}}); err != nil {
		t.Fatalf("run after the others finished: %v", err)
	}
}

// TestServer_tokenGuessingSlowed: after a few wrong tokens from one
// address each further one waits longer, and a real client's success from
// the same address (loopback) does not reset the count.
func TestServer_tokenGuessingSlowed(t *testing.T) {
	srv, url := startTestServer(t, nil, echoService())
	bare := "http://" + srv.Addr().String() + "/"
	body := encodeCall(t, "t.echo")
	guess := func() time.Duration {
		start := time.Now()
		resp, _ := post(t, bare, body, map[string]string{"Authorization": "Basic " + basicAuthValue("wrong-guess-0123456789")})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong token: HTTP %s", resp.Status)
		}
		return time.Since(start)
	}
	for range authFreeFailures {
		guess()
	}
	if d := guess(); d < authBaseDelay {
		t.Errorf("guess %d answered after %v, want at least %v", authFreeFailures+1, d, authBaseDelay)
	}
	if _, err := rpc(t, url, "t.echo"); err != nil {
		t.Fatal(err)
	}
	if d := guess(); d < 2*authBaseDelay {
		t.Errorf("guess after a real call answered after %v, want at least %v", d, 2*authBaseDelay)
	}
}
