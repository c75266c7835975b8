package sshx

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/vtcluster/vtcluster/cluster/lab"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// nastyArgv are words a shell would mangle if any were left unquoted.
var nastyArgv = []string{
	"", " ", "plain", "two words", "it's", `"double"`, `back\slash`, "$HOME", "${PATH}",
	"$(id)", "`id`", "a;b", "a&&b", "a|b", "*", "?", "[a]", "~", "~root", "#comment",
	"new\nline", "tab\there", "!bang", "A=B", "-n", "--", "'", "''", `'\''`, "ünïcödé ✓",
	"{a,b}", "<in", ">out", "(sub)", "trailing\\",
}

func TestQuoteArgv_cases(t *testing.T) {
	cases := []struct {
		argv []string
		want string
	}{
		{[]string{"echo", "hello"}, "echo hello"},
		{[]string{""}, "''"},
		{[]string{"a b"}, "'a b'"},
		{[]string{"it's"}, `'it'\''s'`},
		{[]string{"A=B"}, "'A=B'"},
		{[]string{"/usr/bin/x", "--flag", "-v", "1.2:3,4@5%6+7"}, "/usr/bin/x --flag -v 1.2:3,4@5%6+7"},
		{[]string{"$x"}, "'$x'"},
		{[]string{"a\nb"}, "'a\nb'"},
	}
	for _, c := range cases {
		if got := QuoteArgv(c.argv); got != c.want {
			t.Errorf("QuoteArgv(%q) = %q, want %q", c.argv, got, c.want)
		}
	}
}

// TestQuoteArgv_localShellsRoundTrip feeds the quoted line to the shells
// sshd might use as login shell and checks they split it back exactly.
func TestQuoteArgv_localShellsRoundTrip(t *testing.T) {
	for _, sh := range []string{"/bin/sh", "/bin/bash", "/bin/dash"} {
		if _, err := os.Stat(sh); err != nil {
			continue
		}
		line := QuoteArgv(append([]string{"printf", `%s\0`}, nastyArgv...))
		out, err := exec.Command(sh, "-c", line).Output()
		if err != nil {
			t.Fatalf("%s -c %q: %v", sh, line, err)
		}
		assertSplit(t, sh, out, nastyArgv)
	}
}

func assertSplit(tb testing.TB, what string, out []byte, want []string) {
	tb.Helper()
	got := strings.Split(string(out), "\x00")
	if len(got) == 0 || got[len(got)-1] != "" {
		tb.Fatalf("%s: output %q does not end in NUL", what, out)
	}
	got = got[:len(got)-1]
	if len(got) != len(want) {
		tb.Fatalf("%s: %d words back, want %d: %q", what, len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			tb.Errorf("%s: word %d = %q, want %q", what, i, got[i], want[i])
		}
	}
}

func TestSSHConfig_validate(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	good := DefaultConfig()
	good.Address, good.KeyFiles = "10.0.0.1", []string{"/k"}
	if err := good.validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"address":     func(c *Config) { c.Address = "" },
		"Port":        func(c *Config) { c.Port = 0 },
		"User":        func(c *Config) { c.User = "" },
		"KnownHosts":  func(c *Config) { c.KnownHostsFile = "" },
		"KeepaliveMa": func(c *Config) { c.KeepaliveMaxMissed = 0 },
		"MaxSessions": func(c *Config) { c.MaxSessions = 0 },
		"credentials": func(c *Config) { c.KeyFiles = nil },
	} {
		c := good
		mut(&c)
		err := c.validate()
		if err == nil || !strings.Contains(err.Error(), "10.0.0.1") && name != "address" {
			t.Errorf("%s: err = %v, want an error naming the node", name, err)
		}
	}
}

// labConfig returns a key-auth config for host i of l with strict host keys.
func labConfig(l *lab.Lab, i int) Config {
	cfg := DefaultConfig()
	cfg.Address = l.Hosts[i].Address
	cfg.Port = l.Hosts[i].Port
	cfg.KeyFiles = []string{l.ClientKey}
	cfg.UseAgent = false
	cfg.KnownHostsFile = l.KnownHosts
	return cfg
}

func dialLab(tb testing.TB, cfg Config) *Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg, nil)
	if err != nil {
		tb.Fatalf("Dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func TestDialSSH_keyAuth(t *testing.T) {
	l := lab.Start(t, 2)
	ctx := testCtx(t)
	for i, h := range l.Hosts {
		c := dialLab(t, labConfig(l, i))
		out, err := c.Output(ctx, []string{"hostname"})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != h.Hostname {
			t.Errorf("host %d: hostname %q, want %q", i, got, h.Hostname)
		}
		arch, err := c.RemoteArch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		local, _ := exec.Command("uname", "-m").Output()
		if arch != strings.TrimSpace(string(local)) {
			t.Errorf("RemoteArch = %q, want %q (lab hosts share this kernel)", arch, local)
		}
	}
}

func TestDialSSH_passwordAuth(t *testing.T) {
	l := lab.StartSpec(t, lab.Spec{Hosts: 1, PasswordUser: true})
	cfg := labConfig(l, 0)
	cfg.KeyFiles, cfg.User, cfg.Password = nil, l.User.Name, l.User.Password
	c := dialLab(t, cfg)
	out, err := c.Output(testCtx(t), []string{"id", "-un"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != l.User.Name {
		t.Fatalf("id -un = %q, want %q", got, l.User.Name)
	}

	cfg.Password = "wrong" + cfg.Password
	_, err = Dial(testCtx(t), cfg, nil)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong password: err = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), l.User.Name+"@"+l.Hosts[0].Addr()) {
		t.Errorf("auth error %q does not name user@host", err)
	}
}

// A key the node does not accept: the error names the key file tried, so
// the user knows which one to put in authorized_keys.
func TestDialSSH_wrongKeyNamesKeyFile(t *testing.T) {
	l := lab.Start(t, 1)
	cfg := labConfig(l, 0)
	stranger := lab.StrangerKey(t)
	cfg.KeyFiles, cfg.UseAgent = []string{stranger}, false
	_, err := Dial(testCtx(t), cfg, nil)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "tried key files "+stranger) {
		t.Fatalf("wrong key: err = %v, want ErrAuth naming %s", err, stranger)
	}
}

func TestDialSSH_agentAuth(t *testing.T) {
	l := lab.Start(t, 1)
	if _, err := exec.LookPath("ssh-agent"); err != nil {
		t.Skip("ssh-agent not installed")
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ag := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := ag.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ag.Process.Kill(); ag.Wait() })
	t.Setenv("SSH_AUTH_SOCK", sock)
	var err error
	for range 200 { // until the agent listens
		if err = exec.Command("ssh-add", l.ClientKey).Run(); err == nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("ssh-add: %v", err)
	}
	cfg := labConfig(l, 0)
	cfg.KeyFiles, cfg.UseAgent = nil, true
	c := dialLab(t, cfg)
	if _, err := c.Output(testCtx(t), []string{"true"}); err != nil {
		t.Fatal(err)
	}
}

func TestDialSSH_passphraseKeyRefused(t *testing.T) {
	key := filepath.Join(t.TempDir(), "id_enc")
	// One KDF round keeps generation fast; parsing never runs the KDF.
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-a", "1", "-N", "secret", "-f", key).CombinedOutput(); err != nil {
		t.Skipf("ssh-keygen: %v %s", err, out)
	}
	cfg := DefaultConfig()
	cfg.Address, cfg.KeyFiles, cfg.UseAgent = "127.0.0.1", []string{key}, false
	_, err := Dial(testCtx(t), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "passphrase-protected") || !strings.Contains(err.Error(), key) {
		t.Fatalf("err = %v, want a passphrase error naming %s", err, key)
	}
}

func TestDialSSH_unknownHostRefused(t *testing.T) {
	l := lab.Start(t, 1)
	cfg := labConfig(l, 0)
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts") // absent
	_, err := Dial(testCtx(t), cfg, nil)
	var hkErr *HostKeyError
	if !errors.As(err, &hkErr) || hkErr.Mismatch {
		t.Fatalf("err = %v, want *HostKeyError for an unknown host", err)
	}
	want := hostFingerprint(t, l.Hosts[0].HostPublicKey)
	if hkErr.Got != want || hkErr.Host != l.Hosts[0].Addr() {
		t.Errorf("HostKeyError = %+v, want Got %q for %s", hkErr, want, l.Hosts[0].Addr())
	}
	for _, s := range []string{"not known", cfg.KnownHostsFile, "accept"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
	if _, err := os.Stat(cfg.KnownHostsFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("strict dial created %s", cfg.KnownHostsFile)
	}
}

func TestDialSSH_acceptNewRecordsKeyThenStrict(t *testing.T) {
	l := lab.Start(t, 1)
	cfg := labConfig(l, 0)
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "sub", "known_hosts")
	cfg.AcceptNewHostKeys = true
	c := dialLab(t, cfg)
	c.Close()

	st, err := os.Stat(cfg.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(cfg.KnownHostsFile)
	_, hosts, key, _, _, err := ssh.ParseKnownHosts(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0] != l.Hosts[0].Address || keyDesc(key) != hostFingerprint(t, l.Hosts[0].HostPublicKey) {
		t.Errorf("recorded %v %s, want %s with the host's key", hosts, keyDesc(key), l.Hosts[0].Address)
	}

	cfg.AcceptNewHostKeys = false
	c2 := dialLab(t, cfg)
	if _, err := c2.Output(testCtx(t), []string{"true"}); err != nil {
		t.Fatal(err)
	}
	if b2, _ := os.ReadFile(cfg.KnownHostsFile); !bytes.Equal(b, b2) {
		t.Errorf("second dial changed known_hosts:\n%s", b2)
	}
}

func TestDialSSH_hostKeyMismatchRefused(t *testing.T) {
	l := lab.Start(t, 2)
	// known_hosts claims node2's key for node1's address.
	other, err := os.ReadFile(l.Hosts[1].HostPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(other)
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{l.Hosts[0].Address}, pub) + "\n"
	os.WriteFile(kh, []byte(line), 0o600)

	cfg := labConfig(l, 0)
	cfg.KnownHostsFile = kh
	cfg.AcceptNewHostKeys = true // must not matter for a mismatch
	_, err = Dial(testCtx(t), cfg, nil)
	var hkErr *HostKeyError
	if !errors.As(err, &hkErr) || !hkErr.Mismatch {
		t.Fatalf("err = %v, want a host key mismatch", err)
	}
	if len(hkErr.Want) != 1 || !strings.Contains(hkErr.Want[0], kh+":1:") || !strings.Contains(hkErr.Want[0], keyDesc(pub)) {
		t.Errorf("Want = %q, want the recorded key at %s:1", hkErr.Want, kh)
	}
	if !strings.Contains(err.Error(), "MISMATCH") || !strings.Contains(err.Error(), "ssh-keygen -R") {
		t.Errorf("message %q does not say what happened and what to do", err)
	}
	if b, _ := os.ReadFile(kh); string(b) != line {
		t.Errorf("known_hosts changed after a mismatch:\n%s", b)
	}
}

// startExtraSSHD starts a second sshd in host 0's namespace on port,
// listening on the host address and on its loopback, with an ECDSA host
// key offered alongside the lab's ed25519 one. Lab teardown stops it.
func startExtraSSHD(tb testing.TB, l *lab.Lab, port int) {
	tb.Helper()
	dir := tb.TempDir()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		tb.Fatal(err)
	}
	ecKey := filepath.Join(dir, "ecdsa_key")
	if err := os.WriteFile(ecKey, pem.EncodeToMemory(block), 0o600); err != nil {
		tb.Fatal(err)
	}
	h := l.Hosts[0]
	cfg := fmt.Sprintf("ListenAddress %s:%d\nListenAddress 127.0.0.1:%d\nHostKey %s\nHostKey %s\nPidFile %s\n"+
		"AuthorizedKeysFile %s\nStrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\n",
		h.Address, port, port, ecKey, h.HostKey, filepath.Join(dir, "pid"), l.AuthorizedKeys)
	cfgPath := filepath.Join(dir, "sshd_config")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	if out, err := l.Exec(testCtx(tb), 0, "/usr/sbin/sshd", "-f", cfgPath, "-E", filepath.Join(dir, "log")); err != nil {
		tb.Fatalf("extra sshd: %v %s", err, out)
	}
	addr := net.JoinHostPort(h.Address, strconv.Itoa(port))
	for i := 0; ; i++ {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if i > 200 {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			tb.Fatalf("extra sshd on %s never listened: %v\n%s", addr, err, log)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// With only the ed25519 key recorded, x/crypto's default preference
// (ECDSA first) would fetch the ECDSA key and report a false mismatch.
func TestDialSSH_hostKeyAlgorithmsFollowKnownHosts(t *testing.T) {
	l := lab.Start(t, 1)
	startExtraSSHD(t, l, 2222)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(testutil.ReadFile(t, l.Hosts[0].HostPublicKey))
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	addr := net.JoinHostPort(l.Hosts[0].Address, "2222")
	os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, pub)+"\n"), 0o600)

	cfg := labConfig(l, 0)
	cfg.Port, cfg.KnownHostsFile = 2222, kh
	c := dialLab(t, cfg)
	if _, err := c.Output(testCtx(t), []string{"true"}); err != nil {
		t.Fatal(err)
	}
}

func TestSSHClient_Run_quotingRoundTrip(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	out, err := c.Output(testCtx(t), append([]string{"printf", `%s\0`}, nastyArgv...))
	if err != nil {
		t.Fatal(err)
	}
	assertSplit(t, "remote printf", out, nastyArgv)

	if err := c.Run(testCtx(t), []string{"echo", "a\x00b"}, RunOptions{}); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("NUL in argv: err = %v", err)
	}
	for _, argv := range [][]string{nil, {""}, {"-n", "x"}} {
		if err := c.Run(testCtx(t), argv, RunOptions{}); err == nil {
			t.Errorf("argv %q: no error", argv)
		}
	}
}

func TestSSHClient_Run_streams(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	in := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	var out, errOut bytes.Buffer
	err := c.Run(testCtx(t), []string{"sh", "-c", "cat; echo done >&2"}, RunOptions{Stdin: bytes.NewReader(in), Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), in) || errOut.String() != "done\n" {
		t.Fatalf("stdout %d bytes (want %d), stderr %q", out.Len(), len(in), errOut.String())
	}
}

func TestSSHClient_Run_exitStatus(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	err := c.Run(testCtx(t), []string{"sh", "-c", "echo first >&2; echo 'it failed' >&2; exit 3"}, RunOptions{})
	var re *RemoteExitError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want *RemoteExitError", err)
	}
	if re.Status != 3 || re.Signal != "" || re.Stderr != "first\nit failed\n" || re.Node != l.Hosts[0].Addr() {
		t.Errorf("RemoteExitError = %+v", re)
	}
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Errorf("errors.As *ssh.ExitError failed: %v", err)
	}
	if !strings.Contains(err.Error(), "exited with status 3: first\nit failed") {
		t.Errorf("message %q", err)
	}
}

func TestSSHClient_Run_contextTimeoutKillsCommand(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	// A duration no other process uses, to find it in /proc.
	marker := "4711.25"
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := c.Run(ctx, []string{"sleep", marker}, RunOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	// The signal travels asynchronously; wait (bounded) for it to land.
	deadline := time.Now().Add(10 * time.Second)
	for sleepRunning(marker) {
		if time.Now().After(deadline) {
			t.Fatal("remote sleep still running 10s after cancellation")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The connection stays usable.
	if _, err := c.Output(testCtx(t), []string{"true"}); err != nil {
		t.Fatal(err)
	}
}

func sleepRunning(arg string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && string(b) == "sleep\x00"+arg+"\x00" {
			st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] != 'Z' {
				return true
			}
		}
	}
	return false
}

func TestSSHClient_Upload_skipAndVerify(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	ctx := testCtx(t)
	local := filepath.Join(t.TempDir(), "agent")
	content := make([]byte, 3<<20+12345) // several packets, odd tail
	rand.Read(content)
	os.WriteFile(local, content, 0o600)
	// Lab hosts share this filesystem, so the result can be read directly.
	remote := filepath.Join(l.Dir, "remote", "bin", "agent")

	res, err := c.Upload(ctx, local, remote, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped || len(res.SHA256) != 64 {
		t.Fatalf("first upload = %+v", res)
	}
	assertFile(t, remote, content, 0o755)

	res2, err := c.Upload(ctx, local, remote, 0o750)
	if err != nil {
		t.Fatal(err)
	}
	if !res2.Skipped || res2.SHA256 != res.SHA256 {
		t.Fatalf("second upload = %+v, want skipped with the same digest", res2)
	}
	assertFile(t, remote, content, 0o750)

	content[0] ^= 0xff
	os.WriteFile(local, content, 0o600)
	// Without sha256sum on the node, digests come from reading back over SFTP.
	c.sha256Argv = []string{"no-such-sha256sum-command", "--"}
	res3, err := c.Upload(ctx, local, remote, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res3.Skipped || res3.SHA256 == res.SHA256 {
		t.Fatalf("changed upload = %+v", res3)
	}
	assertFile(t, remote, content, 0o600)
	res4, err := c.Upload(ctx, local, remote, 0)
	if err != nil || !res4.Skipped {
		t.Fatalf("skip via SFTP read-back = %+v, %v", res4, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(remote))
	if len(ents) != 1 {
		t.Errorf("remote dir holds %d entries, want only the file (no temporaries)", len(ents))
	}

	if _, err := c.Upload(ctx, t.TempDir(), remote, 0); err == nil {
		t.Error("uploading a directory: no error")
	}
}

func TestSSHClient_Upload_failureLeavesNoTemp(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	local := filepath.Join(t.TempDir(), "f")
	os.WriteFile(local, []byte("payload"), 0o644)
	// The target is an existing non-empty directory: the rename fails after
	// the temporary was written and verified.
	remote := filepath.Join(l.Dir, "up", "target")
	os.MkdirAll(filepath.Join(remote, "occupied"), 0o755)
	_, err := c.Upload(testCtx(t), local, remote, 0o644)
	if err == nil || !strings.Contains(err.Error(), "rename") {
		t.Fatalf("err = %v, want a rename failure", err)
	}
	ents, _ := os.ReadDir(filepath.Dir(remote))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}
}

func assertFile(tb testing.TB, p string, want []byte, mode os.FileMode) {
	tb.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s: content differs (%d bytes, want %d)", p, len(got), len(want))
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != mode {
		tb.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), mode)
	}
}

func hostFingerprint(tb testing.TB, pubFile string) string {
	tb.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey(testutil.ReadFile(tb, pubFile))
	if err != nil {
		tb.Fatal(err)
	}
	return keyDesc(pub)
}

// makeTree writes a small tree with nested and empty directories, modes,
// an empty file and a relative symlink.
func makeTree(tb testing.TB, root string) {
	tb.Helper()
	for p, mode := range map[string]os.FileMode{"a/b/c": 0o755, "empty": 0o700, "a/secret": 0o750} {
		if err := os.MkdirAll(filepath.Join(root, p), mode); err != nil {
			tb.Fatal(err)
		}
		os.Chmod(filepath.Join(root, p), mode)
	}
	for p, mode := range map[string]os.FileMode{"top.txt": 0o644, "a/run.sh": 0o755, "a/b/c/deep": 0o600, "a/secret/key": 0o400, "zero": 0o644} {
		body := []byte("content of " + p + "\n")
		if p == "zero" {
			body = nil
		}
		if err := os.WriteFile(filepath.Join(root, p), body, mode); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.Symlink("b/c/deep", filepath.Join(root, "a", "link")); err != nil {
		tb.Fatal(err)
	}
}

// treeListing describes a tree as "path mode [content|->target]" lines.
func treeListing(tb testing.TB, root string) string {
	tb.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, _ := d.Info()
		line := fmt.Sprintf("%s %v", rel, info.Mode())
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			line += " -> " + t
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			line += " " + strconv.Quote(string(b))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

func TestSSHClient_CopyToCopyFrom_recursive(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	ctx := testCtx(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	want := treeListing(t, src)

	remote := filepath.Join(l.Dir, "copied")
	if err := c.CopyTo(ctx, src, remote); err != nil {
		t.Fatal(err)
	}
	if got := treeListing(t, remote); got != want {
		t.Errorf("CopyTo tree:\n%s\nwant:\n%s", got, want)
	}
	back := filepath.Join(t.TempDir(), "back")
	if err := c.CopyFrom(ctx, remote, back); err != nil {
		t.Fatal(err)
	}
	// The node's symlink is not recreated here, only recorded.
	manifest, err := os.ReadFile(filepath.Join(back, SymlinkManifest))
	if err != nil || string(manifest) != "{\n  \"a/link\": \"b/c/deep\"\n}\n" {
		t.Errorf("symlink manifest = %q, %v", manifest, err)
	}
	os.Remove(filepath.Join(back, SymlinkManifest))
	wantBack := regexp.MustCompile(`(?m)^a/link .*\n`).ReplaceAllString(want, "")
	if got := treeListing(t, back); got != wantBack {
		t.Errorf("CopyFrom tree:\n%s\nwant:\n%s", got, wantBack)
	}

	one := filepath.Join(t.TempDir(), "x", "one.sh")
	if err := c.CopyFrom(ctx, filepath.Join(remote, "a", "run.sh"), one); err != nil {
		t.Fatal(err)
	}
	assertFile(t, one, []byte("content of a/run.sh\n"), 0o755)

	err = c.CopyFrom(ctx, filepath.Join(remote, "missing"), filepath.Join(t.TempDir(), "m"))
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CopyFrom(missing) = %v, want a not-exist error", err)
	}
}

func TestSSHClient_CopyFrom_staysInsideLocalRoot(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	remote := filepath.Join(l.Dir, "tree")
	os.MkdirAll(filepath.Join(remote, "sub"), 0o755)
	os.WriteFile(filepath.Join(remote, "sub", "payload"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(remote, "fine"), []byte("ok"), 0o644)

	// The destination already holds "sub" as a symlink pointing outside it.
	local := filepath.Join(t.TempDir(), "dst")
	outside := filepath.Join(t.TempDir(), "outside")
	os.MkdirAll(local, 0o755)
	os.MkdirAll(outside, 0o755)
	os.Symlink(outside, filepath.Join(local, "sub"))

	err := c.CopyFrom(testCtx(t), remote, local)
	if err == nil {
		t.Fatal("CopyFrom wrote through a symlink leaving the root without error")
	}
	if _, serr := os.Stat(filepath.Join(outside, "payload")); serr == nil {
		t.Fatal("payload written outside the local root")
	}
	// Other files are still copied; the error is per file.
	if b, _ := os.ReadFile(filepath.Join(local, "fine")); string(b) != "ok" {
		t.Errorf("sibling file not copied: %q (err %v)", b, err)
	}
}

func TestSSHClient_DialContext_reachesNodeLoopback(t *testing.T) {
	l := lab.Start(t, 1)
	startExtraSSHD(t, l, 2222) // also listens on the node's 127.0.0.1
	c := dialLab(t, labConfig(l, 0))
	// The node's loopback is not reachable from here, only through SSH.
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:2222", time.Second); err == nil {
		conn.Close()
		t.Skip("something listens on this machine's 127.0.0.1:2222; the test would prove nothing")
	}
	conn, err := c.DialContext(testCtx(t), "tcp", "127.0.0.1:2222")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	banner := make([]byte, 8)
	if _, err := io.ReadFull(conn, banner); err != nil || string(banner) != "SSH-2.0-" {
		t.Fatalf("banner %q, %v", banner, err)
	}
	if _, err := c.DialContext(testCtx(t), "tcp", "127.0.0.1:1"); err == nil {
		t.Error("dial to a closed port on the node: no error")
	}
}

func TestSSHClient_ListenRemote_acceptsFromNode(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	ln, err := c.ListenRemote(testCtx(t), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if port == "0" || port == "" {
		t.Fatalf("listener address %s has no port", ln.Addr())
	}
	errc := make(chan error, 1)
	go func() {
		// bash's /dev/tcp connects from inside the node.
		_, err := l.Exec(testCtx(t), 0, "bash", "-c", `printf 'hello from %s' "$(hostname)" >"/dev/tcp/127.0.0.1/$0"`, port)
		errc <- err
	}()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello from " + l.Hosts[0].Hostname; string(got) != want {
		t.Fatalf("received %q, want %q", got, want)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestSSHClient_InstallAuthorizedKey_thenKeyLogin(t *testing.T) {
	l := lab.StartSpec(t, lab.Spec{Hosts: 1, PasswordUser: true})
	cfg := labConfig(l, 0)
	cfg.KeyFiles, cfg.User, cfg.Password = nil, l.User.Name, l.User.Password
	c := dialLab(t, cfg)

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := ssh.MarshalPrivateKey(priv, "")
	keyFile := filepath.Join(t.TempDir(), "id")
	os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600)
	sshPub, _ := ssh.NewPublicKey(pub)
	line := append(bytes.TrimSpace(ssh.MarshalAuthorizedKey(sshPub)), " test@vtcluster\n"...)

	ctx := testCtx(t)
	for range 2 {
		if err := c.InstallAuthorizedKey(ctx, line); err != nil {
			t.Fatal(err)
		}
	}
	home, err := c.Output(ctx, []string{"sh", "-c", `printf %s "$HOME"`})
	if err != nil {
		t.Fatal(err)
	}
	ak := filepath.Join(string(home), ".ssh", "authorized_keys")
	b := testutil.ReadFile(t, ak)
	if n := bytes.Count(b, bytes.TrimSpace(ssh.MarshalAuthorizedKey(sshPub))); n != 1 {
		t.Errorf("key present %d times, want 1:\n%s", n, b)
	}
	if st, _ := os.Stat(ak); st.Mode().Perm() != 0o600 {
		t.Errorf("authorized_keys mode %v", st.Mode().Perm())
	}
	if st, _ := os.Stat(filepath.Dir(ak)); st.Mode().Perm() != 0o700 {
		t.Errorf(".ssh mode %v", st.Mode().Perm())
	}

	keyCfg := cfg
	keyCfg.Password, keyCfg.KeyFiles = "", []string{keyFile}
	kc := dialLab(t, keyCfg)
	if out, err := kc.Output(ctx, []string{"id", "-un"}); err != nil || strings.TrimSpace(string(out)) != l.User.Name {
		t.Fatalf("key login after install: %q, %v", out, err)
	}
	if err := c.InstallAuthorizedKey(ctx, []byte("not a key")); err == nil {
		t.Error("garbage key: no error")
	}
}

func TestSSHClient_keepaliveClosesDeadConnection(t *testing.T) {
	l := lab.Start(t, 1)
	cfg := labConfig(l, 0)
	cfg.KeepaliveInterval, cfg.KeepaliveMaxMissed = 100*time.Millisecond, 2
	c := dialLab(t, cfg)
	if _, err := c.Output(testCtx(t), []string{"true"}); err != nil {
		t.Fatal(err)
	}
	// Cut the node off the network: packets vanish, nothing resets the
	// TCP connection, only keepalives can tell.
	if _, err := l.Exec(testCtx(t), 0, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("connection to an unreachable node still open after 30s")
	}
	if !errors.Is(c.Err(), ErrKeepaliveTimeout) {
		t.Fatalf("Err = %v, want ErrKeepaliveTimeout", c.Err())
	}
	_, err := c.Output(testCtx(t), []string{"true"})
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Run on dead connection: %v, want ErrClosed", err)
	}
}

func TestSSHClient_Close_idempotent(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if c.Err() != nil {
		t.Errorf("Err after Close = %v, want nil", c.Err())
	}
	if err := c.Run(testCtx(t), []string{"true"}, RunOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if _, err := c.Upload(testCtx(t), "/etc/hostname", filepath.Join(l.Dir, "x"), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Upload after Close = %v, want ErrClosed", err)
	}
}

// A peer that accepts TCP but never speaks SSH: only the context can end
// the handshake.
func TestDialSSH_contextBoundsHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // held silent until the listener closes
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	cfg := DefaultConfig()
	cfg.Address, cfg.KeyFiles, cfg.UseAgent = host, nil, false
	cfg.Port, _ = strconv.Atoi(port)
	cfg.Password = "x"
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "kh")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = Dial(ctx, cfg, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}

	// Cancellation without a deadline ends it too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cfg.ConnectTimeout = 0
	go func() { time.Sleep(100 * time.Millisecond); cancel2() }()
	if _, err := Dial(ctx2, cfg, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
}

func TestLab_Down_endsSessionsAndLeavesNoSSHD(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	started := make(chan struct{})
	runErr := make(chan error, 1)
	go func() {
		var once bool
		w := writerFunc(func(p []byte) (int, error) {
			if !once {
				once = true
				close(started)
			}
			return len(p), nil
		})
		runErr <- c.Run(testCtx(t), []string{"sh", "-c", "echo up; exec sleep 4712.5"}, RunOptions{Stdout: w})
	}()
	<-started
	pid := l.Hosts[0].SSHDPid
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err == nil {
		t.Error("command survived lab Down")
	}
	if sleepRunning("4712.5") {
		t.Error("remote sleep survived lab Down")
	}
	if _, err := os.Stat("/run/netns/" + l.Hosts[0].Netns); err == nil {
		t.Errorf("netns %s survived Down", l.Hosts[0].Netns)
	}
	if comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm")); err == nil && strings.TrimSpace(string(comm)) == "sshd" && runtime.GOOS == "linux" {
		st := testutil.ReadFile(t, filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if i := bytes.LastIndexByte(st, ')'); i > 0 && st[i+2] != 'Z' {
			t.Errorf("sshd %d survived Down", pid)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A node's links are not recreated on the controller, where an archiver or
// report server following them would read the controller's own files.
func TestSSHClient_CopyFrom_symlinksOnlyInManifest(t *testing.T) {
	l := lab.Start(t, 1)
	c := dialLab(t, labConfig(l, 0))
	remote := filepath.Join(l.Dir, "results")
	os.MkdirAll(filepath.Join(remote, "sub"), 0o755)
	os.WriteFile(filepath.Join(remote, "sub", "real"), []byte("x"), 0o644)
	os.Symlink("/etc/shadow", filepath.Join(remote, "shadow"))
	os.Symlink("../..", filepath.Join(remote, "sub", "up"))
	os.WriteFile(filepath.Join(remote, "sub", SymlinkManifest), []byte("deeper is fine"), 0o644)

	local := filepath.Join(t.TempDir(), "got")
	if err := c.CopyFrom(testCtx(t), remote, local); err != nil {
		t.Fatal(err)
	}
	var links []string
	filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink != 0 {
			links = append(links, p)
		}
		return nil
	})
	if len(links) != 0 {
		t.Errorf("symlinks created on the controller: %v", links)
	}
	var manifest map[string]string
	data, err := os.ReadFile(filepath.Join(local, SymlinkManifest))
	if err != nil || json.Unmarshal(data, &manifest) != nil {
		t.Fatalf("manifest %q: %v", data, err)
	}
	if want := map[string]string{"shadow": "/etc/shadow", "sub/up": "../.."}; !maps.Equal(manifest, want) {
		t.Errorf("manifest %v, want %v", manifest, want)
	}
	if b, _ := os.ReadFile(filepath.Join(local, "sub", SymlinkManifest)); string(b) != "deeper is fine" {
		t.Errorf("a nested file named like the manifest was not copied: %q", b)
	}

	// A top-level entry with the manifest's name would be overwritten by it:
	// it is refused, with an error that names it.
	os.WriteFile(filepath.Join(remote, SymlinkManifest), []byte("mine"), 0o644)
	err = c.CopyFrom(testCtx(t), remote, filepath.Join(t.TempDir(), "again"))
	if err == nil || !strings.Contains(err.Error(), "reserved for the symlink manifest") {
		t.Errorf("copy with a top-level %s: %v", SymlinkManifest, err)
	}
}
