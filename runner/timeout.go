package runner

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/cluster"
)

// Avocado ends a task with SIGTERM whatever the cause: its task timeout
// ([task.timeout] running), the job timeout (--job-timeout), or a user's
// interrupt; then it reports "Timeout reached" itself only when the runner
// sent no finished message of its own. Ours always does (so the partition
// is released and the body's processes stopped first), and so has to say
// which it was. Avocado tells the runner nothing more, but the time budget
// it gave tells: the job timeout runs from the start of the test suite,
// which is after the avocado process started and before this runner did;
// the task timeout runs from this runner's spawn.

// interruptClock remembers when the runner started and how old its parent
// (the avocado job process) was then.
type interruptClock struct {
	started   time.Time
	parentAge time.Duration // -1 when unknown
	jobLimit  time.Duration // job.run.timeout, 0 for none
	taskLimit time.Duration // task.timeout.running, 0 for none
}

// userHZ is the unit of proc(5)'s start times; it is 100 on every Linux
// architecture Go supports.
const userHZ = 100

// taskSpawnSlack covers the time between Avocado spawning the runner and
// the runner reading its clock.
const taskSpawnSlack = time.Second

func newInterruptClock(cfg RunConfig) interruptClock {
	c := interruptClock{started: time.Now(), parentAge: -1, jobLimit: cfg.JobTimeout, taskLimit: cfg.TaskTimeout}
	if c.jobLimit == 0 {
		return c
	}
	o, err := cluster.ProcessOwner(os.Getppid(), "", "")
	var ts unix.Timespec
	if err == nil && unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		up := time.Duration(ts.Nano())
		born := time.Duration(o.PIDStart) * time.Second / userHZ
		if up >= born {
			c.parentAge = up - born
		}
	}
	return c
}

// reason words the interruption by sig as Avocado would ("Timeout
// reached"), naming which limit, when the time budget shows one was
// reached; otherwise it names the signal.
func (c interruptClock) reason(sig syscall.Signal, now time.Time) string {
	if sig == syscall.SIGTERM {
		ran := now.Sub(c.started)
		if c.taskLimit > 0 && ran+taskSpawnSlack >= c.taskLimit {
			return fmt.Sprintf("Test interrupted: Timeout reached (the task timeout of %s s)", seconds(c.taskLimit))
		}
		// The suite, and so the job deadline, started after the parent:
		// a SIGTERM before the parent is jobLimit old is something else.
		if c.jobLimit > 0 && c.parentAge >= 0 && c.parentAge+ran >= c.jobLimit {
			return fmt.Sprintf("Test interrupted: Timeout reached (the job timeout of %s s, --job-timeout)", seconds(c.jobLimit))
		}
	}
	return fmt.Sprintf("Test interrupted: runner received %s", signalName(sig))
}
