package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// Config configures the vm service.
type Config struct {
	// Dir holds one directory per VM; it is made 0700 and emptied at
	// start (the process service has already stopped the QEMUs a dead
	// agent left, so nothing there is in use).
	Dir string
	// Procs starts and supervises the QEMU processes.
	Procs *agent.ProcessService
	// Logger; nil discards.
	Logger *slog.Logger
}

// Service is the agent's "vm" service. Close stops every VM.
type Service struct {
	dir   string
	procs *agent.ProcessService
	log   *slog.Logger

	mu     sync.Mutex
	closed bool
	vms    map[string]*machine
}

type machine struct {
	spec   Spec
	files  files
	accel  string
	proc   *agent.Supervised
	qmp    *qmpConn
	events *os.File
	dirFD  *os.File // the VM's directory, for its QMP socket
	// launched is closed when launch has set proc and qmp (or failed);
	// ready (under Service.mu) makes the VM visible to the other calls.
	launched chan struct{}
	ready    bool
}

// errVMStop is the stop cause of vm.stop's last resort.
var errVMStop = errors.New("vm.stop")

// NewService makes Dir (0700) and empties it.
func NewService(cfg Config) (*Service, error) {
	if cfg.Procs == nil || !filepath.IsAbs(cfg.Dir) {
		return nil, errors.New("vm: config needs Procs and an absolute Dir")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if fi, err := os.Lstat(cfg.Dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("vm: %s is not a directory", cfg.Dir)
	}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, fmt.Errorf("vm: empty %s: %w", cfg.Dir, err)
	}
	if err := os.Mkdir(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	return &Service{dir: cfg.Dir, procs: cfg.Procs, log: cfg.Logger, vms: map[string]*machine{}}, nil
}

// Name is the service prefix: "vm.start", ...
func (s *Service) Name() string { return "vm" }

// Methods returns the XML-RPC methods.
func (s *Service) Methods() map[string]agent.Method {
	return map[string]agent.Method{
		"start":        s.start,
		"stop":         s.stop,
		"status":       s.status,
		"qmp":          s.qmpCall,
		"console":      s.console,
		"events":       s.eventLog,
		"wait_console": s.waitConsole,
		"migrate":      s.migrate,
		"list":         s.list,
		"remove":       s.remove,
	}
}

// Close stops every VM (quit, then kill) and waits for them.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	all := make([]*machine, 0, len(s.vms))
	for _, m := range s.vms {
		if m.ready {
			all = append(all, m)
		}
	}
	s.mu.Unlock()
	for _, m := range all {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.halt(ctx, m, 0)
		cancel()
	}
	return nil
}

func fault(kind, format string, a ...any) error { return xmlrpc.Faultf(kind, format, a...) }

// start(spec_json) starts a VM and returns Started once its QMP answers.
func (s *Service) start(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	raw, err := args.String(0, "spec")
	if err != nil {
		return nil, err
	}
	spec, err := ParseSpec([]byte(raw))
	if err != nil {
		return nil, fault("ValueError", "%v", err)
	}
	bin, err := s.procs.LookPath(spec.Binary())
	if err != nil {
		return nil, fault("FileNotFoundError", "%s not found on this node: install the %s package", spec.Binary(), spec.Package())
	}
	for _, p := range []string{spec.Kernel, spec.Initrd} {
		if p != "" {
			if _, err := os.Stat(p); err != nil {
				return nil, fault("FileNotFoundError", "vm %s: %v", spec.Name, err)
			}
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fault("RuntimeError", "vm service is shut down")
	}
	if old, ok := s.vms[spec.Name]; ok {
		if !old.exited() {
			s.mu.Unlock()
			return nil, fault("FileExistsError", "vm %s already runs (pid %d); stop it first", spec.Name, old.proc.Pid())
		}
		delete(s.vms, spec.Name)
		s.forgetFiles(old)
	}
	m := &machine{spec: spec, files: filesIn(filepath.Join(s.dir, spec.Name)), accel: chooseAccel(spec.Accel), launched: make(chan struct{})}
	s.vms[spec.Name] = m // reserves the name while QEMU starts
	s.mu.Unlock()

	started, err := s.launch(ctx, m, bin)
	close(m.launched)
	if err != nil {
		s.mu.Lock()
		if s.vms[spec.Name] == m {
			delete(s.vms, spec.Name)
		}
		s.mu.Unlock()
		s.forgetFiles(m)
		return nil, err
	}
	s.mu.Lock()
	m.ready = true
	s.mu.Unlock()
	return toWire(started), nil
}

func (s *Service) launch(ctx context.Context, m *machine, bin string) (Started, error) {
	spec := &m.spec
	_ = os.RemoveAll(m.files.dir)
	if err := os.Mkdir(m.files.dir, 0o700); err != nil {
		return Started{}, fault("OSError", "vm %s: %v", spec.Name, err)
	}
	ev, err := os.OpenFile(filepath.Join(m.files.dir, "events.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Started{}, fault("OSError", "vm %s: %v", spec.Name, err)
	}
	m.events = ev
	// A Unix socket path holds at most 107 bytes and a data dir can be
	// longer: QEMU binds qmp.sock relative to its working directory (the
	// VM's), and the agent connects through /proc/self/fd of the
	// directory, whatever its length.
	d, err := os.OpenFile(m.files.dir, os.O_RDONLY|syscall.O_DIRECTORY|noFollow, 0)
	if err != nil {
		return Started{}, fault("OSError", "vm %s: %v", spec.Name, err)
	}
	m.dirFD = d
	argv := spec.argv(bin, m.accel, relFiles)
	p, err := s.procs.StartSupervised(argv, agent.SupervisedOptions{ID: "vm:" + spec.Name, Owner: spec.Owner, Dir: m.files.dir})
	if err != nil {
		return Started{}, err
	}
	m.proc = p
	s.log.Info(fmt.Sprintf("vm %s: started QEMU pid %d (%s, %d MiB, %d vcpu, owner %q)%s", spec.Name, p.Pid(), m.accel, spec.MemoryMiB, spec.VCPUs, spec.Owner, incomingNote(spec.Incoming)))
	go s.watch(m)

	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err := dialQMP(dctx, fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), relFiles.qmp), ev, func() bool { return !m.exited() })
	if err == nil {
		m.qmp = q
		var st string
		st, err = q.status(dctx)
		if err == nil {
			out := Started{Name: spec.Name, Pid: p.Pid(), Accel: m.accel, Status: st}
			if spec.Incoming != "" && spec.Incoming != "defer" {
				out.Incoming, err = incomingAddr(dctx, q, spec.Incoming)
			}
			if err == nil {
				return out, nil
			}
		}
	}
	// QEMU refused its command line (a missing image, a taken tap, a
	// locked disk): say why, in its own words.
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = p.Stop(sctx, errVMStop)
	return Started{}, fault("RuntimeError", "vm %s: QEMU did not start: %v; QEMU said: %s", spec.Name, err, strings.TrimSpace(string(p.Stderr())))
}

func incomingNote(in string) string {
	if in == "" {
		return ""
	}
	return ", incoming " + in
}

// incomingAddr asks the destination where it listens (QEMU reports the
// port it chose for port 0).
func incomingAddr(ctx context.Context, q *qmpConn, want string) (string, error) {
	raw, err := q.execute(ctx, "query-migrate", nil)
	if err != nil {
		return "", err
	}
	var r struct {
		Sockets []struct {
			Host string `json:"host"`
			Port string `json:"port"`
		} `json:"socket-address"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || len(r.Sockets) == 0 {
		return want, nil
	}
	h := r.Sockets[0].Host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return "tcp:" + h + ":" + r.Sockets[0].Port, nil
}

// watch logs a VM's end and, when something other than vm.stop ended it
// (the hand-over, the agent's shutdown), forgets it and removes its files.
func (s *Service) watch(m *machine) {
	<-m.proc.Done()
	<-m.launched
	code, cause, _ := m.proc.Exit()
	if m.qmp != nil {
		m.qmp.close()
	}
	_ = m.events.Close()
	_ = m.dirFD.Close()
	how := fmt.Sprintf("exited with status %d", code)
	if cause != nil {
		how = "stopped: " + agent.StopReason(cause)
	}
	s.log.Info(fmt.Sprintf("vm %s: QEMU pid %d %s", m.spec.Name, m.proc.Pid(), how))
	if cause != nil && !errors.Is(cause, errVMStop) {
		s.mu.Lock()
		if s.vms[m.spec.Name] == m {
			delete(s.vms, m.spec.Name)
		}
		s.mu.Unlock()
		s.forgetFiles(m)
	}
}

func (m *machine) exited() bool {
	if m.proc == nil {
		return false // starting
	}
	_, _, ok := m.proc.Exit()
	return ok
}

func (s *Service) forgetFiles(m *machine) {
	if err := os.RemoveAll(m.files.dir); err != nil {
		s.log.Warn(fmt.Sprintf("vm %s: remove %s: %v", m.spec.Name, m.files.dir, err))
	}
}

// lookup returns the VM named by param 0.
func (s *Service) lookup(args agent.Args) (*machine, error) {
	name, err := args.String(0, "name")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.vms[name]
	if !ok || !m.ready {
		return nil, fault("KeyError", "no vm %q on this node", name)
	}
	return m, nil
}

// running returns the VM of param 0 with a live QMP connection.
func (s *Service) running(args agent.Args) (*machine, error) {
	m, err := s.lookup(args)
	if err != nil {
		return nil, err
	}
	if m.exited() || m.qmp == nil {
		return nil, fault("RuntimeError", "vm %s is not running", m.spec.Name)
	}
	return m, nil
}

// stop(name[, powerdown_timeout]) stops a VM: ACPI powerdown and up to
// powerdown_timeout seconds (default 10; 0 skips it) for the guest to
// power off, then QMP quit, then SIGTERM and SIGKILL. A paused guest
// (postmigrate) cannot power down and goes straight to quit.
func (s *Service) stop(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(1, 2); err != nil {
		return nil, err
	}
	m, err := s.lookup(args)
	if err != nil {
		return nil, err
	}
	grace := 10 * time.Second
	if v := args.Value(1); v != nil {
		f, ok := toFloat(v)
		if !ok || f < 0 || f > 600 {
			return nil, fault("ValueError", "argument 'powerdown_timeout' must be seconds within 0..600")
		}
		grace = time.Duration(f * float64(time.Second))
	}
	how := s.halt(ctx, m, grace)
	code, _, _ := m.proc.Exit()
	return toWire(Stopped{Name: m.spec.Name, How: how, ExitCode: code}), nil
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// halt is stop's escalation; it returns how the VM ended.
func (s *Service) halt(ctx context.Context, m *machine, grace time.Duration) string {
	if m.exited() {
		return "exited"
	}
	name := m.spec.Name
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-m.proc.Done():
			return true
		case <-t.C:
		case <-ctx.Done():
		}
		return false
	}
	if m.qmp != nil && grace > 0 {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := m.qmp.status(qctx)
		if err == nil && st == "running" {
			s.log.Info(fmt.Sprintf("vm %s: ACPI powerdown, %.1f s to power off", name, grace.Seconds()))
			_, _ = m.qmp.execute(qctx, "system_powerdown", nil)
			cancel()
			if wait(grace) {
				return "powerdown"
			}
		} else {
			cancel()
		}
	}
	if m.qmp != nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _ = m.qmp.execute(qctx, "quit", nil)
		cancel()
		if wait(5 * time.Second) {
			s.log.Info(fmt.Sprintf("vm %s: stopped with QMP quit", name))
			return "quit"
		}
	}
	s.log.Warn(fmt.Sprintf("vm %s: QEMU pid %d did not quit; killing it", name, m.proc.Pid()))
	kctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = m.proc.Stop(kctx, errVMStop)
	return "killed"
}

// status(name) returns Status.
func (s *Service) status(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	m, err := s.lookup(args)
	if err != nil {
		return nil, err
	}
	return toWire(s.statusOf(ctx, m)), nil
}

func (s *Service) statusOf(ctx context.Context, m *machine) Status {
	st := Status{Name: m.spec.Name, Owner: m.spec.Owner, Pid: m.proc.Pid(), Accel: m.accel}
	if code, _, done := m.proc.Exit(); done {
		st.Status, st.ExitCode = "exited", code
		st.Stderr = string(m.proc.Stderr())
		return st
	}
	st.Running = true
	st.Status = "unknown"
	if m.qmp != nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if v, err := m.qmp.status(qctx); err == nil {
			st.Status = v
		}
	}
	return st
}

// list() returns the Status of every VM, by name.
func (s *Service) list(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(0, 0); err != nil {
		return nil, err
	}
	s.mu.Lock()
	all := make([]*machine, 0, len(s.vms))
	for _, m := range s.vms {
		if m.ready {
			all = append(all, m)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b *machine) int { return strings.Compare(a.spec.Name, b.spec.Name) })
	out := make([]any, 0, len(all))
	for _, m := range all {
		out = append(out, toWire(s.statusOf(ctx, m)))
	}
	return out, nil
}

// remove(name) forgets a VM that is no longer running and deletes its
// directory (socket, console, events).
func (s *Service) remove(_ context.Context, args agent.Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	m, err := s.lookup(args)
	if err != nil {
		return nil, err
	}
	if !m.exited() {
		return nil, fault("RuntimeError", "vm %s still runs; stop it first", m.spec.Name)
	}
	s.mu.Lock()
	if s.vms[m.spec.Name] == m {
		delete(s.vms, m.spec.Name)
	}
	s.mu.Unlock()
	s.forgetFiles(m)
	return true, nil
}

// maxQMPArgs bounds vm.qmp's arguments and its reply.
const maxQMPArgs = 1 << 20

// qmp(name, command[, arguments_json]) runs one QMP command and returns
// its "return" as JSON text; QMP's error becomes a fault of type
// QMPError with its class and description.
func (s *Service) qmpCall(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(2, 3); err != nil {
		return nil, err
	}
	m, err := s.running(args)
	if err != nil {
		return nil, err
	}
	cmd, err := args.String(1, "command")
	if err != nil {
		return nil, err
	}
	var cargs any
	if raw, err := args.OptString(2, "arguments", ""); err != nil {
		return nil, err
	} else if raw != "" {
		if len(raw) > maxQMPArgs {
			return nil, fault("ValueError", "arguments are %d bytes, more than %d", len(raw), maxQMPArgs)
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(raw), &obj); err != nil {
			return nil, fault("ValueError", "arguments must be a JSON object: %v", err)
		}
		cargs = obj
	}
	qctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ret, err := m.qmp.execute(qctx, cmd, cargs)
	var qe *QMPError
	switch {
	case errors.As(err, &qe):
		return nil, fault("QMPError", "vm %s: %s: %s", m.spec.Name, qe.Class, qe.Desc)
	case err != nil:
		return nil, fault("RuntimeError", "vm %s: %v", m.spec.Name, err)
	case len(ret) > maxQMPArgs:
		return nil, fault("ValueError", "vm %s: %s returned %d bytes, more than %d", m.spec.Name, cmd, len(ret), maxQMPArgs)
	}
	if len(ret) == 0 {
		ret = json.RawMessage("{}")
	}
	return string(ret), nil
}
