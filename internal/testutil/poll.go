package testutil

import (
	"testing"
	"time"
)

// Poll calls check every 20 ms until it reports done, and fails tb with
// check's last say once d has passed. It is for a state that the code
// under test keeps but does not announce (a queue seen through the
// store); d only bounds a hang, it is not a timing assertion.
func Poll(tb testing.TB, d time.Duration, check func() (done bool, say string)) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		done, say := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal(say)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
