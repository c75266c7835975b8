package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
)

// Options configure Main.
type Options struct {
	// Args is the command line, argv[0] included; its basename gives the
	// default kind (avocado-runner-<kind>).
	Args   []string
	Stdout io.Writer
	Stderr io.Writer
	// Environ is the environment the body starts from (and where TMPDIR,
	// TEMP and TMP are looked up); nil means os.Environ().
	Environ []string
	// NewCluster opens the cluster for tests that have nodes; nil makes
	// such tests end in error.
	NewCluster ClusterFactory
	// Status tunes the status server client; zero means
	// defaultStatusConfig().
	Status StatusConfig
	// Executable is the vtcluster binary that bodies call (VTCLUSTER_BIN)
	// and printed commands name when multihost.binary is not set; empty
	// means os.Executable().
	Executable string
}

// interruptBudget is how long, after a signal, the runner waits for the
// test to tear down before sending finished anyway. Avocado SIGKILLs the
// runner 1 s after SIGTERM and then injects its own finished message; ours
// must be on the wire well before that, or the test is counted twice.
const interruptBudget = 600 * time.Millisecond

// Main runs the avocado-runner-multihost command line and returns the
// exit code: 0 for help, capabilities and any run that reached its end
// (whatever the test result, interrupted by a signal included: the
// finished message says so), 2 for usage errors, 1 for failures of the
// runner itself (unreadable recipe, unreachable status server, internal
// error). An unsupported kind is reported as a finished "error" and exits
// 0, rather than exiting 1 without any message as Avocado's Python runners
// do: inside a job that would leave Avocado waiting forever.
func Main(ctx context.Context, opts Options) int {
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ()
	}
	if opts.Status == (StatusConfig{}) {
		opts.Status = defaultStatusConfig()
	}
	inv, err := parseCommandLine(opts.Args)
	if err != nil {
		fmt.Fprintln(opts.Stderr, err)
		return 2
	}
	if inv.Help != "" {
		fmt.Fprint(opts.Stdout, inv.Help)
		return 0
	}
	a := &app{opts: opts}
	switch inv.Command {
	case cmdCapabilities:
		return a.capabilities()
	case cmdRunnableRun, cmdTaskRun:
		r, err := runnableFromArgs(inv.Args)
		if err != nil {
			return a.fail(err)
		}
		if inv.Command == cmdRunnableRun {
			return a.run(ctx, task{Runnable: r}, false)
		}
		return a.run(ctx, task{ID: inv.Args.Identifier, JobID: inv.Args.JobID, Category: inv.Args.Category,
			StatusURIs: inv.Args.StatusURIs, Runnable: r}, true)
	case cmdRunnableRunRecipe:
		r, err := loadRunnableRecipe(inv.Recipe)
		if err != nil {
			return a.fail(err)
		}
		return a.run(ctx, task{Runnable: r}, false)
	case cmdTaskRunRecipe:
		t, err := loadTaskRecipe(inv.Recipe)
		if err != nil {
			return a.fail(err)
		}
		return a.run(ctx, t, true)
	}
	return a.fail(fmt.Errorf("runner: unknown command %q", inv.Command))
}

type app struct {
	opts Options
}

func (a *app) fail(err error) int {
	fmt.Fprintf(a.opts.Stderr, "%s: %v\n", progName, err)
	return 1
}

// capabilities prints the one JSON line Avocado probes runners with. It
// must stay fast and print nothing else: it runs whenever a Runnable of
// the kind is built, even by "avocado list".
func (a *app) capabilities() int {
	line, err := encodeLine(message{
		{Key: "runnables", Value: []string{kind}},
		{Key: "commands", Value: commands},
		{Key: "configuration_used", Value: configurationUsed},
	})
	if err != nil {
		return a.fail(err)
	}
	if _, err := a.opts.Stdout.Write(line); err != nil {
		return 1
	}
	return 0
}

// prepared is a runnable resolved to a test.
type prepared struct {
	spec *SpecFile
	test *Test
	cfg  RunConfig
}

func (a *app) prepare(r runnable) (prepared, error) {
	var p prepared
	var err error
	if p.cfg, err = runConfigFromSettings(r.Config); err != nil {
		return p, err
	}
	if r.Kind != kind {
		return p, fmt.Errorf("runner: unsupported kind of runnable %q (this runner handles %q)", r.Kind, kind)
	}
	if r.URI == "" {
		return p, errors.New("runner: no test given: the runnable's uri must be a multihost spec file (with the keyword argument test=NAME)")
	}
	file, name := r.TestName()
	if isPythonTestFile(file) {
		p.spec, err = pythonClassSpec(r, file, name)
	} else {
		p.spec, err = LoadSpecFile(file)
	}
	if err != nil {
		return p, err
	}
	if p.test, err = p.spec.Test(name); err != nil {
		return p, err
	}
	if len(r.Args) > 0 && len(p.test.Body.Command) == 0 {
		return p, fmt.Errorf("runner: arguments %s given but test %q has no body command to pass them to", py.Repr(r.Args), p.test.Name)
	}
	if p.cfg.Binary == "" {
		p.cfg.Binary = a.opts.Executable
	}
	if p.cfg.Binary == "" {
		p.cfg.Binary, _ = os.Executable()
	}
	return p, nil
}

// oneLine makes an error usable as a fail_reason (shown on one UI line).
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

func (a *app) run(ctx context.Context, task task, taskMode bool) (code int) {
	// Signals are caught before anything else: from here on, every way
	// out sends a finished message.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	// With SIGPIPE caught, a closed stdout makes writes fail instead of
	// killing the runner before it reports. (Ignoring it instead would be
	// inherited by the body.)
	pipes := make(chan os.Signal, 1)
	signal.Notify(pipes, syscall.SIGPIPE)
	defer signal.Stop(pipes)

	r := task.Runnable
	prep, prepErr := a.prepare(r)
	clock := newInterruptClock(prep.cfg)
	uris := task.StatusURIs
	if len(uris) == 0 && prep.cfg.StatusServerURI != "" {
		uris = []string{prep.cfg.StatusServerURI}
	}
	status, err := newStatusClient(uris, a.opts.Status)
	if err != nil {
		return a.fail(err)
	}
	outputDir := r.OutputDir
	var dirErr error
	switch {
	case outputDir != "":
		dirErr = os.MkdirAll(outputDir, 0o755)
	case taskMode || prepErr == nil:
		outputDir, dirErr = makeTempDir(a.opts.Environ, ".avocado-task-")
		if dirErr == nil && prepErr != nil {
			// Nothing will be written there; Python's runners leave such
			// empty directories behind, this one does not.
			defer os.Remove(outputDir)
		}
	}
	rep := newReporter(reporterConfig{Status: status, Stdout: a.opts.Stdout, Task: taskMode,
		ID: task.ID, JobID: task.JobID, OutputDir: outputDir})
	defer rep.Close()
	procs := newProcGroups()
	defer func() {
		if p := recover(); p != nil {
			procs.killAll()
			rep.Finish(ctx, finishedMessage(resultError, fmt.Sprintf("runner internal error: panic: %v", p), nil))
			fmt.Fprintf(a.opts.Stderr, "%s: internal error: panic: %v\n", progName, p)
			code = 1
		}
	}()
	if dirErr != nil {
		err := fmt.Errorf("runner: output directory: %w", dirErr)
		if taskMode {
			// A started message without output_dir would hang Avocado;
			// a lone finished is fine.
			rep.Finish(ctx, finishedMessage(resultError, err.Error(), nil))
			return a.fail(err)
		}
		prepErr = err
	}
	rep.Send(ctx, startedMessage())
	if !status.Usable() {
		return a.fail(fmt.Errorf("runner: cannot report to any status server: %w", rep.Err()))
	}
	if prepErr != nil {
		rep.Finish(ctx, finishedMessage(resultError, oneLine(prepErr), nil))
		return a.exitCode(rep, 0)
	}

	trap := newPanicTrap()
	hbStop, hbDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(hbDone)
		defer trap.catch()
		// Like Avocado's runners: one at once, then every 0.5 s.
		rep.Send(ctx, heartbeatMessage())
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-hbStop:
				return
			case <-t.C:
				rep.Send(ctx, heartbeatMessage())
			}
		}
	}()
	stopHeartbeat := func() {
		select {
		case <-hbStop:
		default:
			close(hbStop)
		}
		<-hbDone
	}
	defer stopHeartbeat()

	workDir, err := makeTempDir(a.opts.Environ, ".avocado-workdir-")
	if err != nil {
		workDir = ""
	} else if !prep.cfg.KeepTmp {
		defer os.RemoveAll(workDir)
	}
	jobID := ""
	if task.JobID != nil {
		jobID = *task.JobID
	}
	taskID, _ := task.ID.(string)
	tr := &testRun{spec: prep.spec, test: prep.test, runnable: r, cfg: prep.cfg, outputDir: outputDir,
		workDir: workDir, jobID: jobID, taskID: taskID, environ: a.opts.Environ, rep: rep,
		newCluster: a.opts.NewCluster, procs: procs, trap: trap}

	runCtx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	done := make(chan outcome, 1)
	go func() {
		defer trap.catch()
		done <- tr.executeRetrying(runCtx)
	}()

	internal := ""
	var out outcome
	select {
	case out = <-done:
	case internal = <-trap.ch:
		a.stop(runCtx, cancelRun, "runner internal error", done, sigs, trap, procs)
	case sig := <-sigs:
		out = a.stop(runCtx, cancelRun, clock.reason(sig.(syscall.Signal), time.Now()), done, sigs, trap, procs)
	case <-ctx.Done():
		out = a.stop(runCtx, cancelRun, fmt.Sprintf("Test interrupted: %v", context.Cause(ctx)), done, sigs, trap, procs)
	}
	if internal == "" {
		select {
		case internal = <-trap.ch:
		default:
		}
	}
	if internal != "" {
		out = outcome{Result: resultError, Reason: strings.SplitN(internal, "\n", 2)[0]}
	}
	stopHeartbeat()
	rep.Finish(ctx, out.message())
	if internal != "" {
		fmt.Fprintf(a.opts.Stderr, "%s: %s\n", progName, internal)
		return 1
	}
	return a.exitCode(rep, 0)
}

// stop interrupts the running test: its context is cancelled (the body's
// process group gets SIGTERM, then SIGKILL; teardown gets a short budget)
// and the outcome is awaited within interruptBudget. Whatever happens,
// every body process group is killed before it returns.
func (a *app) stop(ctx context.Context, cancel context.CancelCauseFunc, reason string, done <-chan outcome,
	sigs <-chan os.Signal, trap *panicTrap, procs *procGroups) outcome {
	defer procs.killAll()
	cancel(&interruptedError{reason: reason, bySignal: true})
	out := outcome{Result: resultInterrupted, Reason: reason}
	t := time.NewTimer(interruptBudget)
	defer t.Stop()
	select {
	case o := <-done:
		// Usually interrupted; a body that got to its end just as the
		// signal came keeps its own result.
		return o
	case <-t.C:
		out.Reason += " (teardown did not finish in time)"
	case <-sigs:
	case msg := <-trap.ch:
		// Put it back: run reports internal errors after stop returns.
		select {
		case trap.ch <- msg:
		default:
		}
	}
	return out
}

func (a *app) exitCode(rep *reporter, code int) int {
	if err := rep.Err(); err != nil {
		fmt.Fprintf(a.opts.Stderr, "%s: %v\n", progName, err)
		return 1
	}
	return code
}

// makeTempDir creates a directory like Python's tempfile.mkdtemp: in the
// first usable of $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp, /usr/tmp and the
// working directory. (Go's os.TempDir only knows TMPDIR, and Avocado sets
// TMP.)
func makeTempDir(environ []string, prefix string) (string, error) {
	get := func(k string) string {
		for _, kv := range environ {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	}
	var candidates []string
	for _, k := range []string{"TMPDIR", "TEMP", "TMP"} {
		if v := get(k); v != "" {
			candidates = append(candidates, v)
		}
	}
	candidates = append(candidates, "/tmp", "/var/tmp", "/usr/tmp")
	if wd, err := os.Getwd(); err == nil {
		candidates = append(candidates, wd)
	}
	var errs []error
	for _, dir := range candidates {
		d, err := os.MkdirTemp(dir, prefix+"*")
		if err == nil {
			return d, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}
