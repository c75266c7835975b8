package bridge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/agent"
)

// The agent command is a drop-in for upstream's
// "python3 -m avocado_vt.agent [--host] [--port] --pid-file [--version]":
// same defaults, validation, warnings, exit codes (2 usage, 1 failure) and
// the "Agent daemon starting with PID" line upstream controllers wait for.
const (
	agentVersionString = "Avocado VT Agent v0.1.0" // upstream's --version
	agentBanner        = "Agent daemon starting with PID"
	agentTokenEnv      = "VTCLUSTER_AGENT_TOKEN"
	// agentReadyFDEnv tells a detached child which inherited fd to write
	// its banner to, so the parent knows when it is serving.
	agentReadyFDEnv = "VTCLUSTER_AGENT_READY_FD"
	// agentShutdownTimeout is how long calls in flight get on SIGTERM.
	agentShutdownTimeout = 10 * time.Second
	// agentDetachTimeout bounds the wait for a detached child's banner.
	agentDetachTimeout = 30 * time.Second
	// agentLogMaxBytes rotates agent.log once at start (upstream rotates at
	// 10 MiB too), so a long-lived node does not fill its disk.
	agentLogMaxBytes = 10 << 20
	// agentGCPercent lets the heap grow to 1.5× what is live before a
	// collection instead of Go's 2×: the agent shares its host with the
	// VMs under test and is idle most of the time, and under a storm of
	// calls this keeps about 2 MiB less resident for a few percent more
	// CPU. GOGC in the environment still decides when set.
	agentGCPercent = 50
)

func agentCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run the node agent: the XML-RPC daemon a controller drives (compatible with avocado_vt.agent)",
		Description: `Serves the agent's methods (core.*, examples.hello.ping, host.*, process.*)
over XML-RPC until SIGTERM, SIGINT or core.quit. The pid file is written once
the port is bound and removed on exit; the line
"Agent daemon starting with PID <pid>" on stdout means the agent is ready.

Listening on anything but loopback requires a token, which callers send as
the HTTP Basic auth password (any user name).

Examples:
   vtcluster agent --pid-file /run/vtc-agent.pid
   vtcluster agent --host 0.0.0.0 --port 9999 --pid-file /run/vtc-agent.pid --token-file /etc/vtc-token`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address to bind to (an IP or a host name); 127.0.0.1 keeps the agent private"},
			&cli.StringFlag{Name: "port", Value: "9999", Usage: "port to listen on (1..65535)"},
			&cli.StringFlag{Name: "pid-file", Usage: "`PATH` of the pid file to write (required); its directory must exist and be writable", TakesFile: true},
			&cli.StringFlag{Name: "data-dir", Usage: "`DIR` for logs, job data and downloads (default: data/ beside the executable)", TakesFile: true},
			&cli.StringFlag{Name: "token-file", Usage: "`FILE` holding the token callers must present (or set " + agentTokenEnv + ")", TakesFile: true},
			&cli.BoolFlag{Name: "version", Usage: "print the agent version and exit"},
			// The controller starts agents detached so they outlive its SSH session.
			&cli.BoolFlag{Name: "detach", Hidden: true},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Bool("version") {
				fmt.Fprintf(e.stdout, "%s (vtcluster %s)\n", agentVersionString, Version)
				return nil
			}
			o, err := parseAgentOptions(e, cmd)
			if err != nil {
				return err
			}
			if cmd.Bool("detach") {
				return detachAgent(ctx, e, o)
			}
			return runAgent(ctx, e, o)
		},
	}
}

// agentOptions are the validated flags.
type agentOptions struct {
	host      string
	port      int
	pidFile   string // absolute
	dataDir   string // absolute
	tokenFile string // absolute or empty
	token     string
}

func (o agentOptions) addr() string { return net.JoinHostPort(o.host, strconv.Itoa(o.port)) }

// upstream's hostname pattern: RFC 1123 labels separated by dots.
var hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?)*$`)

func argError(flag, format string, args ...any) error {
	return usageError{fmt.Errorf("agent: argument --%s: %s", flag, fmt.Sprintf(format, args...))}
}

// parseAgentOptions validates as upstream's argparse types do, printing
// the same warnings on stderr. Errors are usage errors (exit 2).
func parseAgentOptions(e *env, cmd *cli.Command) (agentOptions, error) {
	var o agentOptions
	if cmd.Args().Len() > 0 {
		return o, usageError{fmt.Errorf("agent: unrecognized arguments: %s", strings.Join(cmd.Args().Slice(), " "))}
	}
	o.host = cmd.String("host")
	if o.host == "" {
		return o, argError("host", "Host cannot be empty")
	}
	if net.ParseIP(o.host) == nil && (len(o.host) > 253 || !hostnameRE.MatchString(o.host)) {
		return o, argError("host", "Invalid host address: %s", o.host)
	}
	p, err := strconv.Atoi(strings.TrimSpace(cmd.String("port")))
	if err != nil {
		return o, argError("port", "Port must be a number, got: %s", cmd.String("port"))
	}
	if p < 1 || p > 65535 {
		return o, argError("port", "Port must be between 1 and 65535, got: %d", p)
	}
	if p < 1024 {
		fmt.Fprintf(e.stderr, "Warning: Using privileged port %d may require root privileges\n", p)
	}
	o.port = p

	pid := cmd.String("pid-file")
	if !cmd.IsSet("pid-file") {
		return o, usageError{errors.New("agent: the following arguments are required: --pid-file")}
	}
	if pid == "" {
		return o, argError("pid-file", "PID file path cannot be empty")
	}
	if o.pidFile, err = filepath.Abs(pid); err != nil {
		return o, argError("pid-file", "%v", err)
	}
	dir := filepath.Dir(o.pidFile)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return o, argError("pid-file", "PID file directory does not exist: %s", dir)
	}
	if unix.Access(dir, unix.W_OK) != nil {
		return o, argError("pid-file", "PID file directory is not writable: %s", dir)
	}
	if _, err := os.Lstat(o.pidFile); err == nil {
		fmt.Fprintf(e.stderr, "Warning: PID file already exists and will be overwritten: %s\n", o.pidFile)
	}

	if d := cmd.String("data-dir"); d != "" {
		o.dataDir, err = filepath.Abs(d)
	} else {
		o.dataDir, err = defaultAgentDataDir()
	}
	if err != nil {
		return o, argError("data-dir", "%v", err)
	}

	if err := readAgentToken(e, cmd, &o); err != nil {
		return o, err
	}
	if o.host == "0.0.0.0" {
		fmt.Fprintln(e.stderr, "Warning: Binding to 0.0.0.0 exposes the agent to external networks. Ensure proper firewall protection.")
	}
	if o.token == "" && !agent.IsLoopbackHost(o.host) {
		return o, usageError{fmt.Errorf("agent: refusing to listen on %s without a token: anyone who can reach the port could run commands as this user; "+
			"provide one with --token-file FILE or the %s environment variable, or keep --host 127.0.0.1 and reach the agent through SSH", o.host, agentTokenEnv)}
	}
	return o, nil
}

// defaultAgentDataDir is data/ beside the executable, as upstream keeps
// data/ inside its package directory.
func defaultAgentDataDir() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot locate the executable for the default data dir: %w", err)
	}
	return filepath.Join(filepath.Dir(exe), "data"), nil
}

// readAgentToken takes the token from --token-file or the environment;
// both at once is a conflict. The variable is removed from the
// environment so nothing started later inherits it.
func readAgentToken(e *env, cmd *cli.Command, o *agentOptions) error {
	envTok, envSet := os.LookupEnv(agentTokenEnv)
	file := cmd.String("token-file")
	switch {
	case file != "" && envSet:
		return usageError{fmt.Errorf("agent: both --token-file and %s are set; give the token one way", agentTokenEnv)}
	case file != "":
		abs, err := filepath.Abs(file)
		if err != nil {
			return argError("token-file", "%v", err)
		}
		data, err := os.ReadFile(abs)
		if err != nil {
			return argError("token-file", "cannot read the token: %v", err)
		}
		fi, err := os.Stat(abs)
		if err == nil && fi.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(e.stderr, "Warning: token file %s is readable by other users (mode %04o); chmod 600 it\n", abs, fi.Mode().Perm())
		}
		o.tokenFile, o.token = abs, strings.TrimSpace(string(data))
		if o.token == "" {
			return argError("token-file", "token file %s is empty", abs)
		}
	case envSet:
		o.token = strings.TrimSpace(envTok)
		if o.token == "" {
			return usageError{fmt.Errorf("agent: %s is set but empty", agentTokenEnv)}
		}
	}
	if o.token != "" && strings.ContainsAny(o.token, "\r\n\x00") {
		return usageError{errors.New("agent: the token must be one line without NUL")}
	}
	return nil
}

// runAgent is the daemon: bind, write the pid file, announce, serve until
// a signal or core.quit, then clean up. Exit status 0 after a graceful
// stop, 1 when it cannot start or is stopped by a second signal.
func runAgent(ctx context.Context, e *env, o agentOptions) (err error) {
	started := time.Now()
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(agentGCPercent)
	}
	pid := os.Getpid()
	ready := takeReadyFD()
	defer func() {
		if ready != nil {
			ready.Close()
		}
	}()
	if o.token != "" {
		os.Unsetenv(agentTokenEnv)
	}

	dd, err := agent.OpenDataDir(o.dataDir, started, nil)
	if err != nil {
		return exitError{1, err}
	}
	defer dd.Close()
	logger, closeLog, err := openAgentLog(dd.AgentLog(), e.stderr)
	if err != nil {
		return exitError{1, err}
	}
	defer closeLog()
	defer func() {
		if err != nil {
			logger.Error("agent: stopped with an error", "err", err)
		}
	}()
	logger.Info("agent: starting", "pid", pid, "addr", o.addr(), "data_dir", dd.Path(), "version", Version)

	streamer, err := agent.NewLogStreamer(dd.ServiceLog(), logger.With("component", "logstream"))
	if err != nil {
		return exitError{1, err}
	}
	defer streamer.Close()
	svcLogger := func(name string) *slog.Logger {
		return slog.New(streamer.Handler("avocado.service." + name))
	}

	quitCh := make(chan struct{})
	quit := sync.OnceFunc(func() { close(quitCh) })
	cfg := agent.DefaultConfig()
	cfg.Addr = o.addr()
	cfg.Token = o.token
	cfg.ShutdownTimeout = agentShutdownTimeout
	cfg.Logger = logger
	srv, err := agent.New(cfg)
	if err != nil {
		return exitError{1, err}
	}
	// The record lets the next agent stop what this one started, should
	// it die without stopping it.
	proc, err := agent.NewProcessService(agent.ProcessConfig{RecordFile: filepath.Join(dd.Path(), agent.ProcessRecordName)}, svcLogger("process"))
	if err != nil {
		return exitError{1, err}
	}
	defer proc.Close()
	if err := registerAgentServices(srv, dd, streamer, quit, svcLogger, proc); err != nil {
		return exitError{1, err}
	}

	if err := srv.Listen(); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return exitError{1, fmt.Errorf("agent: cannot bind to %s: address already in use; another agent instance may be running", o.addr())}
		}
		return exitError{1, fmt.Errorf("agent: cannot bind to %s: %w", o.addr(), err)}
	}
	if err := writePidFile(o.pidFile, pid); err != nil {
		_ = srv.Shutdown(context.Background())
		return exitError{1, err}
	}
	defer removePidFile(o.pidFile, pid, logger)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()

	banner := fmt.Sprintf("%s %d", agentBanner, pid)
	fmt.Fprintln(e.stdout, banner)
	logger.Info(banner, "addr", srv.Addr().String())
	if ready != nil {
		fmt.Fprintln(ready, banner)
		ready.Close()
		ready = nil
	}

	select {
	case s := <-sigs:
		logger.Info("agent: received "+signalName(s)+", shutting down gracefully", "timeout_seconds", agentShutdownTimeout.Seconds())
	case <-quitCh:
		logger.Info("agent: core.quit called, shutting down gracefully")
	case <-ctx.Done():
		logger.Info("agent: context ended, shutting down gracefully")
	case err := <-served:
		_ = srv.Shutdown(context.Background())
		return exitError{1, fmt.Errorf("agent: server stopped: %w", err)}
	}

	shutCtx, cancel := context.WithTimeout(context.Background(), agentShutdownTimeout)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(shutCtx) }()
	select {
	case err := <-shut:
		if err != nil {
			logger.Warn("agent: calls did not finish in time", "err", err)
		}
		<-served
	case s := <-sigs:
		// The operator insists: skip the grace period, keep only the pid
		// file cleanup (deferred above).
		logger.Warn("agent: received " + signalName(s) + " again, exiting at once")
		cancel()
		return exitError{1, nil}
	}
	// Stop what process.start left running before the pid file goes, so a
	// controller that sees it gone finds the node quiet.
	_ = proc.Close()
	logger.Info("agent: stopped")
	return nil
}

// registerAgentServices registers every service the daemon offers.
func registerAgentServices(srv *agent.Server, dd *agent.DataDir, streamer *agent.LogStreamer, quit func(),
	svcLogger func(string) *slog.Logger, proc *agent.ProcessService) error {
	core, err := agent.NewCoreService(agent.CoreConfig{Data: dd, Logs: streamer, Quit: quit, Logger: svcLogger("core")})
	if err != nil {
		return err
	}
	examples, err := agent.NewExamplesService(svcLogger("examples"))
	if err != nil {
		return err
	}
	host, err := agent.NewHostService("/", svcLogger("host"))
	if err != nil {
		return err
	}
	for _, s := range []agent.Service{core, examples, host, proc} {
		if err := srv.Register(s); err != nil {
			return err
		}
	}
	return srv.Registry().RegisterAs(agent.CoreAlias, core)
}

func signalName(s os.Signal) string {
	if sig, ok := s.(syscall.Signal); ok {
		if n := unix.SignalName(sig); n != "" {
			return n
		}
	}
	return s.String()
}

// openAgentLog logs Debug and up to agent.log and Info and up to stderr,
// as text. An agent.log above agentLogMaxBytes is moved to agent.log.1.
func openAgentLog(path string, stderr io.Writer) (*slog.Logger, func(), error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > agentLogMaxBytes {
		_ = os.Rename(path, path+".1")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: log: %w", err)
	}
	h := slog.NewMultiHandler(
		slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}),
	)
	return slog.New(h), func() { f.Close() }, nil
}

// writePidFile writes "<pid>\n" atomically, so a reader never sees a
// partial file.
func writePidFile(path string, pid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".vtc-agent-pid-*")
	if err != nil {
		return fmt.Errorf("agent: pid file: %w", err)
	}
	_, werr := fmt.Fprintf(tmp, "%d\n", pid)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("agent: pid file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("agent: pid file: %w", err)
	}
	return nil
}

// removePidFile removes the pid file only while it still holds our pid:
// another agent may have taken it over since.
func removePidFile(path string, pid int, logger *slog.Logger) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if strings.TrimSpace(string(data)) != strconv.Itoa(pid) {
		logger.Info("agent: pid file now belongs to another process; leaving it", "path", path)
		return
	}
	if err := os.Remove(path); err != nil {
		logger.Warn("agent: cannot remove pid file", "path", path, "err", err)
	}
}

// takeReadyFD returns the pipe a detaching parent waits on, if any, and
// makes sure no process we start inherits it.
func takeReadyFD() *os.File {
	v, ok := os.LookupEnv(agentReadyFDEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(agentReadyFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "agent-ready")
}

// detachAgent starts the agent again as a daemon in its own session
// (stdin /dev/null, stdout and stderr appended to <data>/log/agent.out)
// and returns once it is serving, printing its banner, or once it failed,
// with its exit status. The controller uses this so agents outlive the SSH
// session that started them.
func detachAgent(ctx context.Context, e *env, o agentOptions) error {
	exe, err := os.Executable()
	if err != nil {
		return exitError{1, fmt.Errorf("agent: detach: %w", err)}
	}
	logDir := filepath.Join(o.dataDir, "log")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return exitError{1, fmt.Errorf("agent: detach: %w", err)}
	}
	outPath := filepath.Join(logDir, "agent.out")
	out, err := os.OpenFile(outPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return exitError{1, fmt.Errorf("agent: detach: %w", err)}
	}
	defer out.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return exitError{1, fmt.Errorf("agent: detach: %w", err)}
	}
	defer r.Close()

	// Only what this child writes is reported if it fails.
	var outStart int64
	if fi, err := out.Stat(); err == nil {
		outStart = fi.Size()
	}

	args := []string{"agent", "--host", o.host, "--port", strconv.Itoa(o.port), "--pid-file", o.pidFile, "--data-dir", o.dataDir}
	if o.tokenFile != "" {
		args = append(args, "--token-file", o.tokenFile)
	}
	cmd := exec.Command(exe, args...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{w} // fd 3
	cmd.Env = append(os.Environ(), agentReadyFDEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return exitError{1, fmt.Errorf("agent: detach: starting %s: %w", exe, err)}
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	timer := time.NewTimer(agentDetachTimeout)
	defer timer.Stop()
	select {
	case l := <-line:
		if strings.HasPrefix(l, agentBanner) {
			fmt.Fprintln(e.stdout, l)
			return nil
		}
		// The pipe closed without a banner: the child is exiting.
		select {
		case <-exited:
		case <-timer.C:
			_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
			<-exited
		}
	case <-timer.C:
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-exited
		return exitError{1, fmt.Errorf("agent: detached agent did not become ready within %v and was killed; see %s", agentDetachTimeout, outPath)}
	case <-ctx.Done():
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-exited
		return exitError{1, fmt.Errorf("agent: detach: %w", ctx.Err())}
	}
	code := cmd.ProcessState.ExitCode()
	if code <= 0 {
		code = 1
	}
	fmt.Fprint(e.stderr, tailFile(outPath, outStart, 20))
	return exitError{code, fmt.Errorf("agent: detached agent exited with status %d before it was ready; its output is in %s", cmd.ProcessState.ExitCode(), outPath)}
}

// tailFile returns the last n lines written to path after offset, for
// error reports.
func tailFile(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > max {
		offset = fi.Size() - max
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	data, _ := io.ReadAll(io.LimitReader(f, max))
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
