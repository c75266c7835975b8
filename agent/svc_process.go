package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vtcluster/vtcluster/agent/pgroup"
	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// ProcessConfig configures the process service. A zero field takes its
// value from DefaultProcessConfig; a nil BaseEnv too.
type ProcessConfig struct {
	// MaxOutput is how many bytes of each of stdout and stderr a call
	// keeps unless it asks otherwise with the max_output option: run keeps
	// the last MaxOutput bytes, a background process buffers up to
	// MaxOutput bytes between polls. Default 1 MiB; at most 16 MiB.
	MaxOutput int
	// MaxBackground bounds how many background processes are tracked,
	// running or finished and not yet removed. When full, the oldest
	// finished one is forgotten to make room. Default 64.
	MaxBackground int
	// RetainFinished is how long a finished background process stays
	// pollable before it is forgotten (at the next start or list).
	// Default 10 minutes.
	RetainFinished time.Duration
	// KillGrace is how long a process group has between SIGTERM and
	// SIGKILL when it is stopped. Default 2 s.
	KillGrace time.Duration
	// MaxWait bounds (and is the default of) wait's timeout, so that an
	// XML-RPC call never blocks indefinitely. Default 300 s.
	MaxWait time.Duration
	// Dir is the working directory of a command that gives no cwd.
	// Default "/", so results do not depend on where the agent started.
	Dir string
	// BaseEnv is the whole environment of a command before its env option
	// is merged over it. It is deliberately not the agent's environment,
	// which holds the agent's token. Default PATH (the usual system
	// directories), HOME (the agent user's) and LANG=C.UTF-8.
	BaseEnv map[string]string
	// RecordFile, when set, is where the service records the process
	// groups it started (normally ProcessRecordName in the data dir).
	// NewProcessService first stops what a dead agent's record there
	// names. Empty: no record.
	RecordFile string
}

const (
	// maxOutputCeiling bounds max_output: a reply carries both streams in
	// one XML document as base64 (4/3 larger), which must stay below what
	// cluster.Client accepts (64 MiB), and the agent holds it in memory
	// twice while encoding.
	maxOutputCeiling = 16 << 20
	// maxConcurrentRuns bounds process.run calls in flight; each holds a
	// child, two pipes and up to twice max_output of buffers.
	maxConcurrentRuns = 32
	// maxTimeout keeps seconds within time.Duration and within reason.
	maxTimeout = 365 * 24 * time.Hour
	// maxLogLine splits endless lines when output is logged.
	maxLogLine = 4096
	// maxOwner bounds the owner option, a partition id.
	maxOwner = 256
)

// DefaultProcessConfig returns the defaults documented on ProcessConfig.
func DefaultProcessConfig() ProcessConfig {
	home, err := os.UserHomeDir()
	if err != nil || !filepath.IsAbs(home) {
		home = "/"
	}
	return ProcessConfig{
		MaxOutput:      1 << 20,
		MaxBackground:  64,
		RetainFinished: 10 * time.Minute,
		KillGrace:      2 * time.Second,
		MaxWait:        300 * time.Second,
		Dir:            "/",
		BaseEnv: map[string]string{
			"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME": home,
			"LANG": "C.UTF-8",
		},
	}
}

// The process service runs commands on the node for multi-host tests.
// Upstream planned a shell service and never built one; this one takes
// argv lists only, so no caller input ever reaches a shell unquoted.
//
// Every command runs in its own process group, and the group, not just
// the first process, is what the service owns: a timeout, kill or Close
// signals the whole group, and when the first process exits, whatever it
// left running in its group is stopped too (agent/pgroup). A command that
// means to leave a daemon behind must detach it (setsid) before it exits;
// a process meant to keep running under the agent's control is started
// with start. Nothing else outlives the agent: leaders get a parent-death
// signal, and the groups a dead agent left are stopped by the next one
// from the record in its data dir (proc_record.go).
//
// Each command may carry an owner (the partition it was started for);
// stop_others, called when a node is handed to a new test, stops whatever
// any other owner left running.
//
// ProcessService is the agent's "process" service. Close stops every
// process it started.
type ProcessService struct {
	cfg    ProcessConfig
	log    *slog.Logger
	record *procRecord     // nil without RecordFile
	ctx    context.Context // cancelled by Close, ending every process
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // run calls in flight and background supervisors
	runs   chan struct{}  // a slot per run call in flight

	mu     sync.Mutex
	closed bool
	procs  map[string]*child // background processes by id
	// live are the children not reaped yet (run calls and background),
	// with what stops each; stop_others goes through them.
	live map[*child]context.CancelCauseFunc
	// handOverGuard, when set, may refuse stop_others (see GuardHandOver).
	handOverGuard func(owner string) error
}

// GuardHandOver makes stop_others ask guard first and fail with its error,
// stopping nothing: the owner service refuses a hand-over while another
// owner's lease runs (svc_owner.go). Call it before the server starts.
func (s *ProcessService) GuardHandOver(guard func(owner string) error) {
	s.handOverGuard = guard
}

var _ Service = (*ProcessService)(nil)

// errShutdown ends the processes of a closed service; as a Fault it tells
// the caller why.
var errShutdown = &xmlrpc.Fault{ExcType: "RuntimeError", ExcValue: "process service is shut down"}

// errTimedOut is the cause of a context that ran out of its timeout option.
var errTimedOut = errors.New("agent: process: timed out")

// NewProcessService validates cfg, filling zero fields with defaults.
// A nil logger discards.
func NewProcessService(cfg ProcessConfig, logger *slog.Logger) (*ProcessService, error) {
	def := DefaultProcessConfig()
	fill := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	fillDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	fill(&cfg.MaxOutput, def.MaxOutput)
	fill(&cfg.MaxBackground, def.MaxBackground)
	fillDur(&cfg.RetainFinished, def.RetainFinished)
	fillDur(&cfg.KillGrace, def.KillGrace)
	fillDur(&cfg.MaxWait, def.MaxWait)
	if cfg.Dir == "" {
		cfg.Dir = def.Dir
	}
	if cfg.BaseEnv == nil {
		cfg.BaseEnv = def.BaseEnv
	}
	switch {
	case cfg.MaxOutput < 0 || cfg.MaxOutput > maxOutputCeiling:
		return nil, fmt.Errorf("agent: process config: MaxOutput must be within 1..%d, got %d", maxOutputCeiling, cfg.MaxOutput)
	case cfg.MaxBackground < 0:
		return nil, fmt.Errorf("agent: process config: MaxBackground must be positive, got %d", cfg.MaxBackground)
	case cfg.RetainFinished < 0, cfg.KillGrace < 0, cfg.MaxWait < 0:
		return nil, fmt.Errorf("agent: process config: RetainFinished, KillGrace and MaxWait must be positive")
	case !filepath.IsAbs(cfg.Dir):
		return nil, fmt.Errorf("agent: process config: Dir must be an absolute path, got %q", cfg.Dir)
	}
	for k, v := range cfg.BaseEnv {
		if !validEnvName(k) || strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("agent: process config: BaseEnv entry %q is not a valid environment variable", k)
		}
	}
	cfg.BaseEnv = maps.Clone(cfg.BaseEnv)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var rec *procRecord
	if cfg.RecordFile != "" {
		var err error
		if rec, err = openProcRecord(cfg.RecordFile, cfg.KillGrace, logger); err != nil {
			return nil, fmt.Errorf("agent: process: %w", err)
		}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	return &ProcessService{cfg: cfg, log: logger, record: rec, ctx: ctx, cancel: cancel,
		procs: map[string]*child{}, live: map[*child]context.CancelCauseFunc{},
		runs: make(chan struct{}, maxConcurrentRuns)}, nil
}

// Name is the service prefix: "process.run", ...
func (s *ProcessService) Name() string { return "process" }

// Methods returns the XML-RPC methods.
func (s *ProcessService) Methods() map[string]Method {
	return map[string]Method{
		"run":    s.run,
		"start":  s.start,
		"poll":   s.poll,
		"wait":   s.wait,
		"kill":   s.kill,
		"list":   s.list,
		"remove": s.remove,

		"stop_others": s.stopOthers,
	}
}

// Close stops every running process group (run calls in flight and
// background processes: SIGTERM, then SIGKILL after KillGrace) and waits
// until all are reaped. It is idempotent; afterwards run and start fail
// with RuntimeError, while poll, wait and list still report final states.
func (s *ProcessService) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel(errShutdown)
	s.wg.Wait()
	s.record.close()
	return nil
}

// enter counts a new owner of processes, unless the service is closed. It
// takes the lock so that no Add can race with Close's Wait.
func (s *ProcessService) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errShutdown
	}
	s.wg.Add(1)
	return nil
}

// run(argv, options) executes argv and returns its result struct.
func (s *ProcessService) run(ctx context.Context, args Args) (any, error) {
	sp, err := s.prepare(args)
	if err != nil {
		return nil, err
	}
	select {
	case s.runs <- struct{}{}:
		defer func() { <-s.runs }()
	default:
		return nil, xmlrpc.Faultf("RuntimeError", "too many process.run calls in flight (at most %d); retry when some have finished", maxConcurrentRuns)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.wg.Done()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.ctx, func() { cancel(context.Cause(s.ctx)) })
	defer stop()
	if sp.opts.timeout > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeoutCause(ctx, sp.opts.timeout, errTimedOut)
		defer cancelT()
	}

	s.mu.Lock()
	c, err := s.launch(sp, "")
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.live[c] = cancel
	s.mu.Unlock()
	s.supervise(ctx, c)
	s.forget(c)
	if c.stopCause != nil && !c.timedOut {
		// The caller went away or the agent is shutting down; nobody
		// wants the result.
		return nil, fmt.Errorf("agent: process: run %s (pid %d) stopped: %w", py.Repr(c.argv[0]), c.pid, c.stopCause)
	}
	stdout, outDropped := c.stdout.drain()
	stderr, errDropped := c.stderr.drain()
	return xmlrpc.Struct{
		{Key: "exit_code", Value: c.exitCode},
		{Key: "stdout", Value: stdout},
		{Key: "stderr", Value: stderr},
		{Key: "stdout_truncated", Value: outDropped > 0},
		{Key: "stderr_truncated", Value: errDropped > 0},
		{Key: "timed_out", Value: c.timedOut},
		{Key: "duration", Value: c.duration.Seconds()},
		{Key: "pid", Value: c.pid},
	}, nil
}

// start(argv, options) starts argv in the background and returns its id.
func (s *ProcessService) start(_ context.Context, args Args) (any, error) {
	sp, err := s.prepare(args)
	if err != nil {
		return nil, err
	}
	// The lock is held across fork/exec so that the slot check, the id and
	// the insertion are one step; starts are rare and fast.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errShutdown
	}
	s.pruneLocked()
	if len(s.procs) >= s.cfg.MaxBackground && !s.evictOldestFinishedLocked() {
		return nil, xmlrpc.Faultf("RuntimeError", "too many background processes: %d running (limit %d); kill and remove some first", len(s.procs), s.cfg.MaxBackground)
	}
	id, err := s.newIDLocked()
	if err != nil {
		return nil, err
	}
	c, err := s.launch(sp, id)
	if err != nil {
		return nil, err
	}
	s.procs[id] = c

	// Not the request's context: the process outlives this call.
	ctx, cancel := context.WithCancelCause(s.ctx)
	s.live[c] = cancel
	cancelT := context.CancelFunc(func() {})
	if sp.opts.timeout > 0 {
		ctx, cancelT = context.WithTimeoutCause(ctx, sp.opts.timeout, errTimedOut)
	}
	s.wg.Add(1) // under s.mu and after the closed check, like enter
	go func() {
		defer s.wg.Done()
		defer cancel(nil)
		defer cancelT()
		s.supervise(ctx, c)
		s.forget(c)
	}()
	return id, nil
}

// poll(id) returns the state of a background process and the output it
// produced since the previous poll or wait.
func (s *ProcessService) poll(_ context.Context, args Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	c, err := s.lookup(args)
	if err != nil {
		return nil, err
	}
	return c.report(), nil
}

// wait(id[, timeout]) is poll after blocking until the process has
// finished or timeout seconds (default and at most MaxWait) have passed.
// Running out of time is not an error: the reply says running=True.
func (s *ProcessService) wait(ctx context.Context, args Args) (any, error) {
	if err := args.Want(1, 2); err != nil {
		return nil, err
	}
	c, err := s.lookup(args)
	if err != nil {
		return nil, err
	}
	d := s.cfg.MaxWait
	if v := args.Value(1); v != nil {
		if d, err = durationArg(v, "argument 'timeout'", s.cfg.MaxWait); err != nil {
			return nil, err
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
	case <-ctx.Done():
		return nil, fmt.Errorf("agent: process: wait %s: %w", c.id, context.Cause(ctx))
	}
	return c.report(), nil
}

// kill(id[, signal]) signals the process group of a background process
// (default SIGTERM). It returns False when the process has already
// finished, so there was nothing left to signal.
func (s *ProcessService) kill(_ context.Context, args Args) (any, error) {
	if err := args.Want(1, 2); err != nil {
		return nil, err
	}
	c, err := s.lookup(args)
	if err != nil {
		return nil, err
	}
	sig := int(syscall.SIGTERM)
	if args.Value(1) != nil {
		if sig, err = args.Int(1, "signal"); err != nil {
			return nil, err
		}
	}
	if sig < 1 || sig > 64 {
		return nil, xmlrpc.Faultf("ValueError", "argument 'signal' must be a signal number within 1..64, got %d", sig)
	}
	sent, err := c.grp.Signal(syscall.Signal(sig))
	if err != nil {
		return nil, osFault(err, strconv.Itoa(c.pid))
	}
	if !sent {
		return false, nil
	}
	s.log.Info(fmt.Sprintf("signal %d sent to process group %d (id %s)", sig, c.pid, c.id))
	return true, nil
}

// forget drops a reaped child from the live set.
func (s *ProcessService) forget(c *child) {
	s.mu.Lock()
	delete(s.live, c)
	s.mu.Unlock()
}

// handedOver is the stop cause of processes stop_others ends.
type handedOver struct{ to string }

func (h *handedOver) Error() string {
	return fmt.Sprintf("the node was handed over to owner %s", py.Repr(h.to))
}

// stop_others(owner) stops every process (run calls in flight and
// background processes) started for an owner other than owner, those
// started without one included, and returns what it stopped, oldest
// first: [{'id', 'pid', 'argv', 'owner', 'exit_code'}]. The controller
// calls it before it hands the node to a new test, so that nothing an
// earlier test left (its teardown could not reach the node) runs on.
func (s *ProcessService) stopOthers(ctx context.Context, args Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	owner, err := args.String(0, "owner")
	if err != nil {
		return nil, err
	}
	if s.handOverGuard != nil {
		if err := s.handOverGuard(owner); err != nil {
			return nil, err
		}
	}
	cause := &handedOver{to: owner}
	var stopped []*child
	s.mu.Lock()
	for c, cancel := range s.live {
		if c.owner != owner {
			stopped = append(stopped, c)
			cancel(cause)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(stopped, func(a, b *child) int { return a.start.Compare(b.start) })
	out := make([]any, 0, len(stopped))
	for _, c := range stopped {
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("agent: process: stop_others: %w", context.Cause(ctx))
		}
		out = append(out, xmlrpc.Struct{
			{Key: "id", Value: c.id},
			{Key: "pid", Value: c.pid},
			{Key: "argv", Value: c.argv},
			{Key: "owner", Value: c.owner},
			{Key: "exit_code", Value: c.exitCode},
		})
	}
	if len(stopped) > 0 {
		s.log.Warn(fmt.Sprintf("stopped %d process group(s) of other owners before handing the node to %s", len(stopped), py.Repr(owner)))
	}
	return out, nil
}

// list() describes every tracked background process, oldest first, with
// the owner it was started for ("" for none).
func (s *ProcessService) list(_ context.Context, args Args) (any, error) {
	if err := args.Want(0, 0); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.pruneLocked()
	cs := slices.Collect(maps.Values(s.procs))
	s.mu.Unlock()
	slices.SortFunc(cs, func(a, b *child) int { return a.start.Compare(b.start) })
	out := make([]any, 0, len(cs))
	for _, c := range cs {
		running, code := c.state()
		out = append(out, xmlrpc.Struct{
			{Key: "id", Value: c.id},
			{Key: "pid", Value: c.pid},
			{Key: "argv", Value: c.argv},
			{Key: "owner", Value: c.owner},
			{Key: "running", Value: running},
			{Key: "exit_code", Value: code},
		})
	}
	return out, nil
}

// remove(id) forgets a finished background process and its output.
func (s *ProcessService) remove(_ context.Context, args Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	c, err := s.lookup(args)
	if err != nil {
		return nil, err
	}
	if running, _ := c.state(); running {
		return nil, xmlrpc.Faultf("ValueError", "process %s (pid %d) is still running; kill it and wait for it first", py.Repr(c.id), c.pid)
	}
	s.mu.Lock()
	delete(s.procs, c.id)
	s.mu.Unlock()
	return true, nil
}

// lookup finds the background process named by param 0.
func (s *ProcessService) lookup(args Args) (*child, error) {
	id, err := args.String(0, "id")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.procs[id]
	if !ok {
		return nil, xmlrpc.Faultf("KeyError", "no background process with id %s (finished processes are forgotten after %v or once removed)", py.Repr(id), s.cfg.RetainFinished)
	}
	return c, nil
}

// pruneLocked forgets finished processes older than RetainFinished.
func (s *ProcessService) pruneLocked() {
	for id, c := range s.procs {
		if fin, ok := c.finishedAt(); ok && time.Since(fin) > s.cfg.RetainFinished {
			delete(s.procs, id)
		}
	}
}

// evictOldestFinishedLocked makes room by forgetting the process that
// finished first; false when every tracked process is still running.
func (s *ProcessService) evictOldestFinishedLocked() bool {
	var oldest string
	var oldestAt time.Time
	for id, c := range s.procs {
		if fin, ok := c.finishedAt(); ok && (oldest == "" || fin.Before(oldestAt)) {
			oldest, oldestAt = id, fin
		}
	}
	if oldest == "" {
		return false
	}
	delete(s.procs, oldest)
	return true
}

func (s *ProcessService) newIDLocked() (string, error) {
	for {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("agent: process: random id: %w", err)
		}
		id := hex.EncodeToString(b[:])
		if _, dup := s.procs[id]; !dup {
			return id, nil
		}
	}
}

// procOptions are the parsed options struct of run and start.
type procOptions struct {
	timeout   time.Duration // 0: none
	env       map[string]string
	cwd       string
	stdin     []byte // nil: /dev/null
	maxOutput int
	logOutput bool
	owner     string // "" : none
}

// procSpec is a validated command, ready to launch.
type procSpec struct {
	argv []string
	path string // argv[0] resolved with the child's PATH
	env  []string
	dir  string
	opts procOptions
}

var optionNames = "cwd, env, log_output, max_output, owner, stdin, timeout"

// prepare validates the (argv, options) params of run and start, and
// resolves the working directory and executable the way the child will,
// so that launch failures carry Python's exception types.
func (s *ProcessService) prepare(args Args) (*procSpec, error) {
	if err := args.Want(1, 2); err != nil {
		return nil, err
	}
	argv, err := args.StringList(0, "argv")
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, xmlrpc.Faultf("ValueError", "argument 'argv' must not be empty")
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, xmlrpc.Faultf("ValueError", "argument 'argv' item %d contains a NUL byte", i)
		}
	}
	if argv[0] == "" {
		return nil, xmlrpc.Faultf("ValueError", "argument 'argv' item 0 (the program) is empty")
	}
	m, err := args.Struct(1, "options")
	if err != nil {
		return nil, err
	}
	opts, err := s.parseOptions(m)
	if err != nil {
		return nil, err
	}

	env := maps.Clone(s.cfg.BaseEnv)
	maps.Copy(env, opts.env)
	sp := &procSpec{argv: argv, dir: s.cfg.Dir, opts: opts}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		sp.env = append(sp.env, k+"="+env[k])
	}
	if opts.cwd != "" {
		sp.dir = opts.cwd
	}
	if fi, err := os.Stat(sp.dir); err != nil {
		return nil, osFault(err, sp.dir)
	} else if !fi.IsDir() {
		return nil, osFault(syscall.ENOTDIR, sp.dir)
	}
	if sp.path, err = lookPath(argv[0], env["PATH"]); err != nil {
		return nil, err
	}
	return sp, nil
}

func (s *ProcessService) parseOptions(m map[string]any) (procOptions, error) {
	o := procOptions{maxOutput: s.cfg.MaxOutput}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if v == nil {
			continue // None: the default
		}
		var err error
		switch k {
		case "timeout":
			o.timeout, err = durationArg(v, "option 'timeout'", maxTimeout)
		case "env":
			o.env, err = envArg(v)
		case "cwd":
			cwd, ok := v.(string)
			switch {
			case !ok:
				err = xmlrpc.Faultf("TypeError", "option 'cwd' must be str, not %s", py.TypeName(v))
			case !filepath.IsAbs(cwd) || strings.IndexByte(cwd, 0) >= 0:
				err = xmlrpc.Faultf("ValueError", "option 'cwd' must be an absolute path, got %s", py.Repr(cwd))
			}
			o.cwd = cwd
		case "stdin":
			switch x := v.(type) {
			case []byte:
				o.stdin = x
			case string:
				o.stdin = []byte(x)
			default:
				err = xmlrpc.Faultf("TypeError", "option 'stdin' must be bytes or str, not %s", py.TypeName(v))
			}
		case "max_output":
			n, ok := py.Int(v)
			switch {
			case !ok:
				err = xmlrpc.Faultf("TypeError", "option 'max_output' must be int, not %s", py.TypeName(v))
			case n < 0 || n > maxOutputCeiling:
				err = xmlrpc.Faultf("ValueError", "option 'max_output' must be within 0..%d bytes, got %d", maxOutputCeiling, n)
			}
			o.maxOutput = int(n)
		case "owner":
			owner, ok := v.(string)
			switch {
			case !ok:
				err = xmlrpc.Faultf("TypeError", "option 'owner' must be str, not %s", py.TypeName(v))
			case len(owner) > maxOwner || strings.IndexByte(owner, 0) >= 0:
				err = xmlrpc.Faultf("ValueError", "option 'owner' must be at most %d bytes without NUL, got %d bytes", maxOwner, len(owner))
			}
			o.owner = owner
		case "log_output":
			b, ok := v.(bool)
			if !ok {
				err = xmlrpc.Faultf("TypeError", "option 'log_output' must be bool, not %s", py.TypeName(v))
			}
			o.logOutput = b
		default:
			err = xmlrpc.Faultf("TypeError", "unexpected option %s (options are %s)", py.Repr(k), optionNames)
		}
		if err != nil {
			return procOptions{}, err
		}
	}
	return o, nil
}

func envArg(v any) (map[string]string, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, xmlrpc.Faultf("TypeError", "option 'env' must be dict, not %s", py.TypeName(v))
	}
	out := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s, ok := m[k].(string)
		switch {
		case !validEnvName(k):
			return nil, xmlrpc.Faultf("ValueError", "option 'env' key %s is not a valid variable name", py.Repr(k))
		case !ok:
			return nil, xmlrpc.Faultf("TypeError", "option 'env' value of %s must be str, not %s", py.Repr(k), py.TypeName(m[k]))
		case strings.IndexByte(s, 0) >= 0:
			return nil, xmlrpc.Faultf("ValueError", "option 'env' value of %s contains a NUL byte", py.Repr(k))
		}
		out[k] = s
	}
	return out, nil
}

func validEnvName(k string) bool {
	return k != "" && !strings.ContainsAny(k, "=\x00")
}

// durationArg reads a number of seconds; XML-RPC callers send ints and
// floats alike for it.
func durationArg(v any, what string, limit time.Duration) (time.Duration, error) {
	var f float64
	switch x := v.(type) {
	case int: // Go callers
		f = float64(x)
	case int64: // the wire
		f = float64(x)
	case float64:
		f = x
	default:
		return 0, xmlrpc.Faultf("TypeError", "%s must be int or float, not %s", what, py.TypeName(v))
	}
	if math.IsNaN(f) || f < 0 || f > limit.Seconds() {
		return 0, xmlrpc.Faultf("ValueError", "%s must be within 0..%g seconds, got %g", what, limit.Seconds(), f)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// lookPath resolves a program name as execvp does, but with the child's
// PATH rather than the agent's. Relative PATH entries are skipped: they
// would resolve against whatever cwd the caller chose. Names with a slash
// are left to execve (relative ones resolve against the cwd).
func lookPath(name, pathEnv string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	denied := false
	for _, dir := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			denied = true
			continue
		}
		return p, nil
	}
	if denied {
		return "", osFault(syscall.EACCES, name)
	}
	return "", osFault(syscall.ENOENT, name)
}

// osFault words an OS error as Python's OSError subclasses do:
// "[Errno 2] No such file or directory: 'name'".
func osFault(err error, name string) *xmlrpc.Fault {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return xmlrpc.Faultf("OSError", "%s: %v", py.Repr(name), err)
	}
	typ := "OSError"
	switch errno {
	case syscall.ENOENT:
		typ = "FileNotFoundError"
	case syscall.EACCES, syscall.EPERM:
		typ = "PermissionError"
	case syscall.ENOTDIR:
		typ = "NotADirectoryError"
	case syscall.EISDIR:
		typ = "IsADirectoryError"
	case syscall.ESRCH:
		typ = "ProcessLookupError"
	}
	msg := errno.Error()
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:]
	}
	return xmlrpc.Faultf(typ, "[Errno %d] %s: %s", int(errno), msg, py.Repr(name))
}

// child is one launched process group and what it has produced.
type child struct {
	id     string // background id; "" for run
	argv   []string
	owner  string
	grp    *pgroup.Group
	pid    int // also the process group id
	start  time.Time
	stdout *ring
	stderr *ring
	lines  []*lineLogger
	done   chan struct{} // closed once reaped and all output is in

	// Written by supervise before done is closed, read only after.
	exitCode  int
	timedOut  bool
	stopCause error
	duration  time.Duration
	finished  time.Time
}

func stopReason(cause error) string {
	switch {
	case errors.Is(cause, errTimedOut):
		return "timed out"
	case errors.Is(cause, errShutdown):
		return "the agent is shutting down"
	}
	var h *handedOver
	if errors.As(cause, &h) {
		return h.Error()
	}
	return fmt.Sprintf("the caller went away (%v)", cause)
}

// state returns whether c still runs and, if not, its exit code.
func (c *child) state() (running bool, exitCode any) {
	select {
	case <-c.done:
		return false, c.exitCode
	default:
		return true, nil
	}
}

func (c *child) finishedAt() (time.Time, bool) {
	select {
	case <-c.done:
		return c.finished, true
	default:
		return time.Time{}, false
	}
}

// report is the reply of poll and wait. done is checked before the output
// is drained, so a finished report always carries the last bytes.
func (c *child) report() xmlrpc.Struct {
	running, code := c.state()
	timedOut, dur := false, time.Since(c.start)
	if !running {
		timedOut, dur = c.timedOut, c.duration
	}
	stdout, outDropped := c.stdout.drain()
	stderr, errDropped := c.stderr.drain()
	return xmlrpc.Struct{
		{Key: "id", Value: c.id},
		{Key: "pid", Value: c.pid},
		{Key: "running", Value: running},
		{Key: "exit_code", Value: code},
		{Key: "stdout", Value: stdout},
		{Key: "stderr", Value: stderr},
		{Key: "stdout_dropped", Value: int(outDropped)},
		{Key: "stderr_dropped", Value: int(errDropped)},
		{Key: "timed_out", Value: timedOut},
		{Key: "duration", Value: dur.Seconds()},
	}
}

// ring keeps the newest max bytes written to it and counts the bytes it
// had to drop. Keeping the tail is deliberate: when a command fails, its
// last lines say why, and a background process's newest output is what a
// poller wants.
type ring struct {
	mu      sync.Mutex
	max     int
	buf     []byte // len(buf) <= max; once full, the oldest byte is at start
	start   int
	dropped int64
}

func (r *ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(p)
	if len(p) >= r.max {
		r.dropped += int64(len(r.buf) + len(p) - r.max)
		r.buf = append(r.buf[:0], p[len(p)-r.max:]...)
		r.start = 0
		return n, nil
	}
	if free := r.max - len(r.buf); free > 0 {
		k := min(free, len(p))
		r.buf = append(r.buf, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 { // full: overwrite the oldest bytes
		k := copy(r.buf[r.start:], p)
		r.dropped += int64(k)
		r.start = (r.start + k) % r.max
		p = p[k:]
	}
	return n, nil
}

// drain returns the buffered bytes, oldest first, and how many were
// dropped since the previous drain, and empties the ring. The buffer is
// released, so an idle background process holds no memory.
func (r *ring) drain() ([]byte, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]byte, 0, len(r.buf))
	out = append(out, r.buf[r.start:]...)
	out = append(out, r.buf[:r.start]...)
	d := r.dropped
	r.buf, r.start, r.dropped = nil, 0, 0
	return out, d
}

// lineLogger logs each line written to it, for the log_output option, so
// that node output shows up in the controller's central log.
type lineLogger struct {
	log    *slog.Logger
	stream string
	ready  chan struct{} // closed once *pid is set
	pid    *int
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	<-l.ready
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			break
		}
		l.buf = append(l.buf, p[:i]...)
		l.emit(l.buf)
		l.buf = l.buf[:0]
		p = p[i+1:]
	}
	for len(l.buf) >= maxLogLine {
		l.emit(l.buf[:maxLogLine])
		l.buf = l.buf[:copy(l.buf, l.buf[maxLogLine:])]
	}
	return n, nil
}

// flush logs a last line that had no newline; called once output is done.
func (l *lineLogger) flush() {
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = nil
	}
}

func (l *lineLogger) emit(line []byte) {
	for len(line) > maxLogLine {
		l.emit(line[:maxLogLine])
		line = line[maxLogLine:]
	}
	text := strings.ToValidUTF8(strings.TrimSuffix(string(line), "\r"), "\uFFFD")
	l.log.Info(fmt.Sprintf("[pid %d %s] %s", *l.pid, l.stream, text))
}
