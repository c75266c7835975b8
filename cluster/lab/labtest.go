package lab

import (
	"context"
	"flag"
	"os"
	"sync"
)

// TB is the part of testing.TB that Start uses; any testing.TB satisfies
// it. Declaring it here keeps package testing out of the vtcluster binary,
// which imports this package for "vtcluster lab".
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// testPrefix starts every lab made by Start, so that DownAll(testPrefix)
// reaps what killed test binaries left behind without touching demo labs.
const testPrefix = "vtt"

var reapOnce sync.Once

// shortTest is testing.Short() without importing package testing into the
// binary: the flag exists only in test binaries.
func shortTest() bool {
	f := flag.Lookup("test.short")
	return f != nil && f.Value.String() == "true"
}

// Start builds a lab of n hosts for a test and tears it down in Cleanup. It
// skips the test, with the reason, when the machine cannot build labs (not
// root, no ip or sshd). The first call in a test binary also reaps stale
// labs left by earlier, killed test binaries.
func Start(tb TB, n int) *Lab {
	tb.Helper()
	return StartSpec(tb, Spec{Hosts: n})
}

// StartSpec is Start with a full Spec; Dir, Prefix and OwnerPID are filled
// in when empty.
func StartSpec(tb TB, spec Spec) *Lab {
	tb.Helper()
	if shortTest() {
		tb.Skipf("lab: real hosts take seconds each; skipped under -short (make unit)")
	}
	if err := CheckTools(spec.SSHD); err != nil {
		tb.Skipf("%v", err)
	}
	reapOnce.Do(func() {
		if removed, err := DownAll(testPrefix); err != nil {
			tb.Logf("lab: reaping stale test labs: %v", err)
		} else if len(removed) > 0 {
			tb.Logf("lab: reaped stale test labs %v", removed)
		}
	})
	if spec.Dir == "" {
		// TempDir is created before Cleanup(Down) is registered, so Down
		// runs first and the directory (with sshd logs) is removed after.
		spec.Dir = tb.TempDir()
	}
	if spec.Prefix == "" {
		spec.Prefix = randomPrefix(testPrefix)
	}
	if spec.OwnerPID == 0 {
		spec.OwnerPID = os.Getpid()
	}
	l, err := Up(context.Background(), spec)
	if err != nil {
		tb.Fatalf("lab: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Down(); err != nil {
			tb.Errorf("lab: down: %v", err)
		}
	})
	return l
}

// StrangerKey writes a new ed25519 private key (OpenSSH format, 0600) that
// no lab authorizes, and returns its path: for tests of a refused login,
// or of a key installed on purpose.
func StrangerKey(tb TB) string {
	tb.Helper()
	dir := tb.TempDir()
	priv := dir + "/stranger_key"
	if _, err := genKey(priv, priv+".pub", "stranger"); err != nil {
		tb.Fatalf("%v", err)
	}
	return priv
}
