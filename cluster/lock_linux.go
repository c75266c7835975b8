package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/agent/pgroup"
)

// flockFile takes a flock(2) on path (created 0600 if missing) and returns
// the function that releases it. flock is per open file description, so two
// goroutines of one process exclude each other as two processes do, and the
// kernel drops the lock when its holder dies: a crashed writer never leaves
// the cluster locked.
//
// flock cannot be interrupted by a context, so a blocked attempt runs in a
// goroutine; if ctx ends first, that goroutine releases the lock as soon as
// it gets it.
func flockFile(ctx context.Context, path string, exclusive bool) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster: open lock file: %w", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	fd := int(f.Fd())
	err = flockRetry(fd, how|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		done := make(chan error, 1)
		go func() { done <- flockRetry(fd, how) }()
		select {
		case err = <-done:
		case <-ctx.Done():
			go func() {
				<-done
				f.Close()
			}()
			return nil, fmt.Errorf("cluster: waiting for lock %s: %w", path, ctx.Err())
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: lock %s: %w", path, err)
	}
	var once sync.Once
	return func() { once.Do(func() { f.Close() }) }, nil
}

func flockRetry(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// procStat returns a process's state letter and start time (clock ticks
// after boot).
func procStat(pid int) (state byte, start uint64, err error) {
	st, err := pgroup.ReadStat(pid)
	if err != nil {
		return 0, 0, err
	}
	return st.State, st.StartTick, nil
}

// hostBootID identifies the current boot; a process recorded under another boot
// is gone, whatever its pid says now.
var hostBootID = sync.OnceValue(pgroup.BootID)

var ownHostname = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
})

// processGone reports whether pid, started at start (0: unknown), has
// surely exited. Anything uncertain counts as alive: reclaiming a live
// owner's nodes would double-book them, keeping a dead one's only delays.
func processGone(pid int, start uint64) (bool, string) {
	if pid <= 0 {
		return false, ""
	}
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return true, "owner process has exited"
	}
	state, st, err := procStat(pid)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, "owner process has exited"
	case err != nil:
		return false, ""
	case state == 'Z' || state == 'X':
		// A killed owner stays a zombie until its parent reaps it, and
		// kill(pid, 0) still succeeds on a zombie.
		return true, "owner process has exited"
	case start != 0 && st != start:
		return true, "owner pid was reused by another process"
	}
	return false, ""
}
