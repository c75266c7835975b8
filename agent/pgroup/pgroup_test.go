//go:build linux

package pgroup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never written", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRun_exitCodes(t *testing.T) {
	res, err := Run(context.Background(), []string{"sh", "-c", "exit 3"}, Options{})
	if err != nil || res.ExitCode != 3 || res.Signal != 0 || res.Stopped != nil || res.Err != nil {
		t.Fatalf("%+v %v", res, err)
	}
	res, err = Run(context.Background(), []string{"sh", "-c", "kill -9 $$"}, Options{})
	if err != nil || res.ExitCode != -9 || res.Signal != syscall.SIGKILL {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := Run(context.Background(), []string{"/nonexistent/x"}, Options{}); err == nil {
		t.Fatal("started a missing program")
	}
}

// A context that ends stops the whole group, TERM first, and says why.
func TestWait_contextStopsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	cause := errors.New("test over")
	ctx, cancel := context.WithCancelCause(context.Background())
	var stopCause error
	g, err := Start([]string{"sh", "-c", `sleep 600 & echo $! > "$0"; wait`, pidFile}, Options{
		OnStop: func(c error) { stopCause = c },
		Grace:  func(error) time.Duration { return time.Second },
	})
	if err != nil {
		t.Fatal(err)
	}
	member, _ := strconv.Atoi(waitFile(t, pidFile))
	cancel(cause)
	res := g.Wait(ctx)
	if !errors.Is(res.Stopped, cause) || !errors.Is(stopCause, cause) || res.Signal != syscall.SIGTERM {
		t.Fatalf("%+v, OnStop got %v", res, stopCause)
	}
	if alive(member) {
		t.Fatalf("member %d survived", member)
	}
	if sent, err := g.Signal(syscall.SIGTERM); sent || err != nil {
		t.Fatalf("signalled a reaped group: %v %v", sent, err)
	}
}

// A member that ignores SIGTERM is killed after the grace period.
func TestWait_leftoverIgnoringTermIsKilled(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	start := time.Now()
	res, err := Run(context.Background(), []string{"sh", "-c", `sh -c 'trap "" TERM; echo $$ > "$0"; exec sleep 600' "$0" & while [ ! -s "$0" ]; do :; done`, pidFile},
		Options{Grace: func(c error) time.Duration {
			if !errors.Is(c, ErrLeaderExited) {
				t.Errorf("cause %v", c)
			}
			return 200 * time.Millisecond
		}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	member, _ := strconv.Atoi(waitFile(t, pidFile))
	if alive(member) {
		t.Fatalf("member %d survived", member)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

// The parent-death signal belongs to the forking thread. A child started
// from a goroutine whose thread then exits must survive: it was forked
// from the launcher thread, not from that one.
func TestStart_dieWithParentSurvivesThreadExit(t *testing.T) {
	gc := make(chan *Group)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with us
		g, err := Start([]string{"sleep", "600"}, Options{DieWithParent: true})
		if err != nil {
			errc <- err
			return
		}
		gc <- g
	}()
	var g *Group
	select {
	case g = <-gc:
	case err := <-errc:
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the signal would be delivered by now
	if !alive(g.Pid()) {
		t.Fatal("child died with the thread that asked for it")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res := g.Wait(ctx); res.Stopped == nil {
		t.Fatalf("%+v", res)
	}
}

func TestParseStat(t *testing.T) {
	line := "1234 (a (b) c) S 1 1230 1230 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 98765 100 200"
	st, ok := parseStat([]byte(line))
	if !ok || st.state != 'S' || st.pgrp != 1230 || st.startTick != 98765 {
		t.Fatalf("got %+v %v", st, ok)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1", "1 (x) S 1 y", "1 (x) S 1 2 3"} {
		if _, ok := parseStat([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestStopLeftover(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	g, err := Start([]string{"sh", "-c", `sleep 600 & echo $! > "$0"; wait`, pidFile}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	member, _ := strconv.Atoi(waitFile(t, pidFile))
	id := g.Ident()
	// A wrong start time: the leader's pid belongs to someone else now,
	// and so does the group.
	if pids, err := StopLeftover(Ident{Pgid: id.Pgid, StartTick: id.StartTick + 1}, 0); err != nil || len(pids) != 0 {
		t.Fatalf("stopped %v %v in a reused group", pids, err)
	}
	if !alive(member) || !alive(id.Pgid) {
		t.Fatal("a reused group was signalled")
	}
	pids, err := StopLeftover(id, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.Wait(ctx)
	if alive(member) || len(pids) != 2 {
		t.Fatalf("stopped %v; member alive %v", pids, alive(member))
	}
}
