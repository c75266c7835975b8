package testutil

import (
	"log/slog"
	"slices"
	"sync"
	"testing"
)

func TestSyncBuffer_concurrentWritesAllKept(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := len(b.String()); n != 800 {
		t.Errorf("kept %d bytes, want 800", n)
	}
}

func TestLogRecorder(t *testing.T) {
	var h LogRecorder
	log := h.Logger().With("k", "v").WithGroup("g")
	log.Debug("quiet")
	log.Warn("stopping process group 42")
	if got := h.Lines(); !slices.Equal(got, []string{"DEBUG quiet", "WARN stopping process group 42"}) {
		t.Errorf("Lines() = %q", got)
	}
	if !h.Find(slog.LevelWarn, "group 42") || h.Find(slog.LevelError, "group 42") || h.Find(slog.LevelWarn, "group 43") {
		t.Error("Find matches the wrong records")
	}
}
