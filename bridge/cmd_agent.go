package bridge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/agent/vm"
	resnode "github.com/vtcluster/vtcluster/resmgr/node"
)

// The agent command is a drop-in for upstream's
// "python3 -m avocado_vt.agent [--host] [--port] --pid-file [--version]":
// same defaults, validation, warnings, exit codes (2 usage, 1 failure) and
// the "Agent daemon starting with PID" line upstream controllers wait for.
const (
	agentVersionString = "Avocado VT Agent v0.1.0" // upstream's --version
	agentTokenEnv      = "VTCLUSTER_AGENT_TOKEN"
	// agentReadyFDEnv tells a detached child which inherited fd to write
	// its banner to, so the parent knows when it is serving.
	agentReadyFDEnv = "VTCLUSTER_AGENT_READY_FD"
	// agentShutdownTimeout is how long calls in flight get on SIGTERM.
	agentShutdownTimeout = 10 * time.Second
	// agentDetachTimeout bounds the wait for a detached child's banner.
	agentDetachTimeout = 30 * time.Second
	// agentMinTokenBytes: a shorter token can be guessed over the network.
	agentMinTokenBytes = 16
)

func agentCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run the node agent: the XML-RPC daemon a controller drives (compatible with avocado_vt.agent)",
		// A host name never contains a comma; one value per --allow-host.
		DisableSliceFlagSeparator: true,
		Description: `Serves the agent's methods (core.*, examples.hello.ping, host.*, process.*)
over XML-RPC until SIGTERM, SIGINT or core.quit. The pid file is written once
the port (or socket) is bound and removed on exit; the line
"Agent daemon starting with PID <pid>" on stdout means the agent is ready.

Every way in needs a credential. With --unix-socket PATH the agent listens on
a Unix socket instead of TCP: PATH's directory must be mode 0700 and owned by
the agent's user, and only that user and root may connect (the controller's
tunnel mode reaches it through SSH). On TCP, loopback included, a token is
required (at least 16 bytes, from a file no other user can read); callers
send it as the HTTP Basic auth password (any user name). Over plain HTTP the
token crosses the network in clear: use tunnel mode, an SSH tunnel or a VPN
on networks you do not trust.

Examples:
   vtcluster agent --unix-socket /root/vtc-agent/agent.sock --pid-file /root/vtc-agent/agent.pid
   vtcluster agent --host 0.0.0.0 --port 9999 --pid-file /run/vtc-agent.pid --token-file /etc/vtc-token`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address to bind to (an IP or a host name); needs a token, loopback included"},
			&cli.StringFlag{Name: "port", Value: "9999", Usage: "port to listen on (1..65535)"},
			&cli.StringFlag{Name: "unix-socket", Usage: "listen on the Unix socket `PATH` instead of TCP; its directory must be mode 0700 and owned by this user, and only this user and root may connect", TakesFile: true},
			&cli.StringSliceFlag{Name: "allow-host", Usage: "also accept `NAME` in the Host header of requests (a name callers use for this node besides its addresses and host name); repeatable"},
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
	socket    string // absolute, or empty for TCP
	allowHost []string
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
	if sock := cmd.String("unix-socket"); cmd.IsSet("unix-socket") {
		if sock == "" {
			return o, argError("unix-socket", "socket path cannot be empty")
		}
		if cmd.IsSet("host") || cmd.IsSet("port") {
			return o, usageError{errors.New("agent: --unix-socket replaces --host and --port; give one or the other")}
		}
		abs, err := filepath.Abs(sock)
		if err != nil {
			return o, argError("unix-socket", "%v", err)
		}
		// sun_path holds 107 bytes and a NUL.
		if len(abs) > 107 {
			return o, argError("unix-socket", "socket path %s is %d bytes long; at most 107 fit in a Unix socket address", abs, len(abs))
		}
		o.socket = abs
	}
	o.allowHost = cmd.StringSlice("allow-host")
	if len(o.allowHost) > 0 && o.socket != "" {
		return o, usageError{errors.New("agent: --allow-host applies to TCP only; on a Unix socket only loopback names are accepted")}
	}
	for _, h := range o.allowHost {
		if net.ParseIP(h) == nil && (len(h) > 253 || !hostnameRE.MatchString(h)) {
			return o, argError("allow-host", "Invalid host name: %s", h)
		}
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
	if o.socket != "" {
		return o, nil
	}
	if o.host == "0.0.0.0" {
		fmt.Fprintln(e.stderr, "Warning: Binding to 0.0.0.0 exposes the agent to external networks. Ensure proper firewall protection.")
	}
	if o.token == "" {
		return o, usageError{fmt.Errorf("agent: refusing to listen on TCP %s without a token: anyone who can reach the port (on loopback, every local user) could run commands as this user; "+
			"provide a token with --token-file FILE or the %s environment variable, or listen with --unix-socket PATH", o.addr(), agentTokenEnv)}
	}
	return o, nil
}

// defaultAgentDataDir is data/ beside the executable, as upstream keeps
// data/ inside its package directory.
func defaultAgentDataDir() (string, error) {
	exe, err := executable()
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
		data, err := readPrivateFile(abs, 4096)
		if err != nil {
			return argError("token-file", "%v", err)
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
	if o.token != "" && len(o.token) < agentMinTokenBytes {
		return usageError{fmt.Errorf("agent: the token is %d bytes long; at least %d are required (for example: head -c 32 /dev/urandom | base64 > FILE)", len(o.token), agentMinTokenBytes)}
	}
	return nil
}

// readPrivateFile reads a secret that no other user may read, as ssh
// insists for keys: a token others can read is no credential. The mode is
// checked on the opened file, so a swap after the check changes nothing.
func readPrivateFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the token: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read the token: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("token file %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("token file %s is accessible by other users (mode %04o); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read the token: %w", err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("token file %s is larger than %d bytes", path, max)
	}
	return data, nil
}

// runAgent runs the daemon with the services of this binary.
func runAgent(ctx context.Context, e *env, o agentOptions) error {
	var ready io.WriteCloser
	if f := takeReadyFD(); f != nil {
		ready = f
	}
	if o.token != "" {
		os.Unsetenv(agentTokenEnv)
	}
	cfg := agent.DefaultConfig()
	cfg.Addr = o.addr()
	cfg.SocketPath = o.socket
	cfg.AllowedHosts = o.allowHost
	cfg.Token = o.token
	cfg.ShutdownTimeout = agentShutdownTimeout
	if o.socket != "" { // tunnel mode: the only one a test's processes can sync from
		placeSyncAliases(e, o.dataDir)
	}
	err := agent.Run(ctx, agent.DaemonConfig{
		DataDir:  o.dataDir,
		Server:   cfg,
		PidFile:  o.pidFile,
		Version:  Version,
		Stdout:   e.stdout,
		Stderr:   e.stderr,
		Ready:    ready,
		Services: registerAgentServices,
	})
	switch {
	case errors.Is(err, agent.ErrStoppedAtOnce):
		return exitError{1, nil}
	case err != nil:
		return exitError{1, err}
	}
	return nil
}

// registerAgentServices registers every service the daemon offers.
func registerAgentServices(d *agent.Daemon, srv *agent.Server) error {
	core, err := agent.NewCoreService(agent.CoreConfig{Data: d.Data, Logs: d.Logs, Quit: d.Quit, Logger: d.ServiceLogger("core")})
	if err != nil {
		return err
	}
	examples, err := agent.NewExamplesService(d.ServiceLogger("examples"))
	if err != nil {
		return err
	}
	host, err := agent.NewHostService("/", d.ServiceLogger("host"))
	if err != nil {
		return err
	}
	// The record lets the next agent stop what this one started, should
	// it die without stopping it.
	proc, err := agent.NewProcessService(agent.ProcessConfig{RecordFile: filepath.Join(d.Data.Path(), agent.ProcessRecordName)}, d.ServiceLogger("process"))
	if err != nil {
		return err
	}
	d.CloseOnStop(proc)
	// The node refuses a hand-over while another owner's lease runs, so
	// two controllers with separate states cannot stop each other's tests.
	owner, err := agent.NewOwnerService(filepath.Join(d.Data.Path(), agent.OwnerRecordName), d.ServiceLogger("owner"))
	if err != nil {
		return err
	}
	proc.GuardHandOver(owner.CheckHandOver)
	// An unreadable resource record disables only the resource service
	// (its calls name the file); the agent still starts.
	res, err := resnode.New(resnode.Config{DataDir: d.Data.Path(), Logger: d.ServiceLogger("resource")})
	if err != nil {
		return err
	}
	// QEMU guests, supervised by proc; closed before it (last first), so
	// each VM gets a QMP quit before the process service's SIGTERM.
	vms, err := vm.NewService(vm.Config{Dir: filepath.Join(d.Data.Path(), "vm"), Procs: proc, Logger: d.ServiceLogger("vm")})
	if err != nil {
		return err
	}
	d.CloseOnStop(vms)
	for _, s := range []agent.Service{core, examples, host, proc, owner, res, vms} {
		if err := srv.Register(s); err != nil {
			return err
		}
	}
	return srv.RegisterAs(agent.CoreAlias, core)
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
	exe, err := executable()
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

	args := []string{"agent", "--pid-file", o.pidFile, "--data-dir", o.dataDir}
	if o.socket != "" {
		args = append(args, "--unix-socket", o.socket)
	} else {
		args = append(args, "--host", o.host, "--port", strconv.Itoa(o.port))
	}
	for _, h := range o.allowHost {
		args = append(args, "--allow-host", h)
	}
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
		if strings.HasPrefix(l, agent.Banner) {
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
