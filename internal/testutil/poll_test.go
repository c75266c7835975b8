package testutil

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// fatalTB records Fatal and ends the goroutine, as testing's does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func TestPoll(t *testing.T) {
	calls := 0
	Poll(t, time.Minute, func() (bool, string) {
		calls++
		return calls == 3, "not yet"
	})
	if calls != 3 {
		t.Errorf("Poll returned after %d checks, want 3 (the first done)", calls)
	}

	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Poll(f, 0, func() (bool, string) { return false, "queue is [a], want [b]" })
	}()
	<-done
	if f.msg != "queue is [a], want [b]" {
		t.Errorf("Poll failed with %q, want the check's last say", f.msg)
	}
}
