package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CheckTools reports what is missing to build a lab: root, ip(8) and the
// sshd binary. labtest.Start skips tests with its message.
func CheckTools(sshd string) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces need CAP_SYS_ADMIN)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip(8) from iproute2")
	}
	if sshd == "" {
		sshd = "/usr/sbin/sshd"
	}
	if _, err := exec.LookPath(sshd); err != nil {
		missing = append(missing, sshd+" (Debian package openssh-server)")
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		missing = append(missing, "/bin/sh")
	}
	if len(missing) > 0 {
		return fmt.Errorf("lab: cannot build a lab here: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// run runs a command and returns an error carrying its stderr.
func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, nil, name, args...)
	return err
}

func output(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return stdout.Bytes(), fmt.Errorf("lab: %s %s: %w: %s", name, strings.Join(args, " "), err, msg)
		}
		return stdout.Bytes(), fmt.Errorf("lab: %s %s: %w", name, strings.Join(args, " "), err)
	}
	return stdout.Bytes(), nil
}

func ipCmd(ctx context.Context, args ...string) error {
	return run(ctx, "ip", args...)
}

func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

func deleteLink(ctx context.Context, name string) error {
	if !linkExists(name) {
		return nil
	}
	if err := ipCmd(ctx, "link", "delete", name); err != nil && linkExists(name) {
		return err
	}
	return nil
}

// buildNetwork creates the bridge with the gateway address, then one
// namespace per host with a veth into the bridge.
func (l *Lab) buildNetwork(ctx context.Context) error {
	// Bridged traffic between hosts must not pass through the machine's
	// iptables: with br_netfilter loaded, a FORWARD policy of DROP (Docker
	// sets one) would silently cut host-to-host traffic.
	if err := ipCmd(ctx, "link", "add", l.Bridge, "type", "bridge",
		"nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0"); err != nil {
		return err
	}
	steps := [][]string{
		{"addr", "add", l.Gateway + "/24", "dev", l.Bridge},
		{"link", "set", l.Bridge, "up"},
	}
	for _, h := range l.Hosts {
		steps = append(steps,
			[]string{"netns", "add", h.Netns},
			[]string{"link", "add", h.Veth, "type", "veth", "peer", "name", "eth0", "netns", h.Netns},
			[]string{"link", "set", h.Veth, "master", l.Bridge, "up"},
			[]string{"-n", h.Netns, "addr", "add", h.Address + "/24", "dev", "eth0"},
			[]string{"-n", h.Netns, "link", "set", "eth0", "up"},
			[]string{"-n", h.Netns, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// hostnameScript sets the UTS hostname (the process is already in a fresh
// UTS namespace) and then execs the real command. The hostname and argv are
// positional parameters, never part of the script text.
const hostnameScript = `printf '%s' "$0" > /proc/sys/kernel/hostname && exec "$@"`

// hostCommand builds a command that runs argv inside host h: in its
// network namespace, and in a new UTS namespace carrying its hostname.
func hostCommand(ctx context.Context, h Host, argv ...string) *exec.Cmd {
	args := append([]string{"netns", "exec", h.Netns, "/bin/sh", "-c", hostnameScript, h.Hostname}, argv...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUTS}
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Exec runs argv on host i (0-based) and returns its standard output. A
// failure carries the command's standard error.
func (l *Lab) Exec(ctx context.Context, i int, argv ...string) ([]byte, error) {
	h, err := l.Host(i)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, errors.New("lab: exec: empty argv")
	}
	cmd := hostCommand(ctx, h, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("lab: host %s: %q: %w: %s", h.Name, argv, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// netnsPids lists the processes whose network namespace is ns.
func netnsPids(ctx context.Context, ns string) ([]int, error) {
	out, err := output(ctx, nil, "ip", "netns", "pids", ns)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("lab: ip netns pids %s: unexpected %q", ns, f)
		}
		pids = append(pids, p)
	}
	return pids, nil
}

// killNetnsProcs stops every process in a namespace: SIGTERM, a grace
// period, then SIGKILL. sshd's session processes and agents started over SSH
// all live there.
func killNetnsProcs(ctx context.Context, ns string) error {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		pids, err := netnsPids(ctx, ns)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("lab: kill %d in %s: %w", p, ns, err)
			}
		}
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			pids, err = netnsPids(ctx, ns)
			if err != nil {
				return err
			}
			if len(pids) == 0 {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("lab: stop processes in %s: %w", ns, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	pids, _ := netnsPids(ctx, ns)
	return fmt.Errorf("lab: processes %v in %s survive SIGKILL", pids, ns)
}

// Proc is a process running in a lab host's network namespace.
type Proc struct {
	PID  int
	Argv []string
	// Comm is the kernel's short name for it (/proc/PID/comm).
	Comm string
}

// Procs lists the processes in the host's network namespace: lab hosts
// share the machine's process table, so only the namespace tells a host's
// processes (its sshd, agents, test commands) from every other's. One that
// exits while the list is made is left out.
func (h Host) Procs() ([]Proc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pids, err := netnsPids(ctx, h.Netns)
	if err != nil {
		return nil, err
	}
	var out []Proc
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid)
		cmdline, err := os.ReadFile(dir + "/cmdline")
		if err != nil {
			continue // exited meanwhile
		}
		comm, err := os.ReadFile(dir + "/comm")
		if err != nil {
			continue
		}
		var argv []string
		if s := strings.TrimSuffix(string(cmdline), "\x00"); s != "" {
			argv = strings.Split(s, "\x00")
		}
		out = append(out, Proc{PID: pid, Argv: argv, Comm: strings.TrimSpace(string(comm))})
	}
	return out, nil
}

// PIDs lists the pids of the host's processes that match, as Procs sees
// them.
func (h Host) PIDs(match func(Proc) bool) ([]int, error) {
	procs, err := h.Procs()
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range procs {
		if match(p) {
			pids = append(pids, p.PID)
		}
	}
	return pids, nil
}
