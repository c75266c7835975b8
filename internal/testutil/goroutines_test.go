package testutil

import (
	"fmt"
	"testing"
	"time"
)

// errorTB records Errorf.
type errorTB struct {
	testing.TB
	errs []string
}

func (e *errorTB) Helper() {}

func (e *errorTB) Errorf(format string, args ...any) {
	e.errs = append(e.errs, fmt.Sprintf(format, args...))
}

func parkedForGoroutineTest(release <-chan struct{}, parked chan<- struct{}) {
	close(parked)
	<-release
}

func TestNoGoroutinesLeft(t *testing.T) {
	release, parked := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		parkedForGoroutineTest(release, parked)
	}()
	<-parked
	rec := &errorTB{TB: t}
	NoGoroutinesLeft(rec, 20*time.Millisecond, "parkedForGoroutineTest")
	if len(rec.errs) != 1 {
		t.Errorf("a parked goroutine gave %d errors, want 1: %q", len(rec.errs), rec.errs)
	}
	close(release)
	<-done
	// Gone (or unwinding within the wait): no error.
	NoGoroutinesLeft(t, 10*time.Second, "parkedForGoroutineTest")
}
