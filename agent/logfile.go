package agent

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// logBufferBytes bounds what a groupWriter holds for its file: records
// formatted but not yet written. A burst beyond it makes loggers wait for
// the disk instead of growing memory or dropping lines.
const logBufferBytes = 1 << 20

// logLinger is how long the writer lets records gather after the first
// one before it writes them. Writing each record at once, on its own
// goroutine, saved nothing: waking that goroutine per record cost what
// the write(2) did (docs/performance.md). A millisecond groups the ten or
// so calls a client makes in it into one wake and one write.
const logLinger = time.Millisecond

// groupWriter is the agent's log files' writer (agent.log, service.log): a
// group commit. Write appends one formatted record to a buffer and
// returns; one goroutine writes whatever has accumulated within logLinger
// of the first record (at once for Flush, Close, or a half-full buffer)
// with a single write(2). A call's log lines so cost the request a copy,
// not a system call each (docs/performance.md: two records per call were
// the agent's distance to its speed goals), and under many clients one
// write carries many records.
//
// Nothing is dropped and memory stays bounded: a Write that would take the
// buffer past its limit waits until the writer has taken it. Records are
// written whole and in the order their Writes returned (each slog handler
// calls Write once per record). Close writes everything accepted before
// returning; the agent closes its logs on every way Run returns (a signal,
// core.quit, an error). What a SIGKILL (or a crash outside Run) loses is
// what was accepted but not yet written: the records of the last
// millisecond (logLinger), at most the buffer under a burst. The
// synchronous write lost nothing to a SIGKILL but did not make the lines
// durable either (no fsync), and a process killed that way is cut short
// mid-work anyway; per-call log lines at the cost of a system call each
// were the larger price.
//
// Readers of a running agent's files see a record once the writer has
// written it, about a millisecond later; copies the agent makes itself
// call Flush first (DataDir.FlushLogs), and so does the agent before it
// names its service log (core.get_service_log_filename), which is how the
// runner reads a test's part of it.
type groupWriter struct {
	w   io.WriteCloser
	max int

	mu       sync.Mutex
	cond     sync.Cond // broadcast when the writer took or wrote a batch
	buf      []byte    // accepted, not yet taken by the writer
	spare    []byte    // the writer's last batch, reused as the next buf
	accepted int64     // bytes accepted since open
	written  int64     // bytes the writer has finished with (written or failed)
	waiting  int       // Writes waiting for room; the writer outlives them
	closed   bool
	err      error // the first write error, for Close

	wake  chan struct{} // capacity 1: there is something to write, or Close
	hurry chan struct{} // capacity 1: write now, without lingering
	done  chan struct{} // closed when the writer goroutine has returned
}

// newGroupWriter starts the writer goroutine for w; max bounds the buffer.
func newGroupWriter(w io.WriteCloser, max int) *groupWriter {
	g := &groupWriter{w: w, max: max, wake: make(chan struct{}, 1), hurry: make(chan struct{}, 1), done: make(chan struct{})}
	g.cond.L = &g.mu
	go g.run()
	return g
}

// Write accepts p for writing. It waits only while the buffer is full; it
// fails only after Close.
func (g *groupWriter) Write(p []byte) (int, error) { return groupAppend(g, p) }

// WriteString is Write for a string, without converting it first.
func (g *groupWriter) WriteString(s string) (int, error) { return groupAppend(g, s) }

func groupAppend[T string | []byte](g *groupWriter, p T) (int, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return 0, os.ErrClosed
	}
	// A record larger than the whole buffer goes in alone.
	for len(g.buf) > 0 && len(g.buf)+len(p) > g.max {
		g.waiting++
		doorbell(g.hurry)
		g.cond.Wait()
		g.waiting--
	}
	wasEmpty := len(g.buf) == 0
	g.buf = append(g.buf, p...)
	g.accepted += int64(len(p))
	full := len(g.buf) >= g.max/2
	g.mu.Unlock()
	if wasEmpty {
		doorbell(g.wake)
	}
	if full {
		doorbell(g.hurry)
	}
	return len(p), nil
}

// doorbell rings c of capacity 1 without waiting.
func doorbell(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default: // already rung: the writer will look at buf
	}
}

// Flush waits until every record accepted before it is written.
func (g *groupWriter) Flush() {
	g.mu.Lock()
	defer g.mu.Unlock()
	target := g.accepted
	if g.written < target {
		doorbell(g.hurry)
	}
	for g.written < target {
		g.cond.Wait()
	}
}

// Close writes what was accepted, stops the writer and closes the file.
// Writes waiting for room when Close starts are written too; later ones
// fail. Close is idempotent.
func (g *groupWriter) Close() error {
	g.mu.Lock()
	already := g.closed
	g.closed = true
	g.mu.Unlock()
	doorbell(g.wake)
	doorbell(g.hurry)
	<-g.done
	if already {
		return nil
	}
	return errors.Join(g.err, g.w.Close())
}

func (g *groupWriter) run() {
	defer close(g.done)
	linger := time.NewTimer(logLinger)
	linger.Stop()
	g.mu.Lock()
	for {
		for len(g.buf) == 0 {
			if g.closed && g.waiting == 0 {
				g.mu.Unlock()
				return
			}
			g.mu.Unlock()
			<-g.wake
			g.mu.Lock()
		}
		if !g.closed {
			g.mu.Unlock()
			linger.Reset(logLinger)
			select {
			case <-linger.C:
			case <-g.hurry:
				linger.Stop()
			}
			g.mu.Lock()
		}
		batch := g.buf
		g.buf, g.spare = g.spare[:0], nil
		g.cond.Broadcast() // room for the waiting Writes
		g.mu.Unlock()

		_, err := g.w.Write(batch)

		g.mu.Lock()
		if err != nil && g.err == nil {
			g.err = err
		}
		g.written += int64(len(batch))
		if cap(batch) <= 2*g.max { // keep the usual size, not a giant record's
			g.spare = batch[:0]
		}
		g.cond.Broadcast() // for Flush
	}
}

// FlushLogs waits until every record logged so far is in the agent's log
// files, for a copy of them to hold the lines of the calls before it.
func (d *DataDir) FlushLogs() {
	d.mu.Lock()
	fs := d.flushers
	d.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// onFlushLogs has FlushLogs call f.
func (d *DataDir) onFlushLogs(f func()) {
	d.mu.Lock()
	d.flushers = append(d.flushers, f)
	d.mu.Unlock()
}
