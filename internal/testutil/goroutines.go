package testutil

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// NoGoroutinesLeft fails tb for each goroutine whose stack names one of
// markers (e.g. "agent.(*LogStreamer).") and that is still there after
// wait. A goroutine that has just signalled it is done may still be
// unwinding, so it looks again every 5 ms until none is left; only a leak
// makes it fail, and wait only bounds that.
func NoGoroutinesLeft(tb testing.TB, wait time.Duration, markers ...string) {
	tb.Helper()
	var left [][]byte
	for deadline := time.Now().Add(wait); ; time.Sleep(5 * time.Millisecond) {
		left = goroutines(markers)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, g := range left {
		tb.Errorf("goroutine left behind:\n%s", g)
	}
}

// goroutines returns the stacks of the goroutines that name a marker.
func goroutines(markers []string) [][]byte {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out [][]byte
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		for _, m := range markers {
			if bytes.Contains(g, []byte(m)) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
