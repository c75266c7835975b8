//go:build linux

package pgroup

// Linux: waitid without reaping keeps the leader a zombie while its group
// is stopped, /proc tells live members from zombies, and the parent-death
// signal ties leaders to the supervisor's life.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Group is one started command and its process group.
type Group struct {
	cmd     *exec.Cmd
	opts    Options
	ident   Ident
	started time.Time

	mu     sync.Mutex
	reaped bool // from then on the pid may be reused: never signal it

	waitOnce sync.Once
	done     chan struct{}
	res      Result
}

// Start starts argv in a new process group whose id is the leader's pid.
// The caller must call Wait, once or more: until then the leader is not
// reaped, which is what keeps its group id from being reused.
func Start(argv []string, o Options) (*Group, error) {
	if len(argv) == 0 {
		return nil, errors.New("pgroup: empty argv")
	}
	path := o.Path
	if path == "" {
		var err error
		if path, err = exec.LookPath(argv[0]); err != nil {
			return nil, err
		}
	}
	if o.WaitDelay == 0 {
		o.WaitDelay = DefaultGrace
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if o.DieWithParent {
		attr.Pdeathsig = syscall.SIGKILL
	}
	cmd := &exec.Cmd{
		Path: path, Args: argv, Dir: o.Dir, Env: o.Env,
		Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr,
		SysProcAttr: attr,
		WaitDelay:   o.WaitDelay,
	}
	var err error
	if o.DieWithParent {
		onLauncherThread(func() { err = cmd.Start() })
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return nil, err
	}
	g := &Group{cmd: cmd, opts: o, started: time.Now(), done: make(chan struct{})}
	g.ident.Pgid = cmd.Process.Pid
	// The leader cannot be reaped before Wait, so this is its stat.
	if st, err := readStat(g.ident.Pgid); err == nil {
		g.ident.StartTick = st.startTick
	}
	return g, nil
}

// Run starts argv and waits for it as Wait does. The error is Start's.
func Run(ctx context.Context, argv []string, o Options) (Result, error) {
	g, err := Start(argv, o)
	if err != nil {
		return Result{}, err
	}
	return g.Wait(ctx), nil
}

// Pid is the leader's pid, which is also the process group id.
func (g *Group) Pid() int { return g.ident.Pgid }

// Ident identifies the group for a record that outlives this process.
func (g *Group) Ident() Ident { return g.ident }

// Started is when the group was started.
func (g *Group) Started() time.Time { return g.started }

// Done is closed once Wait has reaped the leader.
func (g *Group) Done() <-chan struct{} { return g.done }

// Signal sends sig to every process of the group. It returns false, and
// sends nothing, once the leader has been reaped: the group id may then
// belong to someone else.
func (g *Group) Signal(sig syscall.Signal) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reaped {
		return false, nil
	}
	return true, signalGroup(g.ident.Pgid, sig)
}

// Wait waits for the leader to exit, or for ctx to end and then stops the
// group. Either way, members still alive in the group once the leader has
// exited are stopped (SIGTERM, grace, SIGKILL), and only then is the
// leader reaped. Later calls return the first call's result.
func (g *Group) Wait(ctx context.Context) Result {
	g.waitOnce.Do(func() {
		g.res = g.supervise(ctx)
		close(g.done)
	})
	<-g.done
	return g.res
}

func (g *Group) supervise(ctx context.Context) Result {
	pgid := g.ident.Pgid
	var res Result
	exited := make(chan struct{})
	var waitErr error // set before exited is closed
	go func() {
		// Returns when the leader exits, which stop guarantees.
		waitErr = waitExited(pgid)
		close(exited)
	}()
	select {
	case <-exited:
	case <-ctx.Done():
		select {
		case <-exited: // exited at the same moment: not stopped by us
		default:
			res.Stopped = context.Cause(ctx)
			if g.opts.OnStop != nil {
				g.opts.OnStop(res.Stopped)
			}
			g.stop(res.Stopped)
		}
	}
	<-exited
	res.Duration = time.Since(g.started)
	if left, err := liveMembers(pgid); err != nil || len(left) > 0 {
		g.stop(ErrLeaderExited)
	}

	g.mu.Lock()
	g.reaped = true
	g.mu.Unlock()
	err := g.cmd.Wait()
	res.ExitCode = -1
	if ps := g.cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal()
			res.ExitCode = -int(res.Signal)
		} else {
			res.ExitCode = ps.ExitCode()
		}
	} else {
		res.Err = fmt.Errorf("reaping process %d: %w", pgid, err)
	}
	if waitErr != nil && res.Err == nil {
		// Not seen in practice; the group check still ran, and Wait
		// reaped the leader whatever happened.
		res.Err = fmt.Errorf("waiting for process %d: %w", pgid, waitErr)
	}
	return res
}

// stop sends SIGTERM (and SIGCONT: a stopped process acts on SIGTERM only
// once continued) to the group, and SIGKILL to whatever is still alive in
// it after the grace period. The leader is not reaped yet, so the group id
// is still ours.
func (g *Group) stop(cause error) {
	grace := DefaultGrace
	if g.opts.Grace != nil {
		grace = g.opts.Grace(cause)
	}
	stopGroup(g.ident.Pgid, grace)
}

func stopGroup(pgid int, grace time.Duration) {
	_ = signalGroup(pgid, unix.SIGTERM)
	_ = signalGroup(pgid, unix.SIGCONT)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if left, err := liveMembers(pgid); err == nil && len(left) == 0 {
			return
		}
		<-t.C
	}
	_ = signalGroup(pgid, unix.SIGKILL)
	// kill returns before the processes are gone; the caller's next step
	// (reaping the leader, which frees the group id) must come after.
	waitGone(func() ([]int, error) { return liveMembers(pgid) })
}

// killWait bounds the wait for SIGKILLed processes to die: only one in
// uninterruptible sleep (a hung NFS server, say) takes longer, and no
// signal can do more for it.
const killWait = 5 * time.Second

func waitGone(members func() ([]int, error)) {
	deadline := time.Now().Add(killWait)
	for time.Now().Before(deadline) {
		if left, err := members(); err == nil && len(left) == 0 {
			return
		}
		time.Sleep(pollInterval)
	}
}

// waitExited blocks until process pid has exited but leaves it a zombie.
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// signalGroup sends sig to every process in group pgid. ESRCH (nobody
// left) is not an error: the goal, an empty group, is reached.
func signalGroup(pgid int, sig syscall.Signal) error {
	err := unix.Kill(-pgid, sig)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// LiveMembers returns the processes of group pgid that are not zombies.
// kill(-pgid, 0) cannot answer this: it succeeds as long as a zombie
// leader is in the group.
func LiveMembers(pgid int) ([]int, error) { return liveMembers(pgid) }

func liveMembers(pgid int) ([]int, error) {
	var out []int
	err := eachProc(func(pid int, st procStat) {
		if st.pgrp == pgid && st.state != 'Z' && st.state != 'X' {
			out = append(out, pid)
		}
	})
	return out, err
}

func eachProc(f func(pid int, st procStat)) error {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue // exited while we looked
		}
		f(pid, st)
	}
	return nil
}

type procStat struct {
	state     byte
	ppid      int
	pgrp      int
	startTick uint64
}

// Stat is what /proc/PID/stat says of a process that supervisors need.
type Stat struct {
	State     byte   // R, S, D, Z, X, ...
	Ppid      int    // parent process id
	Pgrp      int    // process group id
	StartTick uint64 // start time in clock ticks after boot
}

// ReadStat reads /proc/PID/stat. A process that does not exist gives an
// error matching fs.ErrNotExist.
func ReadStat(pid int) (Stat, error) {
	st, err := readStat(pid)
	return Stat{State: st.state, Ppid: st.ppid, Pgrp: st.pgrp, StartTick: st.startTick}, err
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	st, ok := parseStat(b)
	if !ok {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return st, nil
}

// parseStat reads /proc/PID/stat: "pid (comm) state ppid pgrp ... " with
// starttime the 22nd field. comm may hold spaces and parentheses, so
// fields are counted from the last ')'.
func parseStat(stat []byte) (procStat, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, false
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return procStat{}, false
	}
	pg, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return procStat{}, false
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return procStat{}, false
	}
	return procStat{state: f[0][0], ppid: ppid, pgrp: pg, startTick: start}, true
}

// StopLeftover stops what is left of a group that an earlier supervisor
// process started and could not stop itself (it was SIGKILLed or crashed),
// and returns the pids it signalled. Nothing here holds the group id, so
// it is checked against id first: if a process with the leader's pid runs
// with another start time, the number was reused and nothing is touched;
// otherwise the members of group id.Pgid that started no earlier than the
// leader did are stopped. One case no record can tell apart remains: the
// old group emptied, the pid counter wrapped round to exactly id.Pgid, and
// that new leader has exited too while its group lives on. Processes are
// signalled one by one, never as a group, so that a process that joins
// the group meanwhile is not hit unchecked.
func StopLeftover(id Ident, grace time.Duration) ([]int, error) {
	if id.Pgid <= 1 {
		return nil, fmt.Errorf("pgroup: invalid process group id %d", id.Pgid)
	}
	members := func() ([]int, error) {
		var out []int
		reused := false
		err := eachProc(func(pid int, st procStat) {
			if pid == id.Pgid && st.startTick != id.StartTick {
				reused = true
			}
			if st.pgrp != id.Pgid || st.state == 'Z' || st.state == 'X' || st.startTick < id.StartTick {
				return
			}
			out = append(out, pid)
		})
		if reused {
			return nil, err
		}
		return out, err
	}
	pids, err := members()
	if err != nil || len(pids) == 0 {
		return nil, err
	}
	signal := func(sig syscall.Signal) {
		left, _ := members()
		for _, p := range left {
			_ = unix.Kill(p, sig)
		}
	}
	signal(unix.SIGTERM)
	signal(unix.SIGCONT)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if left, err := members(); err == nil && len(left) == 0 {
			return pids, nil
		}
		time.Sleep(pollInterval)
	}
	signal(unix.SIGKILL)
	waitGone(members)
	return pids, nil
}

// launcher is the goroutine that starts every child with DieWithParent.
//
// The parent-death signal belongs to a thread, not to the process: the
// kernel sends it when the thread that forked the child exits. The Go
// runtime does end threads (a goroutine that returns while locked to its
// thread takes the thread with it) and forks from whichever thread runs
// the calling goroutine, so a child started from an arbitrary goroutine
// could be SIGKILLed while its supervisor lives on. Children that must die
// with the supervisor are therefore all forked from this one goroutine,
// locked to its thread for the life of the process and never returning.
var launcher struct {
	once sync.Once
	reqs chan func()
}

func onLauncherThread(f func()) {
	launcher.once.Do(func() {
		launcher.reqs = make(chan func())
		go func() {
			runtime.LockOSThread()
			// Never unlocked, and the loop never ends: see launcher.
			for req := range launcher.reqs {
				req()
			}
		}()
	})
	done := make(chan struct{})
	launcher.reqs <- func() {
		defer close(done)
		f()
	}
	<-done
}

// BootID identifies the running kernel boot; a record written under
// another boot names processes that no longer exist.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// Self identifies the calling process as a group would be (its pid and
// start time), so that a record can tell whether its writer still runs.
func Self() Ident {
	st, _ := readStat(os.Getpid())
	return Ident{Pgid: os.Getpid(), StartTick: st.startTick}
}

// Alive reports whether the process id names still runs: same pid, same
// start time, not a zombie.
func Alive(id Ident) bool {
	st, err := readStat(id.Pgid)
	return err == nil && st.startTick == id.StartTick && st.state != 'Z' && st.state != 'X'
}
