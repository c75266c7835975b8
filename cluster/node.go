package cluster

import (
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/cluster/sshx"
)

// Agent layout on a node, under Node.AgentDir(): the binary, its pid file,
// its data dir, its socket (tunnel mode) or its token (direct mode). One
// place so start, stop, cleanup and log collection agree.
const (
	agentBinaryName = "vtcluster"
	agentPIDName    = "vtcluster-agent.pid"
	agentDataName   = "data"
	agentTokenName  = "token"
	agentSocketName = "agent.sock"
)

// maxSocketPath is the longest Unix socket path Linux takes (sun_path is
// 108 bytes with its NUL); a longer agent_base_dir cannot hold the socket.
const maxSocketPath = 107

// AgentSocket is where a tunnel-mode agent listens on the node: a Unix
// socket in the 0700 agent directory, so that only the SSH user reaches it.
func AgentSocket(n Node) string { return path.Join(n.AgentDir(), agentSocketName) }

// NewLogSocketPath returns a fresh path in the node's agent directory for
// the SSH remote forward its agent sends log records to: only the SSH user
// can connect there, and a random name never meets a stale socket, which
// sshd would not replace.
func NewLogSocketPath(n Node) (string, error) { return newSocketPath(n, "log-") }

// NewSyncSocketPath is NewLogSocketPath for the SSH remote forward the
// test's processes on the node reach its sync service through.
func NewSyncSocketPath(n Node) (string, error) { return newSocketPath(n, "sync-") }

// testSocketPrefixes name the sockets a test forwards from a node's agent
// directory (its log stream, its sync service); isTestSocketName tells
// them, for the job's connection holder, which forwards only those.
var testSocketPrefixes = []string{"log-", "sync-"}

func isTestSocketName(base string) bool {
	for _, p := range testSocketPrefixes {
		if strings.HasPrefix(base, p) {
			return true
		}
	}
	return false
}

func newSocketPath(n Node, prefix string) (string, error) {
	p := path.Join(n.AgentDir(), prefix+rand.Text()[:10]+".sock")
	return p, checkSocketPath(n.Name, p)
}

// checkSocketPath refuses a socket path the kernel would truncate.
func checkSocketPath(node, p string) error {
	if len(p) > maxSocketPath {
		return fmt.Errorf("cluster: node %q: socket path %s is %d bytes, above the %d a Unix socket takes: choose a shorter agent_base_dir", node, p, len(p), maxSocketPath)
	}
	return nil
}

// ConnectOptions tune how a node is reached.
type ConnectOptions struct {
	// AcceptNewHostKeys records the host key of a node seen for the first
	// time (trust on first use). A changed key is refused regardless.
	AcceptNewHostKeys bool
	// Password logs in when keys are refused; it is never stored.
	Password string
	// ConnectTimeout bounds the SSH handshake; zero uses the SSH default.
	ConnectTimeout time.Duration
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
}

// NodeConn is a live connection to one registered node: the agent client,
// and the SSH connection when the node needs one (tunnel mode always;
// direct mode only to deploy or start an agent). Safe for concurrent use.
type NodeConn struct {
	node Node
	opts ConnectOptions
	log  *slog.Logger

	mu     sync.Mutex
	ssh    *sshx.Client
	agent  *Client
	closed bool
	// held is the link through the job's SSH connection holder, for a
	// connection made by ConnectHeld.
	held *heldLink
}

// Connect reaches node n. In tunnel mode it dials SSH now, so host-key and
// login problems surface here; in direct mode it only prepares the client,
// so a node whose agent already runs (upstream's Python agent, say) is
// callable without SSH at all.
func Connect(ctx context.Context, n Node, opts ConnectOptions) (*NodeConn, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	nc := &NodeConn{node: n, opts: opts, log: log.With("node", n.Name)}
	switch n.AgentBind {
	case AgentBindDirect:
		token := ""
		if n.TokenFile != "" {
			p, err := os.ReadFile(n.TokenFile)
			if err != nil {
				return nil, fmt.Errorf("cluster: node %q: reading token_file: %w", n.Name, err)
			}
			token = strings.TrimSpace(string(p))
			if token == "" {
				return nil, fmt.Errorf("cluster: node %q: token_file %s is empty", n.Name, n.TokenFile)
			}
		}
		nc.agent = NewClient(n.Name, NewDirectTransport(n.Host(), n.ProxyPort), token)
	default:
		sock := AgentSocket(n)
		if err := checkSocketPath(n.Name, sock); err != nil {
			return nil, err
		}
		ssh, err := nc.SSH(ctx)
		if err != nil {
			return nil, err
		}
		nc.agent = NewClient(n.Name, NewTunnelTransport(ssh, sock), "")
	}
	return nc, nil
}

// Node returns the node this connection is for.
func (nc *NodeConn) Node() Node { return nc.node }

// Agent returns the node's agent client.
func (nc *NodeConn) Agent() *Client { return nc.agent }

// Call invokes an agent method; see Client.Call.
func (nc *NodeConn) Call(ctx context.Context, method string, args ...any) (any, error) {
	return nc.agent.Call(ctx, method, args...)
}

// SSH returns the node's SSH connection, dialing it on first use.
func (nc *NodeConn) SSH(ctx context.Context) (*sshx.Client, error) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if nc.closed {
		return nil, fmt.Errorf("cluster: node %q: %w", nc.node.Name, sshx.ErrClosed)
	}
	if nc.ssh != nil {
		select {
		case <-nc.ssh.Done():
			nc.ssh = nil // lost: dial again
		default:
			return nc.ssh, nil
		}
	}
	cfg := sshx.DefaultConfig()
	cfg.Address = nc.node.Host()
	cfg.Port = nc.node.ShellPort
	cfg.User = nc.node.User
	if nc.node.KeyFile != "" {
		cfg.KeyFiles = []string{nc.node.KeyFile}
	} else if home, err := os.UserHomeDir(); err == nil {
		for _, k := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			p := filepath.Join(home, ".ssh", k)
			if _, err := os.Stat(p); err == nil {
				cfg.KeyFiles = append(cfg.KeyFiles, p)
			}
		}
	}
	if nc.node.KnownHosts != "" {
		cfg.KnownHostsFile = nc.node.KnownHosts
	}
	cfg.Password = nc.opts.Password
	cfg.AcceptNewHostKeys = nc.opts.AcceptNewHostKeys
	if nc.opts.ConnectTimeout > 0 {
		cfg.ConnectTimeout = nc.opts.ConnectTimeout
	}
	c, err := sshx.Dial(ctx, cfg, nc.log)
	if err != nil {
		return nil, fmt.Errorf("cluster: node %q: %w", nc.node.Name, err)
	}
	nc.ssh = c
	return c, nil
}

// Close closes the agent client and the SSH connection. Idempotent.
func (nc *NodeConn) Close() error {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if nc.closed {
		return nil
	}
	nc.closed = true
	if nc.agent != nil {
		nc.agent.Close()
	}
	if nc.held != nil {
		nc.held.Close()
	}
	if nc.ssh != nil {
		return nc.ssh.Close()
	}
	return nil
}

// goarchToUname maps GOARCH to what `uname -m` prints on such a machine.
var goarchToUname = map[string][]string{
	"amd64":   {"x86_64"},
	"arm64":   {"aarch64", "arm64"},
	"386":     {"i386", "i486", "i586", "i686"},
	"arm":     {"armv6l", "armv7l", "armv8l"},
	"ppc64le": {"ppc64le"},
	"s390x":   {"s390x"},
	"riscv64": {"riscv64"},
}

// ArchError is a node whose architecture the agent binary cannot run on.
type ArchError struct {
	Node, NodeArch, BinaryArch string
}

func (e *ArchError) Error() string {
	return fmt.Sprintf("cluster: node %q is %s but the agent binary is built for %s: build vtcluster for that node (GOARCH=...) and deploy it with --agent-binary FILE", e.Node, e.NodeArch, e.BinaryArch)
}

// BinaryArch returns the GOARCH an executable was built for, read from its
// ELF header, so that a binary built for the nodes (--agent-binary) is
// checked for what it is, not for what the controller runs on.
func BinaryArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("agent binary %s: not a Linux executable: %w", path, err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_PPC64:
		if f.ByteOrder == binary.LittleEndian {
			return "ppc64le", nil
		}
		return "ppc64", nil
	case elf.EM_S390:
		return "s390x", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	}
	return "", fmt.Errorf("agent binary %s: unsupported machine %s", path, f.Machine)
}

// SetupAgentEnv deploys the agent binary (this very vtcluster, at binary)
// into <agent_base_dir>/<name>/ over SFTP, skipping the upload when the
// node already has the same SHA-256. It refuses a node of another
// architecture. In direct mode it also installs the token (0600).
// Errors: *ArchError, *sshx.RemoteExitError, SSH and SFTP errors.
func (nc *NodeConn) SetupAgentEnv(ctx context.Context, binary string) (sshx.UploadResult, error) {
	ssh, err := nc.SSH(ctx)
	if err != nil {
		return sshx.UploadResult{}, err
	}
	arch, err := ssh.RemoteArch(ctx)
	if err != nil {
		return sshx.UploadResult{}, fmt.Errorf("cluster: node %q: %w", nc.node.Name, err)
	}
	if nc.node.Arch != "" && nc.node.Arch != arch {
		return sshx.UploadResult{}, fmt.Errorf("cluster: node %q: config says arch %q but the node reports %q", nc.node.Name, nc.node.Arch, arch)
	}
	binArch, err := BinaryArch(binary)
	if err != nil {
		return sshx.UploadResult{}, fmt.Errorf("cluster: node %q: %w", nc.node.Name, err)
	}
	ok := false
	for _, a := range goarchToUname[binArch] {
		ok = ok || a == arch
	}
	if !ok {
		return sshx.UploadResult{}, &ArchError{Node: nc.node.Name, NodeArch: arch, BinaryArch: binArch}
	}
	dir := nc.node.AgentDir()
	if err := ssh.Run(ctx, []string{"mkdir", "-p", "-m", "0700", "--", dir}, sshx.RunOptions{}); err != nil {
		return sshx.UploadResult{}, fmt.Errorf("cluster: node %q: create agent dir: %w", nc.node.Name, err)
	}
	// mkdir -m leaves an existing directory's mode alone, and the agent's
	// socket is private only inside a private directory.
	if err := ssh.Run(ctx, []string{"chmod", "0700", "--", dir}, sshx.RunOptions{}); err != nil {
		return sshx.UploadResult{}, fmt.Errorf("cluster: node %q: make agent dir private: %w", nc.node.Name, err)
	}
	res, err := ssh.Upload(ctx, binary, path.Join(dir, agentBinaryName), 0o755)
	if err != nil {
		return res, fmt.Errorf("cluster: node %q: upload agent: %w", nc.node.Name, err)
	}
	if nc.node.AgentBind == AgentBindDirect && nc.node.TokenFile != "" {
		if _, err := ssh.Upload(ctx, nc.node.TokenFile, path.Join(dir, agentTokenName), 0o600); err != nil {
			return res, fmt.Errorf("cluster: node %q: install agent token: %w", nc.node.Name, err)
		}
	}
	return res, nil
}

// AgentAlive reports whether the node's agent answers core.is_alive.
func (nc *NodeConn) AgentAlive(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := nc.agent.Call(ctx, "core.is_alive")
	return err == nil && v == true
}

// StartAgent starts the node's agent detached from the SSH session, so it
// outlives this process (upstream's dies with the controller's session),
// and waits until it answers or ctx ends. An agent that already answers is
// reused, which is also how a direct-mode node with an upstream agent works.
// On failure the error carries the last lines of the agent's own logs.
func (nc *NodeConn) StartAgent(ctx context.Context) (AgentInfo, error) {
	if nc.AgentAlive(ctx) {
		return nc.agentInfo(ctx), nil
	}
	if nc.node.Unauthenticated() {
		return AgentInfo{}, fmt.Errorf("cluster: node %q: its agent at %s:%d does not answer, and vtcluster never starts an agent without a token in direct mode: start the agent by hand or set token_file", nc.node.Name, nc.node.Host(), nc.node.ProxyPort)
	}
	ssh, err := nc.SSH(ctx)
	if err != nil {
		return AgentInfo{}, err
	}
	dir := nc.node.AgentDir()
	argv := []string{
		path.Join(dir, agentBinaryName), "agent", "--detach",
		"--pid-file", path.Join(dir, agentPIDName),
		"--data-dir", path.Join(dir, agentDataName),
	}
	if nc.node.AgentBind == AgentBindDirect {
		argv = append(argv, "--host", nc.node.Host(), "--port", strconv.Itoa(nc.node.ProxyPort),
			"--token-file", path.Join(dir, agentTokenName))
	} else {
		// No TCP port at all: loopback is no boundary between the users
		// of a node, the socket's directory is.
		argv = append(argv, "--unix-socket", AgentSocket(nc.node))
	}
	// One writer for both streams, which ssh copies from two goroutines:
	// it must lock. The agent's start-up output is short; the tail is what
	// explains a failure.
	out := sshx.NewTailBuffer(64 << 10)
	if err := ssh.Run(ctx, argv, sshx.RunOptions{Stdout: out, Stderr: out}); err != nil {
		// Another controller (a second job's hook) may have started the
		// agent between our check and our start; then ours lost the bind
		// and theirs is the one to use.
		if nc.AgentAlive(ctx) {
			return nc.agentInfo(ctx), nil
		}
		return AgentInfo{}, fmt.Errorf("cluster: node %q: start agent: %w\n%s%s", nc.node.Name, err, out.String(), nc.logTail(ctx))
	}
	backoff := 20 * time.Millisecond
	for {
		if nc.AgentAlive(ctx) {
			info := nc.agentInfo(ctx)
			nc.log.Info("agent started", "pid", info.PID)
			return info, nil
		}
		select {
		case <-ctx.Done():
			hint := ""
			if nc.node.AgentBind != AgentBindDirect {
				// sshd answers a forbidden forward as it answers a socket
				// that is not there, so the client cannot tell them apart.
				hint = fmt.Sprintf(" (tunnel mode reaches the agent's socket %s through SSH: the node's sshd must allow it, AllowStreamLocalForwarding yes, the OpenSSH default)", AgentSocket(nc.node))
			}
			return AgentInfo{}, fmt.Errorf("cluster: node %q: agent did not answer%s: %w%s", nc.node.Name, hint, ctx.Err(), nc.logTail(context.WithoutCancel(ctx)))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func (nc *NodeConn) agentInfo(ctx context.Context) AgentInfo {
	info := AgentInfo{StartedAt: time.Now().UTC()}
	if nc.node.AgentBind == AgentBindDirect && nc.ssh == nil {
		return info // an agent we did not start: no pid to read without SSH
	}
	if ssh, err := nc.SSH(ctx); err == nil {
		if out, err := ssh.ReadSmallFile(ctx, path.Join(nc.node.AgentDir(), agentPIDName), 64); err == nil {
			info.PID, _ = strconv.Atoi(strings.TrimSpace(string(out)))
		}
	}
	return info
}

// logTail returns the end of the agent's logs on the node, for errors.
func (nc *NodeConn) logTail(ctx context.Context) string {
	ssh, err := nc.SSH(ctx)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var b strings.Builder
	for _, f := range []string{"agent.out", "agent.log"} {
		p := path.Join(nc.node.AgentDir(), agentDataName, "log", f)
		out, err := ssh.Output(ctx, []string{"tail", "-n", "20", "--", p})
		if err == nil && len(out) > 0 {
			fmt.Fprintf(&b, "\n--- last lines of %s on %s ---\n%s", p, nc.node.Name, out)
		}
	}
	return b.String()
}

// StopAgent asks the agent to quit, then makes sure its process is gone,
// signalling it by pid if it does not exit in time. Stopping a node whose
// agent is not running is not an error.
func (nc *NodeConn) StopAgent(ctx context.Context) error {
	if nc.AgentAlive(ctx) {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		// The reply may be lost when the agent exits first; that is fine.
		_, _ = nc.agent.Call(qctx, "core.quit")
		cancel()
	}
	if nc.node.AgentBind == AgentBindDirect && nc.node.Unauthenticated() {
		return nil // not ours to kill
	}
	ssh, err := nc.SSH(ctx)
	if err != nil {
		return err
	}
	pidFile := path.Join(nc.node.AgentDir(), agentPIDName)
	deadline := time.Now().Add(5 * time.Second)
	// The pid file and /proc are read over one SFTP session: a command
	// per look would start a shell on the node each time.
	sc, err := ssh.OpenSFTP(ctx)
	if err != nil {
		return fmt.Errorf("cluster: node %q: stop agent: %w", nc.node.Name, err)
	}
	defer sc.Close()
	for {
		out, err := sshx.ReadSmallFileSFTP(sc, pidFile, 64)
		if err != nil {
			return nil // no pid file: the agent removed it on exit
		}
		pid, convErr := strconv.Atoi(strings.TrimSpace(string(out)))
		if convErr != nil || pid <= 1 {
			return fmt.Errorf("cluster: node %q: pid file %s holds %q", nc.node.Name, pidFile, strings.TrimSpace(string(out)))
		}
		if _, err := sc.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			return nil // process gone
		}
		if time.Now().After(deadline) {
			nc.log.Warn("agent did not quit; killing it", "pid", pid)
			_ = ssh.Run(ctx, []string{"kill", "-KILL", strconv.Itoa(pid)}, sshx.RunOptions{})
			_ = ssh.Run(ctx, []string{"rm", "-f", "--", pidFile}, sshx.RunOptions{})
			return nil
		}
		if time.Now().After(deadline.Add(-3 * time.Second)) {
			_ = ssh.Run(ctx, []string{"kill", "-TERM", strconv.Itoa(pid)}, sshx.RunOptions{})
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: node %q: stop agent: %w", nc.node.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CleanupAgentEnv removes the node's agent directory, and nothing else:
// the directory must be <agent_base_dir>/<name> with both parts sane.
func (nc *NodeConn) CleanupAgentEnv(ctx context.Context) error {
	dir := nc.node.AgentDir()
	base := path.Clean(nc.node.AgentBaseDir)
	if !path.IsAbs(base) || base == "/" || !nodeNameRE.MatchString(nc.node.Name) ||
		nc.node.Name == "." || nc.node.Name == ".." || path.Dir(dir) != base {
		return fmt.Errorf("cluster: node %q: refusing to remove %q: not <agent_base_dir>/<name>", nc.node.Name, dir)
	}
	ssh, err := nc.SSH(ctx)
	if err != nil {
		return err
	}
	if err := ssh.Run(ctx, []string{"rm", "-rf", "--", dir}, sshx.RunOptions{}); err != nil {
		return fmt.Errorf("cluster: node %q: cleanup: %w", nc.node.Name, err)
	}
	return nil
}

// FetchAgentLogs copies the agent's log directory into localDir.
func (nc *NodeConn) FetchAgentLogs(ctx context.Context, localDir string) error {
	ssh, err := nc.SSH(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(localDir, 0o755); err != nil {
		return fmt.Errorf("cluster: node %q: %w", nc.node.Name, err)
	}
	remote := path.Join(nc.node.AgentDir(), agentDataName, "log")
	if err := ssh.CopyFrom(ctx, remote, localDir); err != nil {
		return fmt.Errorf("cluster: node %q: fetch agent logs: %w", nc.node.Name, err)
	}
	return nil
}

// ErrNoNodes is returned by operations on a cluster with no registered node.
var ErrNoNodes = errors.New("cluster: no nodes registered (run vtcluster bootstrap --vt-cluster-config FILE)")
