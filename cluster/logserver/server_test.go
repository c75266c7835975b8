package logserver

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/agent/logframe"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// logSrvGuard bounds waits that only run out when a test has failed.
const logSrvGuard = 30 * time.Second

type logSrvFixture struct {
	srv  *Server
	out  *testutil.SyncBuffer
	rec  *testutil.LogRecorder
	dir  string
	port int
}

// startLogServer runs a Server on loopback with every output captured.
func startLogServer(tb testing.TB, mutate func(*Config)) *logSrvFixture {
	tb.Helper()
	f := &logSrvFixture{out: &testutil.SyncBuffer{}, rec: &testutil.LogRecorder{}, dir: tb.TempDir()}
	cfg := DefaultConfig()
	cfg.Logger = slog.New(f.rec)
	cfg.Out = f.out
	cfg.NodeDir = func(tag string) string { return filepath.Join(f.dir, tag) }
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	f.srv = srv
	f.port = srv.Addr().(*net.TCPAddr).Port
	if err := srv.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
		testutil.NoGoroutinesLeft(tb, logSrvGuard, "logserver.(*Server).")
	})
	return f
}

// waitStats waits until cond holds for the server's counters.
func waitStats(tb testing.TB, srv *Server, what string, cond func(Stats) bool) Stats {
	tb.Helper()
	deadline := time.Now().Add(logSrvGuard)
	for {
		st := srv.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("log server never reached %s: %+v", what, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newStreamer(tb testing.TB) *agent.LogStreamer {
	tb.Helper()
	cfg := agent.DefaultLogStreamerConfig(filepath.Join(tb.TempDir(), "service.log"))
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	s, err := agent.NewLogStreamerWithConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func dialLogServer(tb testing.TB, port int) net.Conn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), logSrvGuard)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func fixtureBytes(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("../../testdata/logframes", name))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

var traceback = []string{
	"Traceback (most recent call last):\n",
	"  File \"/srv/svc.py\", line 3, in run\n    boom()\n",
	"RuntimeError: it broke\n",
}

func TestLogServer_endToEnd(t *testing.T) {
	f := startLogServer(t, nil)
	if err := f.srv.RegisterNode("127.0.0.1", "node1"); err != nil {
		t.Fatal(err)
	}
	s := newStreamer(t)
	if err := s.Start(t.Context(), "127.0.0.1", f.port); err != nil {
		t.Fatal(err)
	}
	log := slog.New(s.Handler("avocado.service.process"))
	log.Debug("debug line")
	log.Info("info line", "k", "v")
	log.Warn("warning line")
	log.Error("error line", "err", traceback)
	log.Log(t.Context(), logframe.LevelCritical, "critical line")
	waitStats(t, f.srv, "5 records", func(st Stats) bool { return st.Records == 5 })

	ts := `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}`
	want := regexp.MustCompile(`^` +
		`node1\(127\.0\.0\.1\) ` + ts + ` avocado\.service\.process DEBUG \| debug line\n` +
		`node1\(127\.0\.0\.1\) ` + ts + ` avocado\.service\.process INFO \| info line k=v\n` +
		`node1\(127\.0\.0\.1\) ` + ts + ` avocado\.service\.process WARNING \| warning line\n` +
		`node1\(127\.0\.0\.1\) ` + ts + ` avocado\.service\.process ERROR \| error line\n` +
		`    Traceback \(most recent call last\):\n` +
		`      File "/srv/svc\.py", line 3, in run\n` +
		`        boom\(\)\n` +
		`    RuntimeError: it broke\n` +
		`node1\(127\.0\.0\.1\) ` + ts + ` avocado\.service\.process CRITICAL \| critical line\n$`)
	out := f.out.String()
	if !want.MatchString(out) {
		t.Errorf("unified lines:\n%s", out)
	}
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, logframe.LevelCritical}
	recs := f.rec.Records()
	if len(recs) != len(levels) {
		t.Fatalf("logger got %d records, want %d", len(recs), len(levels))
	}
	for i, r := range recs {
		if r.Level != levels[i] || !strings.HasPrefix(r.Message, "node1(127.0.0.1) ") {
			t.Errorf("logger record %d: %v %q", i, r.Level, r.Message)
		}
	}
	if !strings.Contains(recs[3].Message, "\n    RuntimeError: it broke") {
		t.Errorf("traceback missing from the logged line: %q", recs[3].Message)
	}
	// The file is written under the lock that wrote Out, so it is complete.
	node, err := os.ReadFile(filepath.Join(f.dir, "node1", "node1.log"))
	if err != nil || string(node) != out {
		t.Errorf("node1.log (%v):\n%s", err, node)
	}
}

func TestLogServer_upstreamFixtures(t *testing.T) {
	f := startLogServer(t, nil)
	c := dialLogServer(t, f.port)
	var frames []byte
	for _, name := range []string{"basic.bin", "levels.bin", "exception.bin"} {
		frames = append(frames, fixtureBytes(t, name)...)
	}
	if _, err := c.Write(frames); err != nil {
		t.Fatal(err)
	}
	waitStats(t, f.srv, "8 records", func(st Stats) bool { return st.Records == 8 })
	lines := strings.Split(f.out.String(), "\n")
	for i, want := range []string{
		"Unknown(127.0.0.1) 2025-11-22 01:43:15,178 avocado.service.emit INFO | svc hello 5",
		"Unknown(127.0.0.1) 2025-11-22 01:43:15,178 avocado.service.demo DEBUG | level DEBUG",
		"Unknown(127.0.0.1) 2025-11-22 01:43:16,178 avocado.service.demo INFO | level INFO",
		"Unknown(127.0.0.1) 2025-11-22 01:43:17,178 avocado.service.demo WARNING | level WARNING",
		"Unknown(127.0.0.1) 2025-11-22 01:43:18,178 avocado.service.demo ERROR | level ERROR",
		"Unknown(127.0.0.1) 2025-11-22 01:43:19,178 avocado.service.demo CRITICAL | level CRITICAL",
		"Unknown(127.0.0.1) 2025-11-22 01:43:15,178 avocado.service.demo ERROR | plain failure",
		"    Traceback (most recent call last):",
		`      File "/srv/vt_agent/services/failing.py", line 17, in capture`,
		`      File "/srv/vt_agent/services/failing.py", line 5, in parse`,
		"    ValueError: invalid literal for int() with base 10: 'x'",
	} {
		if i >= len(lines) || lines[i] != want {
			t.Fatalf("line %d: got %q, want %q\n%s", i, lines[min(i, len(lines)-1)], want, f.out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "Unknown", "Unknown.log")); err != nil {
		t.Errorf("unregistered peer's file: %v", err)
	}
}

func TestLogServer_ServeConn_tagFromTunnel(t *testing.T) {
	f := startLogServer(t, nil)
	// A node's remote-forward listener: what it accepts comes from that node.
	tunnel, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tunnel.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		conn, err := tunnel.Accept()
		if err == nil {
			f.srv.ServeConn(conn, "vm-host")
		}
	}()
	s := newStreamer(t)
	if err := s.Start(t.Context(), "127.0.0.1", tunnel.Addr().(*net.TCPAddr).Port); err != nil {
		t.Fatal(err)
	}
	slog.New(s.Handler("avocado.service.core")).Warn("through the tunnel")
	waitStats(t, f.srv, "1 record", func(st Stats) bool { return st.Records == 1 })
	if out := f.out.String(); !regexp.MustCompile(`^vm-host\(127\.0\.0\.1\) \S+ \S+ avocado\.service\.core WARNING \| through the tunnel\n$`).MatchString(out) {
		t.Errorf("line %q", out)
	}
	data, err := os.ReadFile(filepath.Join(f.dir, "vm-host", "vm-host.log"))
	if err != nil || !strings.Contains(string(data), "through the tunnel") {
		t.Errorf("per-node file: %v %q", err, data)
	}
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	<-served // Close ended the ServeConn call
	if f.srv.Stats().Active != 0 {
		t.Errorf("active connections after Close: %d", f.srv.Stats().Active)
	}
}

func TestLogServer_RegisterNode(t *testing.T) {
	f := startLogServer(t, nil)
	if err := f.srv.RegisterNode("not-an-ip", "n1"); err == nil || !strings.HasPrefix(err.Error(), `cluster: log server: register node "n1": `) {
		t.Errorf("invalid IP: %v", err)
	}
	// An IPv4-mapped IPv6 form names the same peer.
	if err := f.srv.RegisterNode("::ffff:127.0.0.1", "mapped"); err != nil {
		t.Fatal(err)
	}
	c := dialLogServer(t, f.port)
	if err := logframe.EncodeFrame(c, &logframe.LogRecord{Name: "n", Levelname: "INFO", Levelno: 20, Msg: "hi", Asctime: "A"}); err != nil {
		t.Fatal(err)
	}
	waitStats(t, f.srv, "1 record", func(st Stats) bool { return st.Records == 1 })
	if out := f.out.String(); out != "mapped(127.0.0.1) A n INFO | hi\n" {
		t.Errorf("line %q", out)
	}
}

func TestLogServer_serve_partialFrames(t *testing.T) {
	f := startLogServer(t, nil)
	c := dialLogServer(t, f.port)
	frames := fixtureBytes(t, "levels.bin")
	for i := range frames { // one byte per write: headers and bodies split everywhere
		if _, err := c.Write(frames[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	waitStats(t, f.srv, "5 records", func(st Stats) bool { return st.Records == 5 })
	if n := strings.Count(f.out.String(), "avocado.service.demo"); n != 5 {
		t.Errorf("%d lines:\n%s", n, f.out.String())
	}
}

func TestLogServer_serve_peerClosesMidFrame(t *testing.T) {
	f := startLogServer(t, nil)
	frame := fixtureBytes(t, "basic.bin")
	for _, cut := range []int{2, 4, len(frame) / 2} {
		c := dialLogServer(t, f.port)
		if _, err := c.Write(frame[:cut]); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
	}
	st := waitStats(t, f.srv, "3 truncated connections gone", func(st Stats) bool {
		return st.Truncated == 3 && st.Active == 0
	})
	if st.Records != 0 {
		t.Errorf("records from truncated frames: %+v", st)
	}
	if !f.rec.Find(slog.LevelWarn, "connection ended inside a frame") {
		t.Error("no warning for a peer that vanished mid-frame")
	}
	// The server is still fine.
	c := dialLogServer(t, f.port)
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	waitStats(t, f.srv, "1 record", func(st Stats) bool { return st.Records == 1 })
}

func TestLogServer_serve_oversizeFrame(t *testing.T) {
	f := startLogServer(t, func(c *Config) { c.MaxFrame = 1024 })
	c := dialLogServer(t, f.port)
	if _, err := c.Write(binary.BigEndian.AppendUint32(nil, 1<<30)); err != nil {
		t.Fatal(err)
	}
	// The server hangs up: our read ends instead of waiting.
	_ = c.SetReadDeadline(time.Now().Add(logSrvGuard))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after an oversize frame: %d, %v; want EOF", n, err)
	}
	waitStats(t, f.srv, "oversize counted", func(st Stats) bool { return st.Oversize == 1 && st.Active == 0 })
	if !f.rec.Find(slog.LevelWarn, "frame too large") {
		t.Error("no warning for the oversize frame")
	}
}

func TestLogServer_serve_invalidJSONSkipped(t *testing.T) {
	f := startLogServer(t, nil)
	c := dialLogServer(t, f.port)
	var stream []byte
	for _, body := range []string{"{nope", "", `["a list"]`, `{"lineno": "x"}`} {
		stream = binary.BigEndian.AppendUint32(stream, uint32(len(body)))
		stream = append(stream, body...)
	}
	stream = append(stream, fixtureBytes(t, "basic.bin")...)
	if _, err := c.Write(stream); err != nil {
		t.Fatal(err)
	}
	st := waitStats(t, f.srv, "the record after 4 bad frames", func(st Stats) bool { return st.Records == 1 })
	if st.Invalid != 4 || st.Active != 1 {
		t.Errorf("stats %+v, want 4 invalid frames and the connection still open", st)
	}
	if !strings.HasSuffix(f.out.String(), "| svc hello 5\n") {
		t.Errorf("out %q", f.out.String())
	}
	if !f.rec.Find(slog.LevelWarn, "not a log record") {
		t.Error("no warning for invalid frames")
	}
}

func TestLogServer_Close_withPeersConnected(t *testing.T) {
	f := startLogServer(t, nil)
	var peers []net.Conn
	for range 3 {
		peers = append(peers, dialLogServer(t, f.port))
	}
	// A peer that is mid-frame when the server closes.
	if _, err := peers[2].Write([]byte{0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	waitStats(t, f.srv, "3 active connections", func(st Stats) bool { return st.Active == 3 })
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if st := f.srv.Stats(); st.Active != 0 {
		t.Errorf("active after Close: %+v", st)
	}
	testutil.NoGoroutinesLeft(t, logSrvGuard, "logserver.(*Server).")
	for i, p := range peers {
		_ = p.SetReadDeadline(time.Now().Add(logSrvGuard))
		// A reset is fine too: the kernel sends one if the server had not
		// read the half frame yet.
		if _, err := p.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("peer %d read: %v, want the connection closed", i, err)
		}
	}
	if c, err := net.DialTimeout("tcp", f.srv.Addr().String(), logSrvGuard); err == nil {
		_ = c.Close()
		t.Error("the listener still accepts after Close")
	}
	if err := f.srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := f.srv.Start(t.Context()); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestLogServer_Start_contextEndsServer(t *testing.T) {
	srv, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	cancel()
	srv.wg.Wait() // the context's Close has closed the listener
	if c, err := net.DialTimeout("tcp", srv.Addr().String(), logSrvGuard); err == nil {
		_ = c.Close()
		t.Error("the listener still accepts after the context ended")
	}
	if err := srv.Close(); err != nil {
		t.Error(err)
	}
	testutil.NoGoroutinesLeft(t, logSrvGuard, "logserver.(*Server).")
}

func TestLogServer_streamerReconnectsAfterRestart(t *testing.T) {
	first := startLogServer(t, nil)
	port := first.port
	s := newStreamer(t)
	if err := s.Start(t.Context(), "127.0.0.1", port); err != nil {
		t.Fatal(err)
	}
	log := slog.New(s.Handler("avocado.service.core"))
	log.Info("before restart")
	waitStats(t, first.srv, "1 record", func(st Stats) bool { return st.Records == 1 })
	if err := first.srv.Close(); err != nil {
		t.Fatal(err)
	}

	second := startLogServer(t, func(c *Config) { c.Addr = "127.0.0.1:" + strconv.Itoa(port) })
	waitStats(t, second.srv, "the streamer to reconnect", func(st Stats) bool { return st.Active == 1 })
	log.Info("after restart")
	waitStats(t, second.srv, "1 record", func(st Stats) bool { return st.Records == 1 })
	if out := second.out.String(); !strings.HasSuffix(out, "| after restart\n") {
		t.Errorf("second server got %q", out)
	}
}

// dialLogServerFrom connects from a loopback address of its own, so that
// RegisterNode can tell peers apart.
func dialLogServerFrom(tb testing.TB, port int, from string) net.Conn {
	tb.Helper()
	d := net.Dialer{Timeout: logSrvGuard, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// numberedFrames is n frames whose messages read "c=<conn> n=<i>".
func numberedFrames(conn, n int) []byte {
	var b []byte
	for i := range n {
		b = logframe.AppendFrame(b, &logframe.LogRecord{
			Name: "avocado.service.batch", Levelno: 20, Levelname: "INFO", Asctime: "T",
			Msg: fmt.Sprintf("c=%d n=%d %s", conn, i, strings.Repeat("x", 200)),
		})
	}
	return b
}

func TestLogServer_serve_batchesWholeLinesPerNode(t *testing.T) {
	f := startLogServer(t, nil)
	for ip, tag := range map[string]string{"127.0.0.2": "n2", "127.0.0.3": "n3"} {
		if err := f.srv.RegisterNode(ip, tag); err != nil {
			t.Fatal(err)
		}
	}
	// Two peers share node n2's file; each sends enough for several batches.
	froms := []string{"127.0.0.2", "127.0.0.2", "127.0.0.3"}
	const perConn = 2000
	var wg sync.WaitGroup
	for i, from := range froms {
		c := dialLogServerFrom(t, f.port, from)
		wg.Go(func() {
			if _, err := c.Write(numberedFrames(i, perConn)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitStats(t, f.srv, "every record", func(st Stats) bool { return st.Records == uint64(len(froms)*perConn) })

	line := regexp.MustCompile(`^(n2|n3)\((127\.0\.0\.[23])\) T avocado\.service\.batch INFO \| c=(\d) n=(\d+) x{200}$`)
	next := make([]int, len(froms))
	byTag := map[string][]string{}
	for l := range strings.Lines(f.out.String()) {
		m := line.FindStringSubmatch(strings.TrimSuffix(l, "\n"))
		if m == nil {
			t.Fatalf("not a whole line: %q", l)
		}
		c, _ := strconv.Atoi(m[3])
		n, _ := strconv.Atoi(m[4])
		if m[2] != froms[c] || n != next[c] {
			t.Fatalf("line %q: want connection %d's record %d from %s", l, c, next[c], froms[c])
		}
		next[c]++
		byTag[m[1]] = append(byTag[m[1]], l)
	}
	for c, n := range next {
		if n != perConn {
			t.Errorf("connection %d: %d lines, want %d", c, n, perConn)
		}
	}
	// A node's file holds its lines whole and in the order Out got them.
	for _, tag := range []string{"n2", "n3"} {
		data, err := os.ReadFile(filepath.Join(f.dir, tag, tag+".log"))
		if err != nil || string(data) != strings.Join(byTag[tag], "") {
			t.Errorf("%s.log (%v): %d bytes, want the %d lines Out has for it", tag, err, len(data), len(byTag[tag]))
		}
	}
}

func TestLogServer_RegisterNode_retagsOpenConnection(t *testing.T) {
	f := startLogServer(t, nil)
	c := dialLogServer(t, f.port)
	for i, tag := range []string{"", "first", "second"} {
		if tag != "" {
			if err := f.srv.RegisterNode("127.0.0.1", tag); err != nil {
				t.Fatal(err)
			}
		}
		if err := logframe.EncodeFrame(c, &logframe.LogRecord{Name: "n", Levelname: "INFO", Asctime: "A", Msg: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		waitStats(t, f.srv, "the record", func(st Stats) bool { return st.Records == uint64(i+1) })
	}
	want := "Unknown(127.0.0.1) A n INFO | 0\nfirst(127.0.0.1) A n INFO | 1\nsecond(127.0.0.1) A n INFO | 2\n"
	if out := f.out.String(); out != want {
		t.Errorf("lines:\n%s\nwant:\n%s", out, want)
	}
}

func TestLogServer_Close_writesWhatWasRead(t *testing.T) {
	// The first record holds its connection's reader until Close has hung
	// up on the peer; whatever the server had read by then must still be
	// written, whole, to Out and the node file.
	var handed atomic.Int64
	first, release := make(chan struct{}), make(chan struct{})
	f := startLogServer(t, func(c *Config) {
		c.OnRecord = func(string, string, *logframe.LogRecord) {
			if handed.Add(1) == 1 {
				close(first)
				<-release
			}
		}
	})
	c := dialLogServer(t, f.port)
	if _, err := c.Write(numberedFrames(0, 100)); err != nil {
		t.Fatal(err)
	}
	<-first
	closed := make(chan error, 1)
	go func() { closed <- f.srv.Close() }()
	_ = c.SetReadDeadline(time.Now().Add(logSrvGuard))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("peer read: %v, want the connection closed", err)
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	out := f.out.String()
	st := f.srv.Stats()
	lines := strings.Count(out, "\n")
	if uint64(lines) != st.Records || int64(lines) != handed.Load() || !strings.HasSuffix(out, strings.Repeat("x", 200)+"\n") {
		t.Errorf("%d records handed to OnRecord, %d counted, %d lines written (ends %q)", handed.Load(), st.Records, lines, out[max(0, len(out)-20):])
	}
	t.Logf("%d of 100 records had been read before Close", lines)
	if data, err := os.ReadFile(filepath.Join(f.dir, "Unknown", "Unknown.log")); err != nil || string(data) != out {
		t.Errorf("Unknown.log (%v) differs from Out", err)
	}
}

func TestNewLogServer_invalid(t *testing.T) {
	for _, cfg := range []Config{
		{Addr: "127.0.0.1:99999"},
		{Addr: "no-such-host.invalid:0"},
		{Addr: "127.0.0.1:0", MaxFrame: -1},
	} {
		srv, err := New(cfg)
		if err == nil {
			_ = srv.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		} else if !strings.HasPrefix(err.Error(), "cluster: log server: ") {
			t.Errorf("error %q lacks the package prefix", err)
		}
	}
}

func TestSafeFileName(t *testing.T) {
	for in, want := range map[string]string{
		"node1": "node1", "../evil": ".._evil", "..": "__", ".": "_", "": "_",
		"a/b\\c d": "a_b_c_d", "vm-host_2.lab": "vm-host_2.lab", "nöde": "n__de",
	} {
		if got := safeFileName(in); got != want {
			t.Errorf("safeFileName(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkLogServer_Ingest measures records/s through one loopback
// connection, and checks that every record sent was received.
func BenchmarkLogServer_Ingest(b *testing.B) {
	rec := &logframe.LogRecord{
		Name: "avocado.service.process", Levelno: 20, Levelname: "INFO",
		Pathname: "/usr/lib/vtcluster/agent/svc_process.go", Filename: "svc_process.go", Module: "svc_process",
		Lineno: 120, FuncName: "(*processService).run", Created: 1763775795.1784096,
		Asctime: "2025-11-22 01:43:15,178", Thread: 4242, ThreadName: "MainThread", Process: 4242,
		Msg: "process exited argv=\"[qemu-img info /var/lib/images/disk.qcow2]\" exit_code=0 duration=0.013",
	}
	frame := logframe.AppendFrame(nil, rec)
	raw := func(b *testing.B, mutate func(*Config)) {
		f := startLogServer(b, func(c *Config) {
			c.Logger, c.Out, c.NodeDir = nil, io.Discard, nil
			if mutate != nil {
				mutate(c)
			}
		})
		c := dialLogServer(b, f.port)
		w := bufio.NewWriterSize(c, 256<<10)
		b.SetBytes(int64(len(frame)))
		b.ResetTimer()
		for range b.N {
			if _, err := w.Write(frame); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		waitStats(b, f.srv, "every record", func(st Stats) bool { return st.Records == uint64(b.N) })
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	}
	b.Run("raw", func(b *testing.B) { raw(b, nil) })
	// As "vtcluster logs serve --dir" runs: every line to a file and to
	// the node's own file.
	b.Run("raw-files", func(b *testing.B) {
		dir := b.TempDir()
		out, err := os.Create(filepath.Join(dir, "out.log"))
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		raw(b, func(c *Config) {
			c.Out = out
			c.NodeDir = func(string) string { return dir }
		})
	})
	b.Run("streamer", func(b *testing.B) {
		f := startLogServer(b, func(c *Config) {
			c.Logger, c.Out, c.NodeDir = nil, io.Discard, nil
		})
		cfg := agent.DefaultLogStreamerConfig(filepath.Join(b.TempDir(), "service.log"))
		cfg.BufferRecords = b.N + 1 // measure throughput, not the drop policy
		cfg.BufferBytes = 1 << 40
		s, err := agent.NewLogStreamerWithConfig(cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if err := s.Start(b.Context(), "127.0.0.1", f.port); err != nil {
			b.Fatal(err)
		}
		log := slog.New(s.Handler("avocado.service.process"))
		b.ResetTimer()
		for i := range b.N {
			log.Info("process exited", "i", i)
		}
		waitStats(b, f.srv, "every record", func(st Stats) bool { return st.Records == uint64(b.N) })
		b.StopTimer()
		if _, dropped := s.Stats(); dropped != 0 {
			b.Fatalf("%d records dropped", dropped)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
}

// Lookup names an unregistered sender per connection: a miss is asked
// again by the next connection, a hit is kept.
func TestLogServer_Lookup_perConnectionAndCached(t *testing.T) {
	var calls atomic.Int32
	var known atomic.Bool
	f := startLogServer(t, func(cfg *Config) {
		cfg.Lookup = func(ip string) (string, bool) {
			calls.Add(1)
			return "late", known.Load() && ip == "127.0.0.1"
		}
	})
	send := func(i int) {
		c := dialLogServer(t, f.port)
		if err := logframe.EncodeFrame(c, &logframe.LogRecord{Name: "n", Levelname: "INFO", Asctime: "A", Msg: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		waitStats(t, f.srv, "the record", func(st Stats) bool { return st.Records == uint64(i+1) })
		c.Close()
	}
	send(0)
	known.Store(true) // "node add" after the server started
	send(1)
	send(2)
	want := "Unknown(127.0.0.1) A n INFO | 0\nlate(127.0.0.1) A n INFO | 1\nlate(127.0.0.1) A n INFO | 2\n"
	if out := f.out.String(); out != want {
		t.Errorf("lines:\n%s\nwant:\n%s", out, want)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("lookup called %d times, want 2 (the miss, then the hit, which is kept)", n)
	}
}

// ControllerHalf prefixes the written lines with upstream's controller half
// at the record's level; the Logger still gets the worker half alone.
func TestLogServer_ControllerHalf(t *testing.T) {
	f := startLogServer(t, func(cfg *Config) { cfg.ControllerHalf = true })
	if err := f.srv.RegisterNode("127.0.0.1", "n1"); err != nil {
		t.Fatal(err)
	}
	c := dialLogServer(t, f.port)
	if err := logframe.EncodeFrame(c, &logframe.LogRecord{Name: "avocado.service.x", Levelno: 30, Levelname: "WARNING", Asctime: "2026-12-01 10:00:00,001", Msg: "careful"}); err != nil {
		t.Fatal(err)
	}
	waitStats(t, f.srv, "the record", func(st Stats) bool { return st.Records == 1 })
	line := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} logserver L\d{4} WARNING \| n1\(127\.0\.0\.1\) 2026-12-01 10:00:00,001 avocado\.service\.x WARNING \| careful\n$`)
	if out := f.out.String(); !line.MatchString(out) {
		t.Errorf("line %q does not match %s", out, line)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, "n1", "n1.log"))
	if err != nil || !line.Match(b) {
		t.Errorf("node file: %v %q", err, b)
	}
	if !f.rec.Find(slog.LevelWarn, "n1(127.0.0.1) 2026-12-01 10:00:00,001 avocado.service.x WARNING | careful") ||
		f.rec.Find(slog.LevelWarn, "logserver L") {
		t.Errorf("logger records: %v", f.rec.Records())
	}
}

func TestUnifiedLine_noFieldStartsALineOfItsOwn(t *testing.T) {
	rec := &logframe.LogRecord{
		Name:      "svc\nnode9(1.2.3.4) x",
		Levelname: "INFO\r",
		Asctime:   "2026-12-01 00:00:00,000",
		Msg:       "hello\nnode9(10.9.9.9) 2026-12-01 00:00:00,000 avocado.service.core ERROR | fake\rnode8 \x1b[2K\u2028\u0085\x85\xff end\n",
		ExcInfo:   []string{"Traceback:\n", "  boom\r\n"},
	}
	got := UnifiedLine("a\n", "10.0.0.1\n", rec)
	want := `a\n(10.0.0.1\n) 2026-12-01 00:00:00,000 svc\nnode9(1.2.3.4) x INFO\r | hello` +
		"\n    " + `node9(10.9.9.9) 2026-12-01 00:00:00,000 avocado.service.core ERROR | fake\rnode8 \x1b[2K\u2028\u0085\x85\xff end` +
		"\n    Traceback:\n      boom\\r"
	if got != want {
		t.Errorf("UnifiedLine =\n%q\nwant\n%q", got, want)
	}
	for i, line := range strings.Split(got, "\n") {
		if i > 0 && !strings.HasPrefix(line, "    ") {
			t.Errorf("line %d %q is not a continuation", i, line)
		}
	}
}

func TestLogServer_serve_forgedLinesIndented(t *testing.T) {
	f := startLogServer(t, nil)
	if err := f.srv.RegisterNode("127.0.0.1", "node1"); err != nil {
		t.Fatal(err)
	}
	c := dialLogServer(t, f.port)
	rec := &logframe.LogRecord{Name: "avocado.service.core", Levelno: 20, Levelname: "INFO", Asctime: "2026-12-01 00:00:00,000",
		Msg: "ok\nnode2(10.0.0.3) 2026-12-01 00:00:00,000 avocado.service.core ERROR | fake failure"}
	if err := logframe.EncodeFrame(c, rec); err != nil {
		t.Fatal(err)
	}
	waitStats(t, f.srv, "1 record", func(st Stats) bool { return st.Records == 1 })
	want := "node1(127.0.0.1) 2026-12-01 00:00:00,000 avocado.service.core INFO | ok\n" +
		"    node2(10.0.0.3) 2026-12-01 00:00:00,000 avocado.service.core ERROR | fake failure\n"
	if got := f.out.String(); got != want {
		t.Errorf("out %q, want %q", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(f.dir, "node1", "node1.log")); string(b) != want {
		t.Errorf("node file %q, want %q", b, want)
	}
}

func TestLogServer_connectionCap(t *testing.T) {
	f := startLogServer(t, func(c *Config) { c.MaxConns = 2 })
	held := []net.Conn{dialLogServer(t, f.port), dialLogServer(t, f.port)}
	waitStats(t, f.srv, "2 active", func(st Stats) bool { return st.Active == 2 })
	for range 5 {
		c := dialLogServer(t, f.port)
		_ = c.SetReadDeadline(time.Now().Add(logSrvGuard))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("read on a connection over the cap: %d, %v; want EOF", n, err)
		}
	}
	st := waitStats(t, f.srv, "5 refused", func(st Stats) bool { return st.Refused == 5 })
	if st.Active != 2 {
		t.Errorf("stats %+v: want the 2 first still served", st)
	}
	// One warning for the burst, not one per refused peer.
	n := 0
	for _, r := range f.rec.Records() {
		if strings.Contains(r.Message, "too many open") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d warnings for 5 refused connections within %v, want 1", n, warnEvery)
	}
	// The held connections still deliver.
	if err := logframe.EncodeFrame(held[1], &logframe.LogRecord{Name: "svc", Levelno: 20, Levelname: "INFO", Msg: "still here"}); err != nil {
		t.Fatal(err)
	}
	waitStats(t, f.srv, "1 record", func(st Stats) bool { return st.Records == 1 })
}

func TestLogServer_frameTimeoutClosesPartialFramesOnly(t *testing.T) {
	f := startLogServer(t, func(c *Config) { c.FrameTimeout = 300 * time.Millisecond })
	idle := dialLogServer(t, f.port)
	partial := dialLogServer(t, f.port)
	// A frame's header and part of its body, then nothing.
	if _, err := partial.Write(append(binary.BigEndian.AppendUint32(nil, 1000), "{\"msg\": "...)); err != nil {
		t.Fatal(err)
	}
	_ = partial.SetReadDeadline(time.Now().Add(logSrvGuard))
	if n, err := partial.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read on a peer holding a partial frame: %d, %v; want EOF", n, err)
	}
	waitStats(t, f.srv, "1 timed out", func(st Stats) bool { return st.TimedOut == 1 && st.Active == 1 })
	// The idle peer, an agent with nothing to log, stays through several
	// timeouts and still delivers.
	time.Sleep(1 * time.Second)
	if err := logframe.EncodeFrame(idle, &logframe.LogRecord{Name: "svc", Levelno: 20, Levelname: "INFO", Msg: "after a pause"}); err != nil {
		t.Fatal(err)
	}
	st := waitStats(t, f.srv, "1 record", func(st Stats) bool { return st.Records == 1 })
	if st.TimedOut != 1 {
		t.Errorf("stats %+v: the idle peer was timed out", st)
	}
}

func TestLogServer_invalidFrameWarningsRateLimited(t *testing.T) {
	f := startLogServer(t, nil)
	c := dialLogServer(t, f.port)
	stream := make([]byte, 0, 4*10000)
	for range 10000 {
		stream = binary.BigEndian.AppendUint32(stream, 0) // zero-length frames
	}
	if _, err := c.Write(stream); err != nil {
		t.Fatal(err)
	}
	waitStats(t, f.srv, "10000 invalid", func(st Stats) bool { return st.Invalid == 10000 })
	n := 0
	for _, r := range f.rec.Records() {
		if strings.Contains(r.Message, "not a log record") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d warnings for 10000 invalid frames, want 1", n)
	}
}

func TestLogServer_NoListener(t *testing.T) {
	out := &testutil.SyncBuffer{}
	cfg := DefaultConfig()
	cfg.NoListener = true
	cfg.Out = out
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if a := srv.Addr(); a != nil {
		t.Fatalf("Addr() = %v, want nil without a listener", a)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	go srv.ServeConn(a, "node1")
	go func() {
		_ = logframe.EncodeFrame(b, &logframe.LogRecord{Name: "svc", Levelno: 20, Levelname: "INFO", Msg: "through the forward"})
		b.Close()
	}()
	waitStats(t, srv, "1 record", func(st Stats) bool { return st.Records == 1 })
	if o := out.String(); !strings.HasPrefix(o, "node1(") || !strings.HasSuffix(o, " svc INFO | through the forward\n") {
		t.Errorf("out %q", out.String())
	}
}

func TestLogSafe(t *testing.T) {
	got := LogSafe("collect: a\nnode9(x) ERROR | fake\r\x00\u2029")
	if want := "collect: a\n    node9(x) ERROR | fake\\r\\x00\\u2029"; got != want {
		t.Errorf("LogSafe = %q, want %q", got, want)
	}
}
