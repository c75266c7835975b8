//go:build ignore

// Command logload is the log-ingest load of `make bench-compare`: K
// connections send avocado-vt log frames (4-byte big-endian length, then the
// record's JSON) to a log server as fast as it takes them for a fixed time;
// then logload reads the server's output file until every record has
// arrived, or none arrived for -stall, and checks that each record sent was
// written exactly once. It prints one JSON line.
//
//	go build -o bin/bench/logload scripts/bench/logload/main.go
//	bin/bench/logload -addr 127.0.0.1:8888 -conns 4 -duration 5s -out server.log
//
// Each frame goes out in its own write with Nagle's algorithm on, as
// upstream's agent sends records (one sendall per record on a plain socket),
// so both servers see the same byte stream an agent produces.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/logframe"
	"github.com/vtcluster/vtcluster/scripts/bench/loadgen"
)

// marker starts every benchmark message: "vtcbench c=<conn> n=<seq> ...".
const marker = "vtcbench c="

type result struct {
	Conns          int     `json:"conns"`
	Sent           int64   `json:"sent"`
	Received       int64   `json:"received"`
	Missing        int64   `json:"missing"`
	Duplicated     int64   `json:"duplicated"`
	SendErrors     int     `json:"send_errors"`
	FirstSendError string  `json:"first_send_error,omitempty"`
	SendSeconds    float64 `json:"send_seconds"`
	RecordsPerSec  float64 `json:"records_per_sec"`
	FrameBytes     int     `json:"frame_bytes"`
	Complete       bool    `json:"complete"`
	loadgen.Cost           // from the first send to the last line read
}

func main() {
	addr := flag.String("addr", "", "log server host:port")
	conns := flag.Int("conns", 1, "concurrent connections")
	duration := flag.Duration("duration", 5*time.Second, "how long to send")
	out := flag.String("out", "", "the file the server writes its lines to")
	msgBytes := flag.Int("msg-bytes", 120, "length of each record's message")
	stall := flag.Duration("stall", 5*time.Second, "give up when the output has not grown for this long after sending")
	noDelay := flag.Bool("nodelay", false, "set TCP_NODELAY (upstream's agent does not)")
	batch := flag.Int("batch", 0, "write frames in batches of about this many bytes, as our agent's LogStreamer does (0: one write per frame, as upstream's agent)")
	flag.Parse()
	if *addr == "" || *out == "" || *conns < 1 || *duration <= 0 || *duration > 10*time.Minute || *msgBytes < 40 {
		fmt.Fprintln(os.Stderr, "logload: want -addr, -out, -conns >= 1, 0 < -duration <= 10m, -msg-bytes >= 40")
		os.Exit(2)
	}
	res, err := run(*addr, *out, *conns, *duration, *msgBytes, *stall, *noDelay, *batch)
	if err != nil {
		fmt.Fprintln(os.Stderr, "logload:", err)
		os.Exit(1)
	}
	loadgen.PrintResult(res)
}

func run(addr, out string, conns int, duration time.Duration, msgBytes int, stall time.Duration, noDelay bool, batch int) (*result, error) {
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w := newWatcher(f, conns)

	cs := make([]net.Conn, conns)
	for i := range cs {
		// Each connection is its own sender, as each node's agent is:
		// its own loopback address (127.0.0.2, .3, ...), so that the
		// server's per-sender cap (8, against a flood from one node) is
		// not what a many-connection run measures.
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(i/250), byte(2+i%250))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(noDelay)
		}
		cs[i] = c
	}

	res := &result{Conns: conns}
	meter := loadgen.Start()
	start := meter.Started()
	deadline := start.Add(duration)
	sent := make([]int64, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			sent[i], errs[i] = send(c, i, deadline, msgBytes, batch, &res.FrameBytes)
			// Close now, so the server sees EOF after the last frame as an
			// agent's stop_log_redirection would make it.
			_ = c.Close()
		})
	}
	// Read the output while sending, so the tail is not read all at the end.
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); w.follow(stopWatch) }()
	wg.Wait()
	res.SendSeconds = time.Since(start).Seconds()
	close(stopWatch)
	<-watchDone

	for i := range cs {
		res.Sent += sent[i]
		if errs[i] != nil {
			res.SendErrors++
			if res.FirstSendError == "" {
				res.FirstSendError = errs[i].Error()
			}
		}
	}
	end, err := w.drain(res.Sent, stall)
	if err != nil {
		return nil, err
	}
	res.Cost = meter.Until(end)
	res.Received, res.Missing, res.Duplicated = w.check(sent)
	res.Complete = res.Missing == 0 && res.Duplicated == 0 && res.SendErrors == 0
	if res.Seconds > 0 {
		res.RecordsPerSec = float64(res.Received) / res.Seconds
	}
	return res, nil
}

// send writes frames until deadline, one write per frame or per batch, and
// returns how many were written whole.
func send(c net.Conn, id int, deadline time.Time, msgBytes, batch int, frameBytes *int) (int64, error) {
	exe, _ := os.Executable()
	pid := int64(os.Getpid())
	rec := &logframe.LogRecord{
		Name:       "avocado.service.bench",
		Levelno:    20,
		Levelname:  "INFO",
		Pathname:   exe,
		Filename:   filepath.Base(exe),
		Module:     "bench",
		Lineno:     42,
		FuncName:   "send",
		Thread:     pid,
		ThreadName: "MainThread",
		Process:    pid,
	}
	pad := bytes.Repeat([]byte{'x'}, msgBytes)
	var msg, frame []byte
	var n, pending int64 // frames made, frames in frame not yet written
	// A blocked write past this point means the server stopped reading.
	_ = c.SetWriteDeadline(deadline.Add(60 * time.Second))
	for {
		if n%256 == 0 {
			now := time.Now()
			if !now.Before(deadline) {
				if pending > 0 {
					if _, err := c.Write(frame); err != nil {
						return n - pending, fmt.Errorf("connection %d after %d records: %w", id, n-pending, err)
					}
				}
				return n, nil
			}
			rec.Created = float64(now.UnixNano()) / 1e9
			rec.Asctime = logframe.FormatAsctime(now)
		}
		msg = append(msg[:0], marker...)
		msg = strconv.AppendInt(msg, int64(id), 10)
		msg = append(msg, " n="...)
		msg = strconv.AppendInt(msg, n, 10)
		msg = append(msg, ' ')
		if len(msg) < msgBytes {
			msg = append(msg, pad[:msgBytes-len(msg)]...)
		}
		rec.Msg = string(msg)
		if pending == 0 {
			frame = frame[:0]
		}
		before := len(frame)
		frame = logframe.AppendFrame(frame, rec)
		if id == 0 && n == 0 {
			*frameBytes = len(frame) - before
		}
		n++
		pending++
		if len(frame) >= batch {
			if _, err := c.Write(frame); err != nil {
				return n - pending, fmt.Errorf("connection %d after %d records: %w", id, n-pending, err)
			}
			pending = 0
		}
	}
}

// watcher tails the server's output file and counts each benchmark record.
type watcher struct {
	f        *os.File
	buf      []byte
	partial  []byte
	seen     [][]uint8 // per connection, per sequence number: times seen
	received int64
	lastGrow time.Time
}

func newWatcher(f *os.File, conns int) *watcher {
	// Lines written before the run (a banner) are not records of this run.
	_, _ = f.Seek(0, io.SeekEnd)
	return &watcher{f: f, buf: make([]byte, 1<<20), seen: make([][]uint8, conns), lastGrow: time.Now()}
}

// poll reads what the server appended since the last poll.
func (w *watcher) poll() error {
	for {
		n, err := w.f.Read(w.buf)
		if n > 0 {
			w.lastGrow = time.Now()
			w.consume(w.buf[:n])
		}
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (w *watcher) consume(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			w.partial = append(w.partial, b...)
			return
		}
		line := b[:i]
		if len(w.partial) > 0 {
			line = append(w.partial, line...)
			w.partial = w.partial[:0]
		}
		w.line(line)
		b = b[i+1:]
	}
}

func (w *watcher) line(l []byte) {
	i := bytes.Index(l, []byte(marker))
	if i < 0 {
		return
	}
	l = l[i+len(marker):]
	c, rest, ok := leadingInt(l)
	if !ok || !bytes.HasPrefix(rest, []byte(" n=")) {
		return
	}
	n, _, ok := leadingInt(rest[3:])
	if !ok || c >= len(w.seen) {
		return
	}
	for len(w.seen[c]) <= n {
		w.seen[c] = append(w.seen[c], make([]uint8, max(1024, len(w.seen[c])))...)
	}
	if w.seen[c][n] < 255 {
		w.seen[c][n]++
	}
	w.received++
}

func leadingInt(b []byte) (int, []byte, bool) {
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j == 0 || j > 12 {
		return 0, b, false
	}
	v, err := strconv.Atoi(string(b[:j]))
	return v, b[j:], err == nil
}

func (w *watcher) follow(stop <-chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			_ = w.poll()
		}
	}
}

// drain polls until want records were read, and returns the time the last
// one was seen; or until the file has not grown for stall.
func (w *watcher) drain(want int64, stall time.Duration) (time.Time, error) {
	for {
		if err := w.poll(); err != nil {
			return time.Time{}, err
		}
		if w.received >= want {
			return w.lastGrow, nil
		}
		if time.Since(w.lastGrow) > stall {
			return w.lastGrow, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// check compares what was read with what was sent.
func (w *watcher) check(sent []int64) (received, missing, duplicated int64) {
	for c, s := range w.seen {
		for n, k := range s {
			switch {
			case int64(n) < sent[c] && k == 0:
				missing++
			case k > 1:
				duplicated += int64(k - 1)
			}
		}
		if int64(len(s)) < sent[c] {
			missing += sent[c] - int64(len(s))
		}
	}
	return w.received, missing, duplicated
}
