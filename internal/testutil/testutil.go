// Package testutil holds the helpers that tests of several packages need
// alike: a buffer safe to read while another goroutine writes it, a slog
// handler that records what a component logged, polling for a state
// (Poll), goroutines left behind (NoGoroutinesLeft), XML-RPC replies as a
// caller decodes them (Plain), reading a file (ReadFile) and a forged
// known_hosts line (ForgedKnownHost). Only tests import it (arch_test keeps
// it a leaf).
package testutil

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// SyncBuffer is an io.Writer that may be read (String) while servers,
// children's output copiers or loggers write to it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// LogRecorder is a slog.Handler that keeps every record, at every level.
type LogRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

// Logger returns a logger that records into h.
func (h *LogRecorder) Logger() *slog.Logger { return slog.New(h) }

func (h *LogRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *LogRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// WithAttrs and WithGroup keep recording into h: tests look at messages
// and levels, not at the attributes a component adds to its logger.
func (h *LogRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *LogRecorder) WithGroup(string) slog.Handler      { return h }

// Records returns a copy of what was recorded so far.
func (h *LogRecorder) Records() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Record(nil), h.recs...)
}

// Lines returns "LEVEL message" for every record.
func (h *LogRecorder) Lines() []string {
	var out []string
	for _, r := range h.Records() {
		out = append(out, r.Level.String()+" "+r.Message)
	}
	return out
}

// Find reports whether a record at level has a message containing substr.
func (h *LogRecorder) Find(level slog.Level, substr string) bool {
	for _, r := range h.Records() {
		if r.Level == level && strings.Contains(r.Message, substr) {
			return true
		}
	}
	return false
}

// NeedCommand skips tb when cmd is not on PATH, naming the Debian package
// that brings it (make test installs scripts/system-packages.txt when it
// can, and leaves the tests that need what it could not install to skip)
// and what the test needs it for.
func NeedCommand(tb testing.TB, cmd, pkg, why string) {
	tb.Helper()
	// LookPath only searches PATH; nothing is run.
	if _, err := exec.LookPath(cmd); err != nil {
		tb.Skipf("%s not installed (apt-get install %s): %s", cmd, pkg, why)
	}
}

// ReadFile returns the file's content, failing tb when it cannot be read.
func ReadFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
