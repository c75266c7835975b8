package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent/logframe"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

var updateLogframes = flag.Bool("update-logframes", false, "rewrite testdata/logframes/go_streamer.bin from a live LogStreamer")

// hangGuard bounds waits that only end early when the test fails; the tests
// assert on what arrives, never on how fast.
const hangGuard = 30 * time.Second

// testStreamerConfig is the default with short waits, so a test that stops
// a streamer facing a dead server does not sit out production timeouts.
const logframesDir = "../testdata/logframes"

func testStreamerConfig(tb testing.TB) LogStreamerConfig {
	tb.Helper()
	cfg := DefaultLogStreamerConfig(filepath.Join(tb.TempDir(), "service.log"))
	cfg.MinBackoff = 10 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	cfg.FlushTimeout = 2 * time.Second
	return cfg
}

func newTestStreamer(tb testing.TB, cfg LogStreamerConfig) *LogStreamer {
	tb.Helper()
	s, err := NewLogStreamerWithConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
		testutil.NoGoroutinesLeft(tb, hangGuard, "agent.(*LogStreamer).")
	})
	return s
}

// frameSink is a real TCP log receiver for the tests: it accepts
// connections and decodes their frames with ReadFrame.
type frameSink struct {
	ln      net.Listener
	records chan *logframe.LogRecord
	raw     chan []byte   // each frame as received, header included
	conns   chan net.Conn // every accepted connection
	ended   chan error    // one per connection, when it ends
	mu      sync.Mutex
	live    []net.Conn
	wg      sync.WaitGroup
}

func newFrameSink(tb testing.TB, addr string) *frameSink {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	k := &frameSink{
		ln:      ln,
		records: make(chan *logframe.LogRecord, 100000),
		raw:     make(chan []byte, 100000),
		conns:   make(chan net.Conn, 100),
		ended:   make(chan error, 100),
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			k.mu.Lock()
			k.live = append(k.live, c)
			k.mu.Unlock()
			k.conns <- c
			k.wg.Add(1)
			go k.read(c)
		}
	}()
	tb.Cleanup(k.Close)
	return k
}

func (k *frameSink) read(c net.Conn) {
	defer k.wg.Done()
	br := bufio.NewReader(c)
	for {
		rec, body, err := logframe.ReadFrame(br, 0)
		if err != nil {
			k.ended <- err
			return
		}
		k.records <- rec
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		k.raw <- append(frame, body...)
	}
}

func (k *frameSink) port() int { return k.ln.Addr().(*net.TCPAddr).Port }

func (k *frameSink) Close() {
	_ = k.ln.Close()
	k.mu.Lock()
	for _, c := range k.live {
		_ = c.Close()
	}
	k.mu.Unlock()
	k.wg.Wait()
}

func (k *frameSink) next(tb testing.TB) *logframe.LogRecord {
	tb.Helper()
	select {
	case r := <-k.records:
		return r
	case <-time.After(hangGuard):
		tb.Fatal("no log record arrived")
		return nil
	}
}

func (k *frameSink) nextConn(tb testing.TB) net.Conn {
	tb.Helper()
	select {
	case c := <-k.conns:
		return c
	case <-time.After(hangGuard):
		tb.Fatal("the streamer never connected")
		return nil
	}
}

// freePort returns a loopback port with nothing listening on it.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return port
}

var sampleTraceback = []string{
	"Traceback (most recent call last):\n",
	"  File \"x.py\", line 1, in <module>\n",
	"ValueError: bad\n",
}

// logSamples logs the records that the Python reader test and the golden
// capture expect, one per level plus a grouped one; it returns their count.
func logSamples(s *LogStreamer) int {
	svc := slog.New(s.Handler("avocado.service.process"))
	svc.Debug("debug detail", "pid", 42)
	svc.Info("started process", "argv", []string{"sleep", "1"})
	svc.Warn("unicode \u00e9 \u4e2d\u6587 \U0001F600 \"quoted\" \\ back\tslash")
	svc.Error("command failed", "err", sampleTraceback)
	svc.Log(context.Background(), logframe.LevelCritical, "critical state")
	slog.New(s.Handler("avocado.virttest.qemu")).WithGroup("vm").Info("booted", "name", "vm1")
	return 6
}

func TestLogStreamer_Start_forwardsRecords(t *testing.T) {
	sink := newFrameSink(t, "127.0.0.1:0")
	s := newTestStreamer(t, testStreamerConfig(t))
	if err := s.Start(t.Context(), "127.0.0.1", sink.port()); err != nil {
		t.Fatal(err)
	}
	n := logSamples(s)
	var got []*logframe.LogRecord
	for range n {
		got = append(got, sink.next(t))
	}
	wantLevels := []string{"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "INFO"}
	for i, r := range got {
		if r.Levelname != wantLevels[i] {
			t.Errorf("record %d: level %s, want %s", i, r.Levelname, wantLevels[i])
		}
		if r.Filename != "logstream_test.go" || r.Module != "logstream_test" || r.FuncName != "logSamples" || r.Lineno == 0 {
			t.Errorf("record %d: call site %s %s %s:%d", i, r.Pathname, r.Module, r.FuncName, r.Lineno)
		}
		if r.Process != int64(os.Getpid()) || r.ThreadName != "MainThread" {
			t.Errorf("record %d: process %d thread %q", i, r.Process, r.ThreadName)
		}
		if at, err := time.ParseInLocation("2006-01-02 15:04:05,000", r.Asctime, time.Local); err != nil || at.Unix() != int64(r.Created) {
			t.Errorf("record %d: asctime %q does not match created %v (%v)", i, r.Asctime, r.Created, err)
		}
	}
	if got[0].Msg != "debug detail pid=42" || got[1].Msg != `started process argv="[sleep 1]"` || got[5].Msg != "booted vm.name=vm1" {
		t.Errorf("messages: %q %q %q", got[0].Msg, got[1].Msg, got[5].Msg)
	}
	if !reflect.DeepEqual(got[3].ExcInfo, sampleTraceback) || got[3].Msg != "command failed" {
		t.Errorf("traceback record: %q %q", got[3].Msg, got[3].ExcInfo)
	}
	if got[5].Name != "avocado.virttest.qemu" {
		t.Errorf("logger name %q", got[5].Name)
	}
	// Stop waits for the sender, which counts a write only after the
	// peer may already have read it.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if sent, dropped := s.Stats(); sent != uint64(n) || dropped != 0 {
		t.Errorf("stats sent %d dropped %d, want %d 0", sent, dropped, n)
	}
}

func TestLogStreamer_Handler_serviceLog(t *testing.T) {
	cfg := testStreamerConfig(t)
	s := newTestStreamer(t, cfg)
	logSamples(s) // not started: service.log only
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(cfg.ServiceLogPath)
	if err != nil {
		t.Fatal(err)
	}
	ts := `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}`
	want := regexp.MustCompile(`^` +
		ts + ` avocado\.service\.process DEBUG\| debug detail pid=42\n` +
		ts + ` avocado\.service\.process INFO \| started process argv="\[sleep 1\]"\n` +
		ts + ` avocado\.service\.process WARNI\| unicode é 中文 😀 "quoted" \\ back\tslash\n` +
		ts + ` avocado\.service\.process ERROR\| command failed\n` +
		`Traceback \(most recent call last\):\n  File "x\.py", line 1, in <module>\nValueError: bad\n` +
		ts + ` avocado\.service\.process CRITI\| critical state\n` +
		ts + ` avocado\.virttest\.qemu INFO \| booted vm\.name=vm1\n$`)
	if !want.Match(data) {
		t.Errorf("service.log:\n%s", data)
	}
	if sent, dropped := s.Stats(); sent != 0 || dropped != 0 {
		t.Errorf("stats without Start: %d %d", sent, dropped)
	}
	if err := s.Handler("x").Handle(t.Context(), slog.NewRecord(time.Now(), slog.LevelInfo, "late", 0)); !errors.Is(err, ErrStreamerClosed) {
		t.Errorf("Handle after Close: %v", err)
	}
	if err := s.Start(t.Context(), "127.0.0.1", 1); !errors.Is(err, ErrStreamerClosed) {
		t.Errorf("Start after Close: %v", err)
	}
}

func TestLogStreamer_Start_invalidTarget(t *testing.T) {
	s := newTestStreamer(t, testStreamerConfig(t))
	for _, tc := range []struct {
		host string
		port int
	}{
		{"", 8888}, {"a;b", 8888}, {"a&b", 1}, {"a|b", 1}, {"`id`", 1}, {"$(id)", 1},
		{"a b", 1}, {"host\n", 1}, {"127.0.0.1", 0}, {"127.0.0.1", -1}, {"127.0.0.1", 65536},
	} {
		err := s.Start(t.Context(), tc.host, tc.port)
		if !errors.Is(err, ErrInvalidLogTarget) {
			t.Errorf("Start(%q, %d): %v, want ErrInvalidLogTarget", tc.host, tc.port, err)
		}
	}
	for _, host := range []string{"localhost", "192.168.122.1", "::1", "node-1.example.com"} {
		if err := ValidateLogTarget(host, 65535); err != nil {
			t.Errorf("ValidateLogTarget(%q): %v", host, err)
		}
	}
}

func TestLogStreamer_Start_twiceClosesPreviousConnection(t *testing.T) {
	first := newFrameSink(t, "127.0.0.1:0")
	second := newFrameSink(t, "127.0.0.1:0")
	s := newTestStreamer(t, testStreamerConfig(t))
	log := slog.New(s.Handler("avocado.service.core"))

	if err := s.Start(t.Context(), "127.0.0.1", first.port()); err != nil {
		t.Fatal(err)
	}
	log.Info("one")
	if r := first.next(t); r.Msg != "one" {
		t.Fatalf("first target got %q", r.Msg)
	}
	for range 2 { // a new target, then the same one again
		if err := s.Start(t.Context(), "127.0.0.1", second.port()); err != nil {
			t.Fatal(err)
		}
		second.nextConn(t)
	}
	// Each replaced connection is closed: its reader sees a clean end.
	for range 2 {
		select {
		case err := <-first.ended:
			if err != io.EOF {
				t.Errorf("first connection ended with %v, want a clean EOF", err)
			}
		case err := <-second.ended:
			if err != io.EOF {
				t.Errorf("replaced connection ended with %v, want a clean EOF", err)
			}
		case <-time.After(hangGuard):
			t.Fatal("a replaced connection was never closed")
		}
	}
	log.Info("two")
	if r := second.next(t); r.Msg != "two" {
		t.Fatalf("second target got %q", r.Msg)
	}
	select {
	case r := <-first.records:
		t.Errorf("old target still got %q", r.Msg)
	default:
	}
}

func TestLogStreamer_Handle_neverBlocksWithoutServer(t *testing.T) {
	cfg := testStreamerConfig(t)
	cfg.BufferRecords = 10
	s := newTestStreamer(t, cfg)
	if err := s.Start(t.Context(), "127.0.0.1", freePort(t)); err != nil {
		t.Fatal(err)
	}
	h := s.Handler("avocado.service.process")
	for i := range 1000 {
		if err := h.Handle(t.Context(), slog.NewRecord(time.Now(), slog.LevelInfo, "record "+strconv.Itoa(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, dropped := s.Stats(); dropped < 990 {
		t.Errorf("dropped %d, want at least 990 with a 10-record buffer", dropped)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if sent, dropped := s.Stats(); sent != 0 || dropped != 1000 {
		t.Errorf("after Stop: sent %d dropped %d, want 0 1000", sent, dropped)
	}
}

func TestLogStreamer_Handle_neverBlocksOnStalledServer(t *testing.T) {
	// A server that accepts and never reads: the socket buffers fill up and
	// the sender's writes block, but logging must not.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		select {
		case c := <-accepted:
			_ = c.Close()
		default:
		}
	})
	cfg := testStreamerConfig(t)
	cfg.BufferRecords = 100
	cfg.FlushTimeout = 200 * time.Millisecond
	s := newTestStreamer(t, cfg)
	if err := s.Start(t.Context(), "127.0.0.1", ln.Addr().(*net.TCPAddr).Port); err != nil {
		t.Fatal(err)
	}
	log := slog.New(s.Handler("avocado.service.process"))
	big := strings.Repeat("x", 8192)
	for range 4000 { // 32 MB: far beyond the loopback socket buffers
		log.Info(big)
	}
	if _, dropped := s.Stats(); dropped == 0 {
		t.Error("nothing dropped although the server never read")
	}
	if err := s.Stop(); err != nil { // gives up after FlushTimeout
		t.Fatal(err)
	}
	if sent, dropped := s.Stats(); sent+dropped != 4000 {
		t.Errorf("sent %d + dropped %d != 4000 records logged", sent, dropped)
	}
}

func TestLogStreamer_Start_reportsDrops(t *testing.T) {
	cfg := testStreamerConfig(t)
	cfg.BufferRecords = 10
	s := newTestStreamer(t, cfg)
	if err := s.Start(t.Context(), "127.0.0.1", freePort(t)); err != nil {
		t.Fatal(err)
	}
	log := slog.New(s.Handler("avocado.service.process"))
	for i := range 50 {
		log.Info("queued", "i", i)
	}
	// The controller comes back (as a new target): the queued records follow
	// a warning that counts the lost ones.
	sink := newFrameSink(t, "127.0.0.1:0")
	if err := s.Start(t.Context(), "127.0.0.1", sink.port()); err != nil {
		t.Fatal(err)
	}
	warn := sink.next(t)
	if warn.Levelname != "WARNING" || warn.Msg != "40 log records dropped" || warn.Name != dropLoggerName {
		t.Errorf("first record %s %s %q, want the drop warning", warn.Name, warn.Levelname, warn.Msg)
	}
	for i := 40; i < 50; i++ {
		if r := sink.next(t); r.Msg != "queued i="+strconv.Itoa(i) {
			t.Errorf("got %q, want record %d", r.Msg, i)
		}
	}
	// Stop waits for the sender, which counts a write only after the
	// peer may already have read it.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if sent, dropped := s.Stats(); sent != 10 || dropped != 40 {
		t.Errorf("stats sent %d dropped %d, want 10 40", sent, dropped)
	}
}

func TestLogStreamer_reconnectsAfterServerRestart(t *testing.T) {
	sink := newFrameSink(t, "127.0.0.1:0")
	port := sink.port()
	s := newTestStreamer(t, testStreamerConfig(t))
	if err := s.Start(t.Context(), "127.0.0.1", port); err != nil {
		t.Fatal(err)
	}
	log := slog.New(s.Handler("avocado.service.core"))
	log.Info("before")
	sink.nextConn(t)
	if r := sink.next(t); r.Msg != "before" {
		t.Fatalf("got %q", r.Msg)
	}
	sink.Close()

	restarted := newFrameSink(t, "127.0.0.1:"+strconv.Itoa(port))
	restarted.nextConn(t) // the streamer noticed the hang-up and came back
	log.Info("after")
	if r := restarted.next(t); r.Msg != "after" {
		t.Fatalf("got %q", r.Msg)
	}
}

func TestLogStreamer_Stop_flushesQueue(t *testing.T) {
	sink := newFrameSink(t, "127.0.0.1:0")
	cfg := testStreamerConfig(t)
	s := newTestStreamer(t, cfg)
	if err := s.Start(t.Context(), "127.0.0.1", sink.port()); err != nil {
		t.Fatal(err)
	}
	log := slog.New(s.Handler("avocado.service.core"))
	for i := range 500 {
		log.Info("r", "i", i)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if sent, dropped := s.Stats(); sent != 500 || dropped != 0 {
		t.Fatalf("after Stop: sent %d dropped %d", sent, dropped)
	}
	log.Info("not forwarded")
	select {
	case err := <-sink.ended:
		if err != io.EOF {
			t.Errorf("connection ended with %v, want EOF", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Stop left the connection open")
	}
	if len(sink.records) != 500 {
		t.Errorf("received %d records, want 500", len(sink.records))
	}
	if err := s.Stop(); err != nil { // stopping again is harmless
		t.Fatal(err)
	}
	s.Flush() // service.log is written behind the loggers
	data, _ := os.ReadFile(cfg.ServiceLogPath)
	if !bytes.Contains(data, []byte("| not forwarded\n")) {
		t.Error("record after Stop missing from service.log")
	}
}

func TestLogStreamer_Handle_concurrent(t *testing.T) {
	sink := newFrameSink(t, "127.0.0.1:0")
	s := newTestStreamer(t, testStreamerConfig(t))
	if err := s.Start(t.Context(), "127.0.0.1", sink.port()); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			log := slog.New(s.Handler("avocado.service.w" + strconv.Itoa(w)))
			for i := range each {
				log.Info("m", "i", i)
			}
		})
	}
	wg.Wait()
	next := map[string]int{}
	for range writers * each {
		r := sink.next(t)
		if want := "m i=" + strconv.Itoa(next[r.Name]); r.Msg != want {
			t.Fatalf("%s: got %q, want %q (order lost)", r.Name, r.Msg, want)
		}
		next[r.Name]++
	}
	// Stop waits for the sender, which counts a write only after the
	// peer may already have read it.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if sent, dropped := s.Stats(); sent != writers*each || dropped != 0 {
		t.Errorf("sent %d dropped %d", sent, dropped)
	}
}

func TestLogStreamer_emit_truncatesHugeMessage(t *testing.T) {
	sink := newFrameSink(t, "127.0.0.1:0")
	cfg := testStreamerConfig(t)
	s := newTestStreamer(t, cfg)
	if err := s.Start(t.Context(), "127.0.0.1", sink.port()); err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("é", maxForwardMsg) // 2 bytes each: twice the cap
	slog.New(s.Handler("avocado.service.core")).Info(huge)
	r := sink.next(t)
	// Escaped as \u00e9, the message is cut until the frame fits
	// MaxForwardFrame, and says how much of it went.
	kept, _, ok := strings.Cut(r.Msg, " [")
	if !ok || strings.Trim(kept, "é") != "" || len(kept) == 0 ||
		!strings.HasSuffix(r.Msg, " ["+strconv.Itoa(len(huge)-len(kept))+" bytes truncated]") {
		t.Errorf("forwarded message of %d bytes: %.40q...%q", len(r.Msg), r.Msg, r.Msg[max(0, len(r.Msg)-40):])
	}
	if n := len(logframe.AppendFrame(nil, r)) - 4; n > logframe.MaxForwardFrame {
		t.Errorf("forwarded frame of %d bytes, above MaxForwardFrame %d", n, logframe.MaxForwardFrame)
	}
	s.Flush()
	if info, _ := os.Stat(cfg.ServiceLogPath); info.Size() < int64(len(huge)) {
		t.Errorf("service.log has %d bytes, want the whole message", info.Size())
	}
}

func TestLogStreamer_settle_requeuesPartialBatch(t *testing.T) {
	s := newTestStreamer(t, testStreamerConfig(t))
	s.mu.Lock()
	s.sess = &streamSession{} // forwarding, with no sender running
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.sess = nil; s.mu.Unlock() }()
	frames := [][]byte{[]byte("aaaa"), []byte("bbbbbb"), []byte("cc")}
	for _, f := range frames {
		s.enqueue(f)
	}
	s.mu.Lock()
	s.unreported = 3
	s.mu.Unlock()

	var b batch
	s.take(&b)
	if b.warnLen == 0 || b.warnFor != 3 || len(b.frames) != 3 {
		t.Fatalf("batch: warn %d for %d, %d frames", b.warnLen, b.warnFor, len(b.frames))
	}
	s.settle(&b, b.warnLen+4+3) // the warning, "aaaa", half of "bbbbbb"
	s.mu.Lock()
	var left []string
	for s.queue.n > 0 {
		left = append(left, string(s.queue.popFront()))
	}
	sent, unreported := s.sent, s.unreported
	s.mu.Unlock()
	if !reflect.DeepEqual(left, []string{"bbbbbb", "cc"}) || sent != 1 || unreported != 0 {
		t.Errorf("after a partial write: queue %q sent %d unreported %d", left, sent, unreported)
	}

	s.take(&b) // no warning now
	s.settle(&b, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.warnLen != 0 || s.queue.n != 0 || s.sent != 1 {
		t.Errorf("second batch: warn %d, queue %d, sent %d", b.warnLen, s.queue.n, s.sent)
	}
}

func TestNewLogStreamerWithConfig_invalid(t *testing.T) {
	base := testStreamerConfig(t)
	for name, mutate := range map[string]func(*LogStreamerConfig){
		"no path":      func(c *LogStreamerConfig) { c.ServiceLogPath = "" },
		"no buffer":    func(c *LogStreamerConfig) { c.BufferRecords = 0 },
		"no bytes":     func(c *LogStreamerConfig) { c.BufferBytes = 0 },
		"no timeout":   func(c *LogStreamerConfig) { c.DialTimeout = 0 },
		"backoff":      func(c *LogStreamerConfig) { c.MaxBackoff = c.MinBackoff - 1 },
		"path is file": func(c *LogStreamerConfig) { c.ServiceLogPath = filepath.Join("/dev/null", "service.log") },
	} {
		cfg := base
		mutate(&cfg)
		if s, err := NewLogStreamerWithConfig(cfg); err == nil || !strings.HasPrefix(err.Error(), "agent: log streamer: ") {
			t.Errorf("%s: err %v", name, err)
			if s != nil {
				_ = s.Close()
			}
		}
	}
}

// pythonForTests returns an interpreter for the stdlib-only reader script.
func pythonForTests(tb testing.TB) string {
	tb.Helper()
	if _, err := os.Stat("/opt/vtc-venv/bin/python"); err == nil {
		return "/opt/vtc-venv/bin/python"
	}
	if p, err := exec.LookPath("python3"); err == nil {
		return p
	}
	tb.Skip("no Python: neither /opt/vtc-venv/bin/python nor python3 on PATH")
	return ""
}

func TestLogStreamer_PythonReader(t *testing.T) {
	python := pythonForTests(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*hangGuard)
	defer cancel()
	cfg := testStreamerConfig(t)
	s := newTestStreamer(t, cfg)
	const n = 6
	cmd := exec.CommandContext(ctx, python, "../tests/python/test_logframes.py", "serve", strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	out := bufio.NewReader(stdout)
	line, err := out.ReadBytes('\n')
	var hello struct{ Port int }
	if err != nil || json.Unmarshal(line, &hello) != nil || hello.Port == 0 {
		t.Fatalf("reader did not announce its port: %q %v", line, err)
	}
	if err := s.Start(ctx, "127.0.0.1", hello.Port); err != nil {
		t.Fatal(err)
	}
	if got := logSamples(s); got != n {
		t.Fatalf("logged %d samples, reader expects %d", got, n)
	}
	line, err = out.ReadBytes('\n')
	if err != nil {
		t.Fatalf("reader summary: %v", err)
	}
	var summary struct {
		Records []struct {
			Keys            []string `json:"keys"`
			Name            string   `json:"name"`
			Levelno         int      `json:"levelno"`
			Levelname       string   `json:"levelname"`
			FuncName        string   `json:"funcName"`
			Msg             string   `json:"msg"`
			Message         string   `json:"message"`
			ExcInfo         []string `json:"exc_info"`
			RedumpIdentical bool     `json:"redump_identical"`
			Unified         string   `json:"unified"`
			Asctime         string   `json:"asctime"`
		} `json:"records"`
	}
	if err := json.Unmarshal(line, &summary); err != nil || len(summary.Records) != n {
		t.Fatalf("reader summary %s: %v", line, err)
	}
	wantKeys := []string{"name", "levelno", "levelname", "pathname", "filename", "module", "lineno",
		"funcName", "created", "asctime", "thread", "threadName", "process", "msg", "args"}
	for i, r := range summary.Records {
		if !r.RedumpIdentical {
			t.Errorf("record %d: json.dumps of the decoded dict differs from our bytes", i)
		}
		if !reflect.DeepEqual(r.Keys[:len(wantKeys)], wantKeys) {
			t.Errorf("record %d: keys %q", i, r.Keys)
		}
		if r.Message != r.Msg || r.FuncName != "logSamples" {
			t.Errorf("record %d: getMessage %q msg %q funcName %q", i, r.Message, r.Msg, r.FuncName)
		}
		want := "node1(127.0.0.1) " + r.Asctime + " " + r.Name + " " + r.Levelname + " | " + r.Msg
		if r.Unified != want {
			t.Errorf("record %d: unified line %q", i, r.Unified)
		}
	}
	levels := []int{10, 20, 30, 40, 50, 20}
	for i, r := range summary.Records {
		if r.Levelno != levels[i] {
			t.Errorf("record %d: levelno %d, want %d", i, r.Levelno, levels[i])
		}
	}
	if r := summary.Records[2]; r.Msg != "unicode \u00e9 \u4e2d\u6587 \U0001F600 \"quoted\" \\ back\tslash" {
		t.Errorf("unicode message as Python sees it: %q", r.Msg)
	}
	if r := summary.Records[3]; !reflect.DeepEqual(r.ExcInfo, sampleTraceback) {
		t.Errorf("exc_info as Python sees it: %q", r.ExcInfo)
	}
}

// TestLogStreamer_goldenCapture checks the committed capture of a live
// streamer's frames (the Python tests read it) against a fresh capture, on
// the fields that do not change from run to run. -update-logframes rewrites it.
func TestLogStreamer_goldenCapture(t *testing.T) {
	sink := newFrameSink(t, "127.0.0.1:0")
	s := newTestStreamer(t, testStreamerConfig(t))
	if err := s.Start(t.Context(), "127.0.0.1", sink.port()); err != nil {
		t.Fatal(err)
	}
	n := logSamples(s)
	var fresh bytes.Buffer
	for range n {
		sink.next(t)
		fresh.Write(<-sink.raw)
	}
	golden := filepath.Join(logframesDir, "go_streamer.bin")
	if *updateLogframes {
		if err := os.WriteFile(golden, fresh.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stable := func(data []byte) []string {
		var out []string
		br := bytes.NewReader(data)
		for {
			r, _, err := logframe.ReadFrame(br, 0)
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, strings.Join([]string{r.Name, strconv.Itoa(r.Levelno), r.Levelname,
				r.Filename, r.Module, r.FuncName, r.ThreadName, r.Msg, strings.Join(r.ExcInfo, "")}, "|"))
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (create it with -update-logframes)", err)
	}
	if g, w := stable(fresh.Bytes()), stable(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s is stale; rerun with -update-logframes\n got %q\nwant %q", golden, g, w)
	}
}

// Every frame our streamer sends fits the reader's default limit, however
// its message escapes.
func TestForwardFrame_fitsDefaultMaxFrame(t *testing.T) {
	for name, msg := range map[string]string{
		"control characters": strings.Repeat("\x01", 4<<20),
		"astral":             strings.Repeat("\U0001F600", 1<<20),
		"plain":              strings.Repeat("x", 3<<20),
	} {
		f := forwardFrame(&logframe.LogRecord{Name: "n", Levelname: "INFO", Msg: msg, StackInfo: msg, ExcInfo: []string{msg}})
		if f == nil || len(f)-4 > logframe.MaxForwardFrame || logframe.MaxForwardFrame > logframe.DefaultMaxFrame {
			t.Errorf("%s: frame of %d bytes, limit %d", name, len(f), logframe.MaxForwardFrame)
			continue
		}
		rec, _, err := logframe.ReadFrame(bytes.NewReader(f), 0)
		if err != nil || !strings.HasSuffix(rec.Msg, " bytes truncated]") {
			t.Errorf("%s: %v, message ends %q", name, err, rec.Msg[max(0, len(rec.Msg)-30):])
		}
	}
}
