package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowFile records each write(2)-sized Write it gets and can hold the
// writer goroutine inside Write until released.
type slowFile struct {
	mu      sync.Mutex
	data    bytes.Buffer
	writes  int
	maxLen  int
	gate    chan struct{} // if not nil, each Write waits for a receive
	closed  bool
	entered chan struct{}
}

func (f *slowFile) Write(p []byte) (int, error) {
	if f.gate != nil {
		f.entered <- struct{}{}
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, os.ErrClosed
	}
	f.writes++
	f.maxLen = max(f.maxLen, len(p))
	return f.data.Write(p)
}

func (f *slowFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// TestGroupWriter_concurrentWritersKeepLinesWholeAndOrdered: many writers,
// every line arrives whole, each writer's lines in its order, none lost
// across Close, and batches carry several records.
func TestGroupWriter_concurrentWritersKeepLinesWholeAndOrdered(t *testing.T) {
	f := &slowFile{}
	g := newGroupWriter(f, 4096)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				if _, err := fmt.Fprintf(g, "w%d line %d %s\n", w, i, strings.Repeat("x", i%50)); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(f.data.String(), "\n"), "\n")
	for _, l := range got {
		var w, i int
		var pad string
		if _, err := fmt.Sscanf(l, "w%d line %d %s", &w, &i, &pad); err != nil && !(errors.Is(err, io.EOF) && i%50 == 0) {
			t.Fatalf("torn line %q: %v", l, err)
		}
		if i != next[w] || len(pad) != i%50 {
			t.Fatalf("writer %d: line %q, want line %d", w, l, next[w])
		}
		next[w]++
	}
	if len(got) != writers*lines {
		t.Errorf("%d lines, want %d", len(got), writers*lines)
	}
	if f.writes >= writers*lines {
		t.Errorf("%d writes for %d records: nothing was grouped", f.writes, writers*lines)
	}
	if _, err := g.Write([]byte("late\n")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestGroupWriter_fullBufferMakesWritersWait: while the file is stuck, a
// writer past the buffer's limit waits instead of growing it or dropping;
// once the file moves, everything arrives.
func TestGroupWriter_fullBufferMakesWritersWait(t *testing.T) {
	f := &slowFile{gate: make(chan struct{}), entered: make(chan struct{}, 8)}
	g := newGroupWriter(f, 100)
	rec := []byte(strings.Repeat("r", 39) + "\n") // 40 bytes
	if _, err := g.Write(rec); err != nil {
		t.Fatal(err)
	}
	<-f.entered // the writer holds the first record, stuck in the file
	for range 2 {
		g.Write(rec) // 80 of 100 bytes buffered
	}
	wrote := make(chan struct{})
	go func() {
		g.Write(rec) // 120 > 100: must wait
		close(wrote)
	}()
	select {
	case <-wrote:
		t.Fatal("a Write past the buffer's limit returned while the file was stuck")
	case <-time.After(100 * time.Millisecond):
	}
	g.mu.Lock()
	buffered, waiting := len(g.buf), g.waiting
	g.mu.Unlock()
	if buffered > 100 || waiting != 1 {
		t.Errorf("buffered %d bytes (limit 100), %d writers waiting; want ≤ 100 and 1", buffered, waiting)
	}
	close(f.gate) // the file moves again
	<-wrote
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if got := f.data.Len(); got != 4*len(rec) || f.maxLen > 100 {
		t.Errorf("file has %d bytes, largest write %d; want %d and ≤ 100", got, f.maxLen, 4*len(rec))
	}
}

// TestGroupWriter_oversizeRecordGoesWhole: a record larger than the buffer
// is written whole, not refused or cut.
func TestGroupWriter_oversizeRecordGoesWhole(t *testing.T) {
	f := &slowFile{}
	g := newGroupWriter(f, 16)
	big := strings.Repeat("b", 100) + "\n"
	g.WriteString("a\n")
	g.WriteString(big)
	g.WriteString("c\n")
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if got := f.data.String(); got != "a\n"+big+"c\n" {
		t.Errorf("file %q", got)
	}
}

// TestGroupWriter_flushWritesWhatCameBefore: after Flush the file holds
// every record written before it, while the writer stays open.
func TestGroupWriter_flushWritesWhatCameBefore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.log")
	rf, err := OpenRotatingFile(path, LogMaxBytes, LogGenerations)
	if err != nil {
		t.Fatal(err)
	}
	g := newGroupWriter(rf, logBufferBytes)
	defer g.Close()
	log := slog.New(slog.NewTextHandler(g, nil))
	for i := range 500 {
		log.Info("agent: call", "n", i)
		if i%100 == 99 {
			g.Flush()
			data, _ := os.ReadFile(path)
			if n := bytes.Count(data, []byte("\n")); n != i+1 {
				t.Fatalf("after Flush the file has %d lines, want %d", n, i+1)
			}
		}
	}
}

// BenchmarkAgentLog is one call's Debug record in agent.log as Run writes
// it, through the groupWriter ("group") against a write(2) per record
// ("sync", the agent before it), from 1 and from many goroutines.
func BenchmarkAgentLog(b *testing.B) {
	for _, mode := range []string{"sync", "group"} {
		for _, par := range []bool{false, true} {
			name := mode + "/1"
			if par {
				name = mode + "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				rf, err := OpenRotatingFile(filepath.Join(b.TempDir(), "agent.log"), LogMaxBytes, LogGenerations)
				if err != nil {
					b.Fatal(err)
				}
				var w io.WriteCloser = rf
				if mode == "group" {
					w = newGroupWriter(rf, logBufferBytes)
				}
				defer w.Close()
				log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("service", "examples.hello")
				call := func() {
					log.Debug("agent: call", "method", "examples.hello.ping", "duration_seconds", 1.23e-5, "outcome", "ok")
				}
				b.ReportAllocs()
				if par {
					b.SetParallelism(8)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							call()
						}
					})
					return
				}
				for b.Loop() {
					call()
				}
			})
		}
	}
}
