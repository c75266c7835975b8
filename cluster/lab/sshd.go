package lab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// writeKeys generates the client key pair, one host key per host, the shared
// authorized_keys file and a known_hosts file listing every host.
func (l *Lab) writeKeys() error {
	clientPub, err := genKey(l.ClientKey, l.ClientPublicKey, "vtcluster-lab-client@"+l.Prefix)
	if err != nil {
		return err
	}
	if err := os.WriteFile(l.AuthorizedKeys, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	var known strings.Builder
	for _, h := range l.Hosts {
		if err := os.MkdirAll(filepath.Dir(h.HostKey), 0o700); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		pub, err := genKey(h.HostKey, h.HostPublicKey, "root@"+h.Hostname)
		if err != nil {
			return err
		}
		known.WriteString(knownhosts.Line([]string{knownhosts.Normalize(h.Addr())}, pub))
		known.WriteByte('\n')
	}
	if err := os.WriteFile(l.KnownHosts, []byte(known.String()), 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// genKey writes a new unencrypted ed25519 key in OpenSSH format (mode 0600,
// which sshd requires of host keys) and its public half.
func genKey(privPath, pubPath, comment string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("lab: generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("lab: encode key %s: %w", privPath, err)
	}
	if err := os.WriteFile(privPath, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	line := bytes.TrimSuffix(ssh.MarshalAuthorizedKey(sshPub), []byte("\n"))
	line = append(line, " "+comment+"\n"...)
	if err := os.WriteFile(pubPath, line, 0o644); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return sshPub, nil
}

// sshdPath quotes a path for sshd_config. Paths with characters that sshd's
// tokenizer or its %-expansion would reinterpret are refused instead.
func sshdPath(p string) (string, error) {
	if strings.ContainsAny(p, "\"\\%\n\r") {
		return "", fmt.Errorf("lab: path %q: sshd_config cannot hold '\"', '\\', '%%' or newlines; pick another Dir", p)
	}
	return `"` + p + `"`, nil
}

func (l *Lab) sshdConfig(h Host) (string, error) {
	paths := map[string]string{}
	for k, p := range map[string]string{"hostkey": h.HostKey, "pid": h.PidFile, "ak": l.AuthorizedKeys} {
		q, err := sshdPath(p)
		if err != nil {
			return "", err
		}
		paths[k] = q
	}
	password := "no"
	if l.User != nil {
		password = "yes"
	}
	return fmt.Sprintf(`# Written by vtcluster lab for host %s; do not edit.
ListenAddress %s
HostKey %s
PidFile %s
# The lab's client key for everyone, then the user's own file, so that
# keys installed over SSH (ssh-copy-id style) work too.
AuthorizedKeysFile %s .ssh/authorized_keys
# The lab's files live in a test directory whose parents (/tmp) are
# world-writable, which sshd's ownership checks would reject.
StrictModes no
# PAM would consult the machine's own login policy; the lab needs none.
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication %s
KbdInteractiveAuthentication no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
X11Forwarding no
PrintMotd no
PrintLastLog no
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, h.Name, h.Addr(), paths["hostkey"], paths["pid"], paths["ak"], password), nil
}

// startSSHDs starts one daemonizing sshd per host, then waits until each
// accepts TCP connections and has written its pid file.
func (l *Lab) startSSHDs(ctx context.Context, sshd string) error {
	// sshd refuses to start without its privilege separation directory,
	// which Debian only creates when the ssh service runs.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	for _, h := range l.Hosts {
		cfg, err := l.sshdConfig(h)
		if err != nil {
			return err
		}
		if err := os.WriteFile(h.SSHDConfig, []byte(cfg), 0o600); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		// Without -D sshd forks into the background once configured, so
		// the launcher returns and the daemon outlives this process.
		cmd := hostCommand(ctx, h, sshd, "-f", h.SSHDConfig, "-E", h.LogFile)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("lab: host %s: start sshd: %w: %s%s", h.Name, err, strings.TrimSpace(string(out)), logTail(h.LogFile))
		}
	}
	for i := range l.Hosts {
		pid, err := waitSSHD(ctx, l.Hosts[i])
		if err != nil {
			return err
		}
		l.Hosts[i].SSHDPid = pid
	}
	return nil
}

// waitSSHD waits until host h's sshd accepts a TCP connection and its pid
// file names a live process. It fails early when no process is left in the
// namespace, since sshd reports bind errors only in its log after forking.
func waitSSHD(ctx context.Context, h Host) (int, error) {
	start := time.Now()
	var d net.Dialer
	for attempt := 0; ; attempt++ {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := d.DialContext(dctx, "tcp", h.Addr())
		cancel()
		if err == nil {
			conn.Close()
			if pid, err := readPidFile(h.PidFile); err == nil && processRunning(pid) {
				return pid, nil
			}
		}
		if attempt%4 == 3 {
			if pids, perr := netnsPids(ctx, h.Netns); perr == nil && len(pids) == 0 {
				return 0, fmt.Errorf("lab: host %s: sshd exited before accepting connections on %s%s", h.Name, h.Addr(), logTail(h.LogFile))
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("lab: host %s: sshd not accepting connections on %s after %s: %w%s",
				h.Name, h.Addr(), time.Since(start).Round(time.Millisecond), ctx.Err(), logTail(h.LogFile))
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("lab: pid file %s: %q is not a pid", path, b)
	}
	return pid, nil
}

// logTail returns the last lines of an sshd log, formatted to append to an
// error, or "" when there is nothing to show.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "; " + path + ": " + strings.Join(lines, " | ")
}

// addUser creates the throwaway password user with a random password.
func (l *Lab) addUser(ctx context.Context) error {
	u := l.User
	if _, err := user.Lookup(u.Name); err == nil {
		return fmt.Errorf("lab: user %q already exists; remove it (userdel -r %s) or use another prefix", u.Name, u.Name)
	}
	var b [18]byte
	_, _ = rand.Read(b[:])
	pw := base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.WriteFile(u.PasswordFile, []byte(pw), 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := run(ctx, "useradd", "--create-home", "--shell", "/bin/sh", "--comment", "vtcluster lab "+l.Prefix, u.Name); err != nil {
		return err
	}
	// chpasswd reads the password on stdin so it never shows in a process list.
	if _, err := output(ctx, []byte(u.Name+":"+pw+"\n"), "chpasswd"); err != nil {
		return err
	}
	u.Password = pw
	return nil
}

func deleteUser(ctx context.Context, name string) error {
	var unknown user.UnknownUserError
	if _, err := user.Lookup(name); errors.As(err, &unknown) {
		return nil
	}
	if err := run(ctx, "userdel", "--remove", name); err != nil {
		if _, lerr := user.Lookup(name); errors.As(lerr, &unknown) {
			// Removed, with a complaint about a missing mail spool or home.
			return nil
		}
		return err
	}
	return nil
}

// HostStatus is what Status observed about one host.
type HostStatus struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Netns reports whether the network namespace exists.
	Netns bool `json:"netns"`
	// SSHD reports whether the process in the pid file is alive.
	SSHD bool `json:"sshd"`
	// Reachable reports whether a TCP connection to the SSH port succeeded.
	Reachable bool `json:"reachable"`
}

// Status checks each host: namespace present, sshd alive, port reachable.
func (l *Lab) Status(ctx context.Context) []HostStatus {
	out := make([]HostStatus, 0, len(l.Hosts))
	var d net.Dialer
	for _, h := range l.Hosts {
		st := HostStatus{Name: h.Name, Address: h.Address, Netns: netnsExists(h.Netns)}
		if pid, err := readPidFile(h.PidFile); err == nil {
			st.SSHD = processRunning(pid)
		}
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		if conn, err := d.DialContext(dctx, "tcp", h.Addr()); err == nil {
			conn.Close()
			st.Reachable = true
		}
		cancel()
		out = append(out, st)
	}
	return out
}
