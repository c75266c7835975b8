package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/etcdstore"
	"github.com/vtcluster/vtcluster/cluster/logserver"
)

// Cluster is what a multihost test needs from the cluster: nodes, their
// logs, remote commands, file collection. The runner drives it; bridge
// provides the implementation backed by package cluster. Tests with no
// nodes never touch it.
//
// Every method gets a context with a deadline and must return when it
// ends. If the value also implements io.Closer, the runner closes it when
// the test is over.
type Cluster interface {
	// Allocate reserves one node per requested tag and returns them in
	// request order. It may wait for busy nodes until ctx ends. The
	// partition stays reserved until Release; keeping its lease alive
	// meanwhile is the implementation's business.
	Allocate(ctx context.Context, req AllocRequest) (*Partition, error)
	// StartLogs forwards the partition's agent logs to sink until stop is
	// called (stop waits for in-flight records and may be called more
	// than once). sink may be called from several goroutines.
	StartLogs(ctx context.Context, p *Partition, sink LogSink) (stop func(), err error)
	// Exec runs argv on node (no shell) and returns its outcome. A
	// non-zero exit is not an error; an error means it could not run or
	// the connection failed.
	Exec(ctx context.Context, node PartitionNode, argv []string, opts ExecOptions) (ExecResult, error)
	// Collect fetches paths (tag -> remote paths) plus whatever the
	// implementation always collects (agent logs) into dir/<tag>/,
	// never writing outside dir.
	Collect(ctx context.Context, p *Partition, paths map[string][]string, dir string) error
	// Release gives the nodes back. It must be safe to call once for
	// every partition Allocate returned, whatever happened in between.
	Release(ctx context.Context, p *Partition) error
}

// ClusterFactory opens the cluster named by the runner's settings; it is
// called only for tests that have nodes.
type ClusterFactory func(ctx context.Context, cfg RunConfig, log *slog.Logger) (Cluster, error)

// AllocRequest asks for the nodes of one test.
type AllocRequest struct {
	// JobID and TestID identify the holder (Avocado's -j and -i).
	JobID, TestID string
	// Nodes are the roles in the test's order, each with its selectors.
	Nodes []NodeSpec
	// Lease is the lease to ask for; zero means the cluster default.
	Lease time.Duration
	// Resources are reserved with the nodes, in the same step, by a
	// cluster that implements resourceCluster; others refuse them.
	Resources []ResourceSpec
	// Priority ranks the request among waiting ones (multihost.priority).
	Priority int
	// Waiting, when set, is told why the request waits, in words for the
	// test's log: when it starts waiting, then every so often.
	Waiting func(msg string)
	// Avoid are nodes to use only when no others can serve (a retry
	// after an infrastructure failure on them).
	Avoid []string
}

// Partition is the set of nodes a test holds.
type Partition struct {
	ID    string
	Nodes []PartitionNode
	// HandOver names what earlier owners left running on the nodes and
	// was stopped before the nodes were handed to this test.
	HandOver []string
}

// Node returns the node with tag.
func (p *Partition) Node(tag string) (PartitionNode, bool) {
	for _, n := range p.Nodes {
		if n.Tag == tag {
			return n, true
		}
	}
	return PartitionNode{}, false
}

// PartitionNode is one node of a partition, as the test sees it.
type PartitionNode struct {
	Tag      string
	Name     string
	Address  string
	AgentURL string
	// Properties are the collected node properties and labels
	// (hostname, arch, cpu_count, ...).
	Properties map[string]any
	// Resources are the test's resources on this node by name: a
	// volume's path, a tap port's interface name.
	Resources map[string]string
	// MACs are the guest NIC addresses the resource manager chose for
	// the port resources' taps on this node, by resource name (vms.go).
	MACs map[string]string
}

// ExecOptions tune Cluster.Exec.
type ExecOptions struct {
	// Timeout kills the command after this long; zero means none.
	Timeout time.Duration
	// Env is added to the command's (minimal) environment.
	Env map[string]string
}

// ExecResult is what a remote command did.
type ExecResult struct {
	ExitCode                         int
	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool
	TimedOut                         bool
	Duration                         time.Duration
}

// LogRecord is one line of a node's log.
type LogRecord struct {
	Tag, Node string
	// Logger is the Python logger name on the node, e.g.
	// "avocado.service.process".
	Logger string
	// Level is the Python level name ("INFO").
	Level string
	Text  string
}

// LogSink receives forwarded log records.
type LogSink func(LogRecord)

// outcome is a test's result.
type outcome struct {
	Result     string
	Reason     string
	ReturnCode *int
	// Class is the finished message's fail_class, which Avocado keeps in
	// the test's result: InfraClass for infrastructure failures.
	Class string
}

func (o outcome) message() message {
	m := finishedMessage(o.Result, o.Reason, o.ReturnCode)
	if o.Class != "" {
		m = append(m, field{Key: "fail_class", Value: o.Class})
	}
	return m
}

// interruptedError is the cause of a run cancelled by a signal or by the
// test's timeout; reason becomes the finished message's fail_reason.
type interruptedError struct {
	reason   string
	bySignal bool

	once     sync.Once
	deadline time.Time
}

func (e *interruptedError) Error() string { return e.reason }

// teardownDeadline is when the teardown after this interruption must be
// over: interruptTeardown after the first teardown step asked.
func (e *interruptedError) teardownDeadline() time.Time {
	e.once.Do(func() { e.deadline = time.Now().Add(interruptTeardown) })
	return e.deadline
}

// Budgets for the end of a test. After a signal everything must fit well
// under the second Avocado waits before SIGKILL.
const (
	interruptTeardown = 300 * time.Millisecond
	releaseTimeout    = 30 * time.Second
	collectTimeout    = 5 * time.Minute
	logStopTimeout    = 5 * time.Second
)

// seconds formats d the way spec files write it.
func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

// testRun is one test being run.
type testRun struct {
	spec       *SpecFile
	test       *Test
	runnable   runnable
	cfg        RunConfig
	outputDir  string
	workDir    string
	jobID      string
	taskID     string
	environ    []string
	rep        *reporter
	newCluster ClusterFactory
	procs      *procGroups
	trap       *panicTrap
	// events is the record the timeline is drawn from (events.go).
	events *Events
	// sync is the test's synchronisation (sync_stage.go); nil without nodes.
	sync *syncRun
	// tried are the nodes an attempt used or failed on, which a retry
	// after an infrastructure failure avoids (retry.go).
	tried []string
	// vms are the test's running VMs, set by the vms stage (vmstage.go).
	vms *vmRun
}

// teardownCtx returns the context for cleanup after the body: a short
// budget when the run was interrupted by a signal, the normal one
// otherwise; never the (possibly cancelled) run context itself.
//
// After a signal the budget is one for the whole teardown, not one per
// stage: every stage's teardown shares the deadline the first one set, so
// the stages together fit in what Avocado waits before SIGKILL.
func teardownCtx(ctx context.Context, normal time.Duration) (context.Context, context.CancelFunc) {
	if interrupted(ctx) {
		var ie *interruptedError
		errors.As(context.Cause(ctx), &ie)
		return context.WithDeadline(context.WithoutCancel(ctx), ie.teardownDeadline())
	}
	return context.WithTimeout(context.WithoutCancel(ctx), normal)
}

func (r *testRun) logf(ctx context.Context, format string, args ...any) {
	// Errors may quote what a node chose (file names, faults): none of it
	// may start a line of the test's log.
	msg := logserver.LogSafe(fmt.Sprintf(format, args...))
	r.events.Log("", "INFO", msg)
	text := time.Now().Format("2006-01-02 15:04:05") + " | " + msg
	r.rep.Send(ctx, logMessage("", "", text))
}

// nodeWatcher is implemented by clusters that notice a node dying while a
// test runs; the test then ends at once as ERROR naming the node, instead
// of running into its timeout (the other nodes are released as usual).
type nodeWatcher interface {
	Watch(ctx context.Context, p *Partition) <-chan error
}

// nodeLostError is the cause of a body cancelled because a node died.
type nodeLostError struct{ err error }

func (e *nodeLostError) Error() string { return e.err.Error() }
func (e *nodeLostError) Unwrap() error { return e.err }

// interruptOutcome turns a cancelled context into the test's outcome.
func interruptOutcome(ctx context.Context) outcome {
	cause := context.Cause(ctx)
	var lost *nodeLostError
	if errors.As(cause, &lost) {
		return outcome{Result: resultError, Reason: InfraPrefix + lost.Error(), Class: InfraClass}
	}
	var ie *interruptedError
	if errors.As(cause, &ie) {
		return outcome{Result: resultInterrupted, Reason: ie.reason}
	}
	return outcome{Result: resultInterrupted, Reason: fmt.Sprintf("Test interrupted: %v", cause)}
}

// stage is one step of a test's life. execute runs the setups in order
// and, on every path (pass, fail, error, timeout, signal, node loss), the
// teardowns of the stages whose setup succeeded, in reverse order, so each
// stage undoes exactly what it did. A teardown may turn a passing outcome
// into an error (a partition that cannot be released), never hide a
// failure.
type stage struct {
	name string
	// setup does the stage's work; a false ok ends the test with out
	// (the teardowns of the earlier stages still run).
	setup func(ctx context.Context, rs *runState) (out outcome, ok bool)
	// teardown undoes setup; nil if there is nothing to undo. out is the
	// outcome so far.
	teardown func(ctx context.Context, rs *runState, out *outcome)
}

// runState is what the stages hand on to each other.
type runState struct {
	cl   Cluster
	part *Partition
	// resources describe what the resource stage acquired, for the
	// partition file and the environment.
	resources []acquiredResource
	env       []string
	// stopLogs stops log forwarding; nil when it did not start.
	stopLogs func()
	// held is set when the partition is kept for debugging (hold.go):
	// the resources and the nodes are then not given back.
	held bool
}

// resourceCluster is implemented by clusters that provide the resources a
// test declares (volumes, tap ports). Reserving them is part of Allocate
// (see AllocRequest.Resources); Acquire makes them real on the nodes and
// Release removes them there. Release must be safe to call whatever
// Acquire did, and must be called once per partition.
type resourceCluster interface {
	AcquireResources(ctx context.Context, p *Partition, specs []ResourceSpec) ([]acquiredResource, error)
	ReleaseResources(ctx context.Context, p *Partition) error
}

// stages is the per-test lifecycle, in setup order.
func (r *testRun) stages() []stage {
	// The record is written last, whatever happened (timeline.go).
	st := []stage{{name: "record", setup: noSetup, teardown: r.writeRecordStage}}
	if len(r.test.Nodes) > 0 {
		st = append(st,
			stage{name: "cluster", setup: r.openCluster, teardown: r.closeCluster},
			stage{name: "partition", setup: r.allocateStage, teardown: r.releaseStage},
			stage{name: "logs", setup: r.logsStage, teardown: func(_ context.Context, rs *runState, _ *outcome) {
				if rs.stopLogs != nil {
					rs.stopLogs()
				}
			}},
			stage{name: "resources", setup: r.resourcesStage, teardown: r.releaseResourcesStage},
			// Collecting is undone last before the resources go, so
			// files on a volume can still be fetched.
			stage{name: "collect", setup: func(context.Context, *runState) (outcome, bool) { return outcome{}, true }, teardown: r.collectStage},
			// VMs stop before anything is collected or released.
			stage{name: "vms", setup: r.vmsStage, teardown: r.stopVMsStage},
			// After a failure: first the evidence (bundle.go, VM consoles
			// included, while the VMs still run), then the decision to
			// keep the nodes (hold.go), which the VMs', resources' and
			// partition's teardowns respect.
			stage{name: "hold", setup: noSetup, teardown: r.holdStage},
			stage{name: "failure bundle", setup: noSetup, teardown: r.bundleStage},
		)
	}
	return append(st,
		stage{name: "partition file", setup: r.partitionFileStage},
		stage{name: "sync", setup: r.syncStage, teardown: r.syncTeardown},
		stage{name: "body", setup: r.bodyStage},
	)
}

// execute runs the stages; see stage.
func (r *testRun) execute(ctx context.Context) (out outcome) {
	if r.events == nil {
		r.events = NewEvents()
	}
	ctx = ContextWithEvents(ctx, r.events)
	start := time.Now()
	rs := &runState{part: &Partition{}}
	stages := r.stages()
	done := 0
	defer func() {
		for i := done - 1; i >= 0; i-- {
			if td := stages[i].teardown; td != nil && i == 0 {
				td(ctx, rs, &out) // the record: it cannot record its own end
			} else if td != nil {
				end := r.events.Begin(Event{Kind: KindTeardown, Name: stages[i].name})
				td(ctx, rs, &out)
				end(SeverityInfo, "")
			}
		}
		r.reportTiming(ctx, start)
	}()
	for _, s := range stages {
		end := timeSpan(ctx, s.name)
		o, ok := s.setup(ctx, rs)
		end()
		// A stage that failed has undone its own work.
		if !ok {
			return o
		}
		done++
		out = o
	}
	return out
}

func (r *testRun) openCluster(ctx context.Context, rs *runState) (outcome, bool) {
	if r.newCluster == nil {
		return outcome{Result: resultError, Reason: "runner: this test needs nodes but the runner has no cluster backend"}, false
	}
	cl, err := r.newCluster(ctx, r.cfg, r.warnLogger(ctx))
	if err != nil {
		return outcome{Result: resultError, Reason: fmt.Sprintf("runner: opening the cluster: %v", err)}, false
	}
	rs.cl = cl
	return outcome{}, true
}

func (r *testRun) closeCluster(_ context.Context, rs *runState, _ *outcome) {
	if c, ok := rs.cl.(io.Closer); ok {
		c.Close()
	}
}

func (r *testRun) allocateStage(ctx context.Context, rs *runState) (outcome, bool) {
	p, o, ok := r.allocate(ctx, rs.cl)
	if ok {
		rs.part = p
	}
	return o, ok
}

func (r *testRun) releaseStage(ctx context.Context, rs *runState, out *outcome) {
	rctx, cancel := teardownCtx(ctx, releaseTimeout)
	defer cancel()
	if rs.held {
		r.keepHeld(rctx, rs)
		return
	}
	if err := rs.cl.Release(rctx, rs.part); err != nil {
		r.logf(rctx, "releasing partition %s: %v", rs.part.ID, err)
		if out.Result == resultPass {
			*out = outcome{Result: resultError, Reason: fmt.Sprintf("runner: releasing partition %s: %v", rs.part.ID, err)}
		}
		return
	}
	r.logf(rctx, "released partition %s", rs.part.ID)
}

// logsStage starts log forwarding. It never fails the test: upstream
// treats log forwarding as best effort.
func (r *testRun) logsStage(ctx context.Context, rs *runState) (outcome, bool) {
	stop := r.startLogs(ctx, rs.cl, rs.part)
	if stop == nil {
		return outcome{}, true
	}
	rs.stopLogs = func() {
		done := make(chan struct{})
		go func() {
			defer r.trap.catch()
			defer close(done)
			stop()
		}()
		sctx, cancel := teardownCtx(ctx, logStopTimeout)
		defer cancel()
		select {
		case <-done:
		case <-sctx.Done():
			r.logf(sctx, "log forwarding did not stop in time")
		}
	}
	return outcome{}, true
}

func (r *testRun) resourcesStage(ctx context.Context, rs *runState) (outcome, bool) {
	if len(r.test.Resources) == 0 {
		return outcome{}, true
	}
	rc, ok := rs.cl.(resourceCluster)
	if !ok {
		return outcome{Result: resultError, Reason: "runner: this test declares resources but the cluster backend has no resource manager"}, false
	}
	r.logf(ctx, "acquiring %d resources", len(r.test.Resources))
	endAcquire := r.events.Begin(Event{Kind: KindResource, Name: "acquire"})
	got, err := rc.AcquireResources(ctx, rs.part, r.test.Resources)
	endAcquire(severityOf(err), errText(err))
	if err != nil {
		// Whatever was made before the error goes now: this stage's
		// teardown will not run.
		r.releaseResourcesStage(ctx, rs, &outcome{})
		if ctx.Err() != nil {
			return interruptOutcome(ctx), false
		}
		return outcome{Result: resultError, Reason: fmt.Sprintf("runner: acquiring resources: %v", err)}, false
	}
	rs.resources = got
	for _, a := range got {
		r.logf(ctx, "resource %s (%s) on %s: %s", a.Name, a.Type, a.Tag, a.Value)
		node, _ := rs.part.Node(a.Tag)
		r.events.Add(Event{Tag: a.Tag, Node: node.Name, Kind: KindResource, Name: a.Name, Detail: a.Type + ": " + a.Value})
		for i := range rs.part.Nodes {
			if n := &rs.part.Nodes[i]; n.Tag == a.Tag {
				if n.Resources == nil {
					n.Resources = map[string]string{}
				}
				n.Resources[a.Name] = a.Value
				if a.MAC != "" {
					if n.MACs == nil {
						n.MACs = map[string]string{}
					}
					n.MACs[a.Name] = a.MAC
				}
			}
		}
	}
	return outcome{}, true
}

func (r *testRun) releaseResourcesStage(ctx context.Context, rs *runState, out *outcome) {
	if len(r.test.Resources) == 0 || rs.held {
		return
	}
	rc, ok := rs.cl.(resourceCluster)
	if !ok {
		return
	}
	rctx, cancel := teardownCtx(ctx, releaseTimeout)
	defer cancel()
	endRelease := r.events.Begin(Event{Kind: KindResource, Name: "release"})
	err := rc.ReleaseResources(rctx, rs.part)
	endRelease(severityOf(err), errText(err))
	if err != nil {
		r.logf(rctx, "releasing resources of partition %s: %v", rs.part.ID, err)
		if out.Result == resultPass {
			*out = outcome{Result: resultError, Reason: fmt.Sprintf("runner: releasing resources: %v", err)}
		}
		return
	}
	r.logf(rctx, "released resources of partition %s", rs.part.ID)
}

func (r *testRun) collectStage(ctx context.Context, rs *runState, _ *outcome) {
	if ctx.Err() != nil {
		return
	}
	cctx, cancel := teardownCtx(ctx, collectTimeout)
	defer cancel()
	if err := rs.cl.Collect(cctx, rs.part, r.test.Collect, filepath.Join(r.outputDir, "cluster")); err != nil {
		// Missing logs do not change what the test did.
		r.logf(cctx, "collecting files from the nodes: %v", err)
	}
}

func (r *testRun) partitionFileStage(_ context.Context, rs *runState) (outcome, bool) {
	env, err := r.writePartition(rs.part, rs.resources)
	if err != nil {
		return outcome{Result: resultError, Reason: err.Error()}, false
	}
	rs.env = env
	return outcome{}, true
}

// bodyStage runs the body under the test's timeout and, when the cluster
// can tell, ends it at once when a node dies.
func (r *testRun) bodyStage(ctx context.Context, rs *runState) (outcome, bool) {
	bctx, cancel := ctx, context.CancelFunc(func() {})
	if r.test.Timeout > 0 {
		bctx, cancel = context.WithTimeoutCause(ctx, r.test.Timeout,
			&interruptedError{reason: fmt.Sprintf("Test interrupted: test timeout of %s s reached", seconds(r.test.Timeout))})
	}
	if w, ok := rs.cl.(nodeWatcher); ok {
		wctx, wcancel := context.WithCancelCause(bctx)
		lost := w.Watch(wctx, rs.part)
		go func() {
			select {
			case err := <-lost:
				r.syncLost(err)
				wcancel(&nodeLostError{err})
				r.events.Add(Event{Kind: KindNodeLost, Name: "test ended: node lost", Detail: err.Error(), Severity: SeverityError})
				// Logged when seen, so debug.log shows how long detection
				// took even if the teardown that follows is cut short.
				r.logf(wctx, "%v", err)
			case <-wctx.Done():
			}
		}()
		prev := cancel
		bctx, cancel = wctx, func() { wcancel(nil); prev() }
	}
	defer cancel()
	end := r.events.Begin(Event{Kind: KindBody, Name: "body"})
	out := r.body(bctx, rs.cl, rs.part, rs.env)
	end(outcomeSeverity(out), outcomeText(out))
	return out, true
}

func (r *testRun) allocate(ctx context.Context, cl Cluster) (*Partition, outcome, bool) {
	actx, cancel := context.WithTimeout(ctx, r.cfg.AllocTimeout)
	defer cancel()
	r.logf(ctx, "allocating nodes %s", strings.Join(r.test.NodeTags(), ", "))
	endAlloc := r.events.Begin(Event{Kind: KindAllocation, Name: "allocation", Detail: "tags " + strings.Join(r.test.NodeTags(), ", ")})
	p, err := cl.Allocate(actx, AllocRequest{JobID: r.jobID, TestID: r.taskID, Nodes: r.test.Nodes, Lease: r.cfg.Lease, Resources: r.test.Resources,
		Priority: r.cfg.Priority, Waiting: func(msg string) { r.logf(ctx, "%s", msg) }, Avoid: r.tried})
	r.noteTried(p, err)
	if err != nil {
		endAlloc(SeverityError, err.Error())
	} else {
		endAlloc(SeverityInfo, "partition "+p.ID)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, interruptOutcome(ctx), false
	case err != nil && isInfra(err):
		return nil, outcome{Result: resultError, Reason: InfraPrefix + "allocating nodes: " + err.Error(), Class: InfraClass}, false
	case err != nil:
		return nil, outcome{Result: resultError, Reason: fmt.Sprintf("runner: allocating nodes: %v", err)}, false
	}
	for _, ns := range r.test.Nodes {
		if _, ok := p.Node(ns.Tag); !ok {
			rctx, rcancel := teardownCtx(ctx, releaseTimeout)
			defer rcancel()
			cl.Release(rctx, p)
			return nil, outcome{Result: resultError, Reason: fmt.Sprintf("runner: partition %s has no node for tag %q", p.ID, ns.Tag)}, false
		}
	}
	for _, n := range p.Nodes {
		r.logf(ctx, "partition %s: %s = %s (%s)", p.ID, n.Tag, n.Name, n.Address)
	}
	for _, h := range p.HandOver {
		r.logf(ctx, "%s", h)
	}
	r.recordHandOver(p)
	return p, outcome{}, true
}

// startLogs forwards node logs into debug.log (as log messages on the
// node's logger) and into <output_dir>/cluster/<tag>/streamed.log. A
// failure is only a warning, as upstream treats it.
func (r *testRun) startLogs(ctx context.Context, cl Cluster, p *Partition) func() {
	files := map[string]*os.File{}
	var mu sync.Mutex
	for _, n := range p.Nodes {
		dir := filepath.Join(r.outputDir, "cluster", n.Tag)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			r.logf(ctx, "node log directory: %v", err)
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, "streamed.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			r.logf(ctx, "node log file: %v", err)
			continue
		}
		files[n.Tag] = f
	}
	closeFiles := func() {
		mu.Lock()
		defer mu.Unlock()
		for tag, f := range files {
			f.Close()
			delete(files, tag)
		}
	}
	sink := func(rec LogRecord) {
		defer r.trap.catch()
		// Records from the log server are already upstream's unified line,
		// which starts with the tag; others get the tag in front.
		text := rec.Text
		if !strings.HasPrefix(text, rec.Tag+"(") {
			text = fmt.Sprintf("[%s] %s", rec.Tag, rec.Text)
		}
		logger := rec.Logger
		if logger == "" {
			logger = "avocado.service"
		}
		r.rep.Send(ctx, logMessage(logger, rec.Level, text))
		r.events.Log(rec.Tag, rec.Level, rec.Text)
		mu.Lock()
		if f := files[rec.Tag]; f != nil {
			fmt.Fprintf(f, "%s %s %s: %s\n", time.Now().Format("2006-01-02 15:04:05.000"), rec.Level, logger, rec.Text)
		}
		mu.Unlock()
	}
	stop, err := cl.StartLogs(ctx, p, sink)
	if err != nil {
		r.logf(ctx, "log forwarding from the nodes failed, continuing without it: %v", err)
		closeFiles()
		return nil
	}
	return func() {
		stop()
		closeFiles()
	}
}

// writePrivateFile writes data to path for this user only: the agent URLs
// in a partition file carry the proxy's secret. The directory becomes 0700
// so that no one else can swap the file, and the file is written anew, so
// neither an older file's mode nor a planted symlink carries over.
func writePrivateFile(path string, data []byte) error {
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writePartition writes <output_dir>/partition.json and returns the
// environment for the body.
func (r *testRun) writePartition(p *Partition, res []acquiredResource) ([]string, error) {
	nodes := message{}
	for _, n := range p.Nodes {
		props := n.Properties
		if props == nil {
			props = map[string]any{}
		}
		nodes = append(nodes, field{Key: n.Tag, Value: message{{Key: "name", Value: n.Name}, {Key: "address", Value: n.Address}, {Key: "agent_url", Value: n.AgentURL}, {Key: "properties", Value: props}}})
	}
	pf := message{{Key: "id", Value: p.ID}, {Key: "nodes", Value: nodes}}
	if len(res) > 0 {
		pf = append(pf, field{Key: "resources", Value: resourceMessage(res)})
	}
	if vms := r.vmPartitionSection(p); vms != nil {
		b, _ := json.Marshal(vms)
		v, err := py.Loads(b)
		if err != nil {
			return nil, fmt.Errorf("runner: partition file: vms: %w", err)
		}
		pf = append(pf, field{Key: "vms", Value: v})
	}
	data, err := marshalMessage(pf)
	if err != nil {
		return nil, fmt.Errorf("runner: partition file: %w", err)
	}
	path := filepath.Join(r.outputDir, "partition.json")
	if err := writePrivateFile(path, append(data, '\n')); err != nil {
		return nil, fmt.Errorf("runner: partition file: %w", err)
	}
	vars := map[string]string{}
	// Like exec-test, keyword arguments become environment variables.
	for k, v := range r.runnable.Kwargs {
		if k == "test" || !envNameRE.MatchString(k) {
			continue
		}
		if s, ok := v.(string); ok {
			vars[k] = s
		} else if data, err := json.Marshal(v); err == nil {
			vars[k] = string(data)
		}
	}
	for k, v := range r.test.Body.Env {
		vars[k] = v
	}
	tags := make([]string, len(p.Nodes))
	for i, n := range p.Nodes {
		tags[i] = n.Tag
		t := envTag(n.Tag)
		vars[envNodePrefix+t+"_ADDRESS"] = n.Address
		vars[envNodePrefix+t+"_NAME"] = n.Name
		vars[envNodePrefix+t+"_URL"] = n.AgentURL
	}
	resourceEnv(vars, res)
	vars[cluster.EnvPartitionFile] = path
	vars[cluster.EnvPartitionID] = p.ID
	vars[envNodes] = strings.Join(tags, " ")
	vars[envOutputDir] = r.outputDir
	vars[envTestName] = r.test.Name
	vars[envSpecFile] = r.spec.Path
	vars[envAvocadoOut] = r.outputDir
	if r.workDir != "" {
		vars[envAvocadoWD] = r.workDir
	}
	if r.cfg.State != "" {
		// The body's vtcluster commands use the store the runner uses.
		vars[etcdstore.EnvState] = r.cfg.State
	}
	if r.cfg.StateDir != "" {
		vars[cluster.EnvStateDir] = r.cfg.StateDir
	}
	if r.cfg.Cluster != "" {
		vars[cluster.EnvCluster] = r.cfg.Cluster
	}
	if r.cfg.Binary != "" {
		vars[envBinary] = r.cfg.Binary
	}
	return mergeEnv(r.environ, vars), nil
}

// mergeEnv returns base with vars set, dropping inherited partition
// variables so a body never sees another test's nodes.
func mergeEnv(base []string, vars map[string]string) []string {
	out := make([]string, 0, len(base)+len(vars))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, set := vars[k]; set || strings.HasPrefix(k, envNodePrefix) || strings.HasPrefix(k, "VTCLUSTER_PARTITION_") ||
			strings.HasPrefix(k, envResPrefix) {
			continue
		}
		out = append(out, kv)
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+vars[k])
	}
	return out
}

// body runs the steps, then the command.
func (r *testRun) body(ctx context.Context, cl Cluster, p *Partition, env []string) outcome {
	for i, st := range r.test.Body.Steps {
		run := r.step
		if st.Sync != nil {
			run = r.syncStep
		}
		if o, ok := run(ctx, cl, p, i+1, st); !ok {
			return o
		}
	}
	if len(r.test.Body.Command) == 0 {
		if ctx.Err() != nil {
			return interruptOutcome(ctx)
		}
		return outcome{Result: resultPass}
	}
	argv := append(append([]string(nil), r.test.Body.Command...), r.runnable.Args...)
	res := runCommand(ctx, commandSpec{argv: argv, dir: r.spec.Dir, env: env}, r.rep, r.procs, r.trap)
	switch {
	case res.startErr != nil:
		return outcome{Result: resultError, Reason: res.startErr.Error()}
	case ctx.Err() != nil:
		return interruptOutcome(ctx)
	case r.test.ResultFile != "":
		return r.pyClassOutcome(ctx, res)
	case res.signal != 0:
		return outcome{Result: resultFail, Reason: fmt.Sprintf("command %s was killed by signal %s", py.Repr(argv[0]), signalName(res.signal)), ReturnCode: &res.exitCode}
	case res.exitCode != 0:
		return outcome{Result: resultFail, Reason: fmt.Sprintf("command %s exited with status %d", py.Repr(argv[0]), res.exitCode), ReturnCode: &res.exitCode}
	}
	rc := 0
	return outcome{Result: resultPass, ReturnCode: &rc}
}

// step runs one step on its nodes; ok is false when the test must stop.
func (r *testRun) step(ctx context.Context, cl Cluster, p *Partition, n int, st Step) (outcome, bool) {
	type nodeResult struct {
		tag string
		res ExecResult
		err error
	}
	if st.VM != nil {
		return r.runVMStep(ctx, cl, p, n, st.VM)
	}
	results := make([]nodeResult, len(st.On))
	r.syncStepStarts(ctx, n, st.On)
	runOne := func(i int) {
		tag := st.On[i]
		node, _ := p.Node(tag)
		results[i].tag = tag
		argv, err := r.expandStepArgv(ctx, tag, st.Run, st.Timeout, p)
		if err != nil {
			results[i].err = err
			return
		}
		r.logf(ctx, "step %d on %s (%s): %s", n, tag, node.Name, py.Repr(argv))
		end := r.events.Begin(Event{Tag: tag, Node: node.Name, Kind: KindStep, Name: fmt.Sprintf("step %d", n), Detail: py.Repr(argv)})
		results[i].res, results[i].err = cl.Exec(ctx, node, argv, ExecOptions{Timeout: st.Timeout, Env: r.syncEnv(tag)})
		end(stepSeverity(results[i].res, results[i].err), stepText(results[i].res, results[i].err))
		r.syncExecDone(ctx, n, tag, results[i].res, results[i].err)
		if results[i].err == nil {
			r.stepOutput(ctx, n, tag, results[i].res)
		}
	}
	if st.Parallel {
		var wg sync.WaitGroup
		for i := range st.On {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer r.trap.catch()
				runOne(i)
			}()
		}
		wg.Wait()
	} else {
		for i := range st.On {
			runOne(i)
			if results[i].err != nil || results[i].res.ExitCode != 0 || results[i].res.TimedOut || ctx.Err() != nil {
				results = results[:i+1]
				break
			}
		}
	}
	if ctx.Err() != nil {
		return interruptOutcome(ctx), false
	}
	for _, res := range results {
		prefix := fmt.Sprintf("step %d on %s", n, res.tag)
		switch {
		case res.err != nil:
			return outcome{Result: resultError, Reason: fmt.Sprintf("%s: %v", prefix, res.err)}, false
		case res.res.TimedOut:
			return outcome{Result: resultFail, Reason: fmt.Sprintf("%s: %s timed out after %s s", prefix, py.Repr(st.Run[0]), seconds(st.Timeout))}, false
		case res.res.ExitCode != 0:
			rc := res.res.ExitCode
			return outcome{Result: resultFail, Reason: fmt.Sprintf("%s: %s exited with status %d", prefix, py.Repr(st.Run[0]), rc), ReturnCode: &rc}, false
		}
	}
	return outcome{}, true
}

// stepOutput sends a remote command's output as the test's stdout and
// stderr, after a log line saying where it came from.
func (r *testRun) stepOutput(ctx context.Context, n int, tag string, res ExecResult) {
	r.logf(ctx, "step %d on %s: exit status %d after %.2f s", n, tag, res.ExitCode, res.Duration.Seconds())
	for _, s := range []struct {
		name      string
		data      []byte
		truncated bool
	}{{"stdout", res.Stdout, res.StdoutTruncated}, {"stderr", res.Stderr, res.StderrTruncated}} {
		if len(s.data) == 0 {
			continue
		}
		out := newOutputStream(s.name, func(m message) { r.rep.Send(ctx, m) })
		out.Write(s.data)
		out.Close()
		if s.truncated {
			r.logf(ctx, "step %d on %s: %s was truncated by the agent", n, tag, s.name)
		}
	}
}
