package runner

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
)

// reporter stamps and delivers the status messages of one task: to every
// status server and, as Python repr lines, to stdout. It guarantees what
// Avocado 113.0 cannot survive without: every message has a non-zero
// CLOCK_MONOTONIC time and the task's id/job_id, and exactly one finished
// message is sent, after everything else. A reporter is safe for concurrent
// use.
type reporter struct {
	mu        sync.Mutex
	status    *statusClient
	out       io.Writer
	task      bool
	id        any
	jobID     *string
	outputDir string
	lastTime  float64
	finished  bool
	sent      int
	errs      []error
}

// reporterConfig says where messages go and what identity they carry.
type reporterConfig struct {
	// Status receives every message; nil for none.
	Status *statusClient
	// Stdout receives one Python repr line per message; nil for none.
	Stdout io.Writer
	// task selects task mode: id (and job_id when JobID is set) are added
	// to every message.
	Task  bool
	ID    any
	JobID *string
	// OutputDir is added to the started message when not empty. In task
	// mode it must be set: Avocado drops a connection whose started
	// message lacks it, and the job then hangs.
	OutputDir string
}

// newReporter returns a reporter for one task.
func newReporter(cfg reporterConfig) *reporter {
	r := &reporter{status: cfg.Status, task: cfg.Task, id: cfg.ID, jobID: cfg.JobID, outputDir: cfg.OutputDir}
	r.out = cfg.Stdout
	return r
}

// finishTimeout is how long Finish may still take when its context is
// already cancelled, so the last message is not lost to the cancellation
// that ended the test. Avocado SIGKILLs 1 s after SIGTERM.
const finishTimeout = 500 * time.Millisecond

// Send delivers m (status "started" or "running"). It reports false when
// m was dropped because the task has already finished. Delivery failures
// are collected in Err, not returned: a test keeps running when one of
// several status servers goes away.
func (r *reporter) Send(ctx context.Context, m message) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return false
	}
	// Output and logs of a cancelled test still go out; the write timeout
	// bounds them.
	r.deliver(context.WithoutCancel(ctx), m)
	return true
}

// Finish delivers the finished message m. Only the first call sends;
// later calls report false and send nothing, so every exit path may call
// it without risking a second finished message.
func (r *reporter) Finish(ctx context.Context, m message) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return false
	}
	r.finished = true
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		defer cancel()
	}
	r.deliver(ctx, m)
	return true
}

// Finished reports whether Finish has been called.
func (r *reporter) Finished() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finished
}

// Err returns the delivery failures so far.
func (r *reporter) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.errs...)
}

// Sent returns how many messages were delivered or attempted.
func (r *reporter) Sent() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent
}

func (r *reporter) deliver(ctx context.Context, m message) {
	t := monotonic()
	if t < r.lastTime {
		t = r.lastTime // never let time run backwards within a task
	}
	r.lastTime = t
	m = append(m[:len(m):len(m)], field{Key: "time", Value: t})
	if status, _ := m.Get("status"); status == "started" && r.outputDir != "" {
		m = append(m, field{Key: "output_dir", Value: r.outputDir})
	}
	if r.task {
		m = append(m, field{Key: "id", Value: r.id})
		if r.jobID != nil {
			m = append(m, field{Key: "job_id", Value: *r.jobID})
		}
	}
	r.sent++
	if r.status != nil {
		line, err := encodeLine(m)
		if err == nil {
			err = r.status.Post(ctx, line)
		}
		if err != nil {
			r.errs = append(r.errs, err)
		}
	}
	if r.out != nil {
		// Printing is a courtesy for humans and Avocado's selftests;
		// Avocado itself sends stdout to /dev/null. Errors are ignored.
		// One write per line, so a reader never sees half of one.
		r.out.Write([]byte(py.Repr(m) + "\n"))
	}
}

// Close closes the status connections.
func (r *reporter) Close() error {
	if r.status == nil {
		return nil
	}
	return r.status.Close()
}
