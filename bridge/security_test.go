package bridge

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster/lab"
	"github.com/vtcluster/vtcluster/cluster/logserver"
)

// These tests are attacks by a local user without privileges, `nobody`, on
// a node and on the controller, against a real lab with real agents and a
// real runner. Each asserts the exact way the attack fails.

// nobodyPython runs a Python script as nobody (uid and gid 65534, no
// supplementary groups), inside the network namespace netns when it is not
// empty, and returns its stdout. The system's python3 is used: nobody
// cannot read a python under /root.
func nobodyPython(tb testing.TB, netns, script string, args ...string) string {
	tb.Helper()
	argv := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script}
	argv = append(argv, args...)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		tb.Fatalf("%s: %v\n%s%s", strings.Join(argv[:min(len(argv), 8)], " "), err, out, stderr)
	}
	return string(out)
}

// attackScript tries every target given as an argument ("tcp HOST PORT",
// "unix PATH", "connect PATH") and prints one line per target: what it got.
// A call that gets through prints "RAN" and the uid the command ran as.
const attackScript = `
import http.client, socket, sys, xmlrpc.client

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("127.0.0.1", timeout=10)
        self.unix_path = path
    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.unix_path)
        self.sock = s

class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self.unix_path = path
    def make_connection(self, host):
        return UnixConnection(self.unix_path)

def run_id(proxy):
    r = proxy.process.run(["id", "-u"], {})
    return "RAN uid=" + r["stdout"].data.decode().strip()

def describe(e):
    if isinstance(e, xmlrpc.client.ProtocolError):
        return "HTTP %d" % e.errcode
    if isinstance(e, xmlrpc.client.Fault):
        return "Fault"
    return type(e).__name__

for target in sys.argv[1:]:
    kind, _, rest = target.partition(" ")
    try:
        if kind == "tcp":
            host, port = rest.rsplit(" ", 1)
            got = run_id(xmlrpc.client.ServerProxy("http://%s:%s/" % (host, port)))
        elif kind == "url":
            got = run_id(xmlrpc.client.ServerProxy(rest))
        elif kind == "unix":
            got = run_id(xmlrpc.client.ServerProxy("http://127.0.0.1/", transport=UnixTransport(rest)))
        elif kind == "connect":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(rest)
            s.close()
            got = "connected"
        elif kind == "read":
            open(rest, "rb").read()
            got = "read"
        else:
            got = "unknown target"
    except Exception as e:
        got = describe(e)
    print("%s: %s" % (target, got))
`

// worldTraversableDir returns a new directory everyone may enter, so that
// only the modes vtcluster gives its own directories keep nobody out (a
// test directory of Go's is 0700 and would prove nothing).
func worldTraversableDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "vtc-sec-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// listening returns the lines of `ss -H -l -p` (TCP with tcp, else Unix
// stream sockets) in netns ("" for this host) that belong to process pid,
// or all of them for pid 0.
func listening(tb testing.TB, netns string, tcp bool, pid int) []string {
	tb.Helper()
	argv := []string{"ss", "-H", "-l", "-n", "-p", "-x"}
	if tcp {
		argv[len(argv)-1] = "-t"
	}
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		tb.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	var lines []string
	mark := "pid=" + strconv.Itoa(pid) + ","
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if line != "" && (pid == 0 || strings.Contains(line, mark)) {
			lines = append(lines, strings.Join(strings.Fields(line), " "))
		}
	}
	return lines
}

// agentsUnderOpenDir is a one-node cluster with its agent started under
// base, a worldTraversableDir: what keeps a node user out is then only
// what vtcluster does.
func agentsUnderOpenDir(t *testing.T) (c *cliCluster, base string) {
	base = worldTraversableDir(t)
	c = newCLICluster(t, 1, func(_ string, h map[string]any) { h["agent_base_dir"] = base })
	c.bootstrap(t)
	c.mustCLI(t, "agents", "start")
	return c, base
}

func TestSecurity_nodeUserCannotReachTheAgent(t *testing.T) {
	c, base := agentsUnderOpenDir(t)
	h := c.lab.Hosts[0]
	pids := agentPIDs(t, h)
	if len(pids) != 1 {
		t.Fatalf("agent processes on %s: %v, want one", h.Name, pids)
	}
	agentDir := filepath.Join(base, h.Name)
	sock := filepath.Join(agentDir, "agent.sock")

	// The agent listens on its socket and nowhere else.
	if tcp := listening(t, h.Netns, true, pids[0]); len(tcp) != 0 {
		t.Errorf("the agent listens on TCP: %q", tcp)
	}
	if ux := listening(t, h.Netns, false, pids[0]); len(ux) != 1 || !strings.Contains(ux[0], " "+sock+" ") {
		t.Errorf("the agent's Unix listeners: %q, want only %s", ux, sock)
	}
	if st, err := os.Stat(agentDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("agent dir %s: %v, %v; want mode 0700", agentDir, st.Mode(), err)
	}

	// A socket nobody may use, in the same parent, shows that nobody gets
	// that far: only the agent dir's mode stands in the way.
	control := filepath.Join(base, "control.sock")
	ln, err := netListenUnix(control)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	targets := []string{
		"tcp 127.0.0.1 9999",
		"tcp " + h.Address + " 9999",
		"tcp localhost 9999",
		"unix " + sock,
		"connect " + sock,
		"connect " + control,
	}
	got := nobodyPython(t, h.Netns, attackScript, targets...)
	want := "tcp 127.0.0.1 9999: ConnectionRefusedError\n" +
		"tcp " + h.Address + " 9999: ConnectionRefusedError\n" +
		"tcp localhost 9999: ConnectionRefusedError\n" +
		"unix " + sock + ": PermissionError\n" +
		"connect " + sock + ": PermissionError\n" +
		"connect " + control + ": connected\n"
	if got != want {
		t.Errorf("nobody on the node:\n%s\nwant:\n%s", got, want)
	}

	// The same socket serves its owner, through SSH: the controller.
	out := c.mustCLI(t, "exec", h.Name, "--", "id", "-u")
	if strings.TrimSpace(out) != "0" {
		t.Errorf("vtcluster exec id -u = %q, want 0", out)
	}
}

// securityBody is a test body that proves that the proxy serves the body
// (the job's user, with the URL the runner gave it), then hands the
// partition file and proxy URL to the test and waits for it.
const securityBody = `
import json, os, sys, time, xmlrpc.client
url = os.environ["VTCLUSTER_NODE_A_URL"]
proxy = xmlrpc.client.ServerProxy(url)
uid = proxy.process.run(["id", "-u"], {})["stdout"].data.decode().strip()
handoff = os.environ["HANDOFF"]
with open(handoff + ".tmp", "w") as f:
    json.dump({"partition": os.environ["VTCLUSTER_PARTITION_FILE"], "url": url, "uid": uid,
               "node": os.environ["VTCLUSTER_NODE_A_NAME"]}, f)
os.rename(handoff + ".tmp", handoff)
deadline = time.time() + 120
while not os.path.exists(handoff + ".done") and time.time() < deadline:
    time.sleep(0.1)
`

// heldTest is a runner running securityBody until released.
type heldTest struct {
	cmd     *exec.Cmd
	handoff string
	out     strings.Builder // the runner's messages, complete after finish
	outDone chan struct{}
	// What the body handed over: its partition file, its node's URL, the
	// uid its own call through the proxy ran as, and its node's name.
	hand struct{ Partition, URL, UID, Node string }
}

// startHeldTest runs the real runner (runnable-run, as Avocado's nrunner
// does) on a one-node test of c, and waits until its body handed over.
func startHeldTest(t *testing.T, c *cliCluster) *heldTest {
	t.Helper()
	work := t.TempDir()
	body := filepath.Join(work, "body.py")
	ht := &heldTest{handoff: filepath.Join(work, "handoff.json"), outDone: make(chan struct{})}
	spec := filepath.Join(work, "spec.json")
	writeFile(t, body, securityBody)
	writeFile(t, spec, fmt.Sprintf(`{"tests": [{"name": "hold", "nodes": {"a": null}, "timeout": 150,
		"body": {"command": ["python3", %q], "env": {"HANDOFF": %q}}}]}`, body, ht.handoff))

	binDir := t.TempDir()
	runner := filepath.Join(binDir, "avocado-runner-multihost")
	if err := os.Symlink(vtclusterBinary(t), runner); err != nil {
		t.Fatal(err)
	}
	ht.cmd = exec.Command(runner, "runnable-run", "-k", "multihost", "-u", spec+":hold")
	ht.cmd.Env = append(os.Environ(), "VTCLUSTER_STATE_DIR="+c.stateDir)
	ht.cmd.Dir = work
	stdout, err := ht.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ht.cmd.Stderr = os.Stderr
	if err := ht.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(ht.outDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			ht.out.WriteString(sc.Text() + "\n")
		}
	}()
	t.Cleanup(func() {
		if ht.cmd.ProcessState == nil {
			ht.cmd.Process.Kill()
			ht.cmd.Wait()
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		data, err := os.ReadFile(ht.handoff)
		if err == nil {
			if err := json.Unmarshal(data, &ht.hand); err != nil {
				t.Fatal(err)
			}
			return ht
		}
		if time.Now().After(deadline) {
			t.Fatalf("the body never handed over")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// finish lets the body end, waits for the runner, and returns its output,
// failing the test unless the test passed.
func (ht *heldTest) finish(t *testing.T) string {
	t.Helper()
	if err := os.WriteFile(ht.handoff+".done", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ht.cmd.Wait(); err != nil {
		t.Fatalf("runner: %v", err)
	}
	<-ht.outDone
	out := ht.out.String()
	if !strings.Contains(out, "'result': 'pass'") {
		t.Errorf("runner did not pass the test:\n%s", out)
	}
	return out
}

func TestSecurity_controllerUserCannotUseTheTestsListeners(t *testing.T) {
	c, base := agentsUnderOpenDir(t)
	h := c.lab.Hosts[0]
	ht := startHeldTest(t, c)
	hand, cmd := ht.hand, ht.cmd

	// The body, with the URL it was given, reaches the node.
	if hand.UID != "0" {
		t.Errorf("the body's own call ran as uid %q, want 0", hand.UID)
	}
	u, err := url.Parse(hand.URL)
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := u.User.Password()
	if u.User.Username() != "vtc" || len(secret) < 20 || u.Hostname() != "127.0.0.1" {
		t.Fatalf("agent URL %s: want http://vtc:SECRET@127.0.0.1:PORT/", u.Redacted())
	}
	port := u.Port()

	// The runner's only TCP listener is that proxy; nothing listens for
	// log frames on the controller.
	if tcp := listening(t, "", true, cmd.Process.Pid); len(tcp) != 1 || !strings.Contains(tcp[0], " 127.0.0.1:"+port+" ") {
		t.Errorf("the runner's TCP listeners: %q, want only the proxy on 127.0.0.1:%s", tcp, port)
	}
	// The partition file (with the secret) is the job user's alone.
	if st, err := os.Stat(hand.Partition); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("partition file: %v, %v; want 0600", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Dir(hand.Partition)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("partition file's dir: %v, %v; want 0700", st.Mode(), err)
	}

	wrong := *u
	wrong.User = url.UserPassword("vtc", strings.Repeat("A", len(secret)))
	bare := *u
	bare.User = nil
	got := nobodyPython(t, "", attackScript,
		"read "+hand.Partition,
		"tcp 127.0.0.1 "+port,
		"url "+wrong.String(),
		"url "+bare.String())
	want := "read " + hand.Partition + ": PermissionError\n" +
		"tcp 127.0.0.1 " + port + ": HTTP 401\n" +
		"url " + wrong.String() + ": HTTP 401\n" +
		"url " + bare.String() + ": HTTP 401\n"
	if got != want {
		t.Errorf("nobody on the controller:\n%s\nwant:\n%s", got, want)
	}
	// A web page cannot use the proxy even where the browser knows the
	// secret (a cross-site POST) or through DNS rebinding (foreign Host).
	for _, tc := range []struct{ name, header, value string }{
		{"cross-site", "Origin", "http://evil.example"},
		{"fetch metadata", "Sec-Fetch-Mode", "no-cors"},
		{"DNS rebinding", "Host", "evil.example:" + port},
	} {
		code := proxyPost(t, hand.URL, tc.header, tc.value)
		if code != 403 {
			t.Errorf("%s request: HTTP %d, want 403", tc.name, code)
		}
	}

	// On the node, the log stream comes in through a socket in the agent's
	// directory that sshd forwards; nobody there cannot connect to it.
	sshd := netnsSSHD(t, h)
	var logSock string
	for _, l := range listening(t, h.Netns, false, sshd) {
		for f := range strings.FieldsSeq(l) {
			if strings.HasPrefix(f, filepath.Join(base, h.Name, "log-")) {
				logSock = f
			}
		}
	}
	if logSock == "" {
		t.Fatalf("no log socket forwarded by sshd (pid %d) under %s", sshd, filepath.Join(base, h.Name))
	}
	if tcp := listening(t, h.Netns, true, 0); len(tcp) != 1 || !strings.Contains(tcp[0], " "+h.Address+":"+strconv.Itoa(h.Port)+" ") {
		t.Errorf("TCP listeners on the node: %q, want only sshd's own (no forwarded port)", tcp)
	}
	got = nobodyPython(t, h.Netns, attackScript, "connect "+logSock)
	if want := "connect " + logSock + ": PermissionError\n"; got != want {
		t.Errorf("nobody on the node against the log socket: %q, want %q", got, want)
	}

	// Even the socket's owner (root, as the agent) cannot write lines of
	// its own into the test's log, nor make the runner hold what a frame
	// header claims: 100 connections announce frames just under the
	// limit and send 1 KiB of each.
	before := vmRSS(t, cmd.Process.Pid)
	flood := fmt.Sprintf(`
import json, socket, struct, sys, time
rec = {"name": "avocado.service.core", "levelno": 20, "levelname": "INFO", "asctime": "2026-12-01 00:00:00,000",
       "msg": "hello\nnode9(10.9.9.9) 2026-12-01 00:00:00,000 avocado.service.core ERROR | fake failure\rnode8(10.9.9.8) x ERROR | fake"}
body = json.dumps(rec).encode()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(%[1]q)
s.sendall(struct.pack(">I", len(body)) + body)
s.close()
conns = []
for i in range(100):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(%[1]q)
    try:
        s.sendall(struct.pack(">I", %[2]d) + b"{" * 1024)
    except OSError:
        pass
    conns.append(s)
time.sleep(2)
print("sent")
`, logSock, logserver.DefaultConfig().MaxFrame-1)
	if out, err := exec.Command("ip", "netns", "exec", h.Netns, "/usr/bin/python3", "-c", flood).CombinedOutput(); err != nil || string(out) != "sent\n" {
		t.Fatalf("flood: %v\n%s", err, out)
	}
	if after := vmRSS(t, cmd.Process.Pid); after-before > 32<<20 {
		t.Errorf("runner RSS grew from %d to %d KiB under 100 partial frames", before>>10, after>>10)
	}

	out := ht.finish(t)
	// The forged record arrived as one record of node a: its newline starts
	// an indented continuation, its carriage return is escaped (a
	// backslash and "r"; the bytes repr of the output doubles backslashes).
	if !strings.Contains(out, `| hello\n    node9(10.9.9.9) 2026-12-01 00:00:00,000 avocado.service.core ERROR | fake failure\\rnode8(`) {
		t.Errorf("the forged record is missing or not escaped in the runner's output:\n%s", out)
	}
	if strings.Contains(out, `\nnode9(`) || strings.Contains(strings.ReplaceAll(out, `\\r`, ""), `\rnode8(`) {
		t.Errorf("a forged record starts a line of the runner's output:\n%s", out)
	}
}

func writeFile(tb testing.TB, path, data string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// netListenUnix listens on a Unix socket anyone may connect to.
func netListenUnix(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	return ln, os.Chmod(path, 0o777)
}

// proxyPost sends an XML-RPC call to the proxy at rawURL (credentials
// included) with one header set, and returns the HTTP status.
func proxyPost(tb testing.TB, rawURL, header, value string) int {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(
		`<?xml version="1.0"?><methodCall><methodName>core.is_alive</methodName><params></params></methodCall>`))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	if header == "Host" {
		req.Host = value
	} else {
		req.Header.Set(header, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// netnsSSHD returns the pid of the lab host's sshd listener (the one whose
// parent is not an sshd).
func netnsSSHD(tb testing.TB, h lab.Host) int {
	tb.Helper()
	for _, pid := range labPIDs(tb, h, func(p lab.Proc) bool { return p.Comm == "sshd" }) {
		// The session's own sshd process holds the forward.
		if ux := listening(tb, h.Netns, false, pid); len(ux) > 0 {
			return pid
		}
	}
	tb.Fatalf("no sshd holding a Unix listener in %s", h.Netns)
	return 0
}

// vmRSS returns a process's resident memory in bytes.
func vmRSS(tb testing.TB, pid int) int {
	tb.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// frameScript connects to a log listener at HOST PORT, sends one record
// with message MSG, and prints whether the listener then hangs up
// ("closed") or keeps the connection ("open").
const frameScript = `
import json, socket, struct, sys
host, port, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rec = {"name": "avocado.service.core", "levelno": 20, "levelname": "INFO",
       "asctime": "2026-12-01 00:00:00,000", "msg": msg}
body = json.dumps(rec).encode()
s = socket.create_connection((host, port), timeout=5)
try:
    s.sendall(struct.pack(">I", len(body)) + body)
    s.settimeout(1.5)
    print("closed" if s.recv(1) == b"" else "data")
except socket.timeout:
    print("open")
except (ConnectionResetError, BrokenPipeError):
    print("closed")
`

// In direct mode the agent connects back over the network, so the runner
// listens on the interface that routes to the node: it serves that node's
// address and hangs up on everyone else, another host of the LAN or a
// user of the controller.
func TestSecurity_directModeLogListenerServesOnlyTheNode(t *testing.T) {
	c := directModeAgents(t, 2)
	ht := startHeldTest(t, c)
	if ht.hand.UID != "0" {
		t.Errorf("the body's own call ran as uid %q, want 0", ht.hand.UID)
	}
	var node, other lab.Host
	for _, h := range c.lab.Hosts {
		if h.Name == ht.hand.Node {
			node = h
		} else {
			other = h
		}
	}
	var logAddr string
	tcp := listening(t, "", true, ht.cmd.Process.Pid)
	for _, l := range tcp {
		if f := strings.Fields(l); len(f) > 3 && !strings.HasPrefix(f[3], "127.0.0.1:") {
			logAddr = f[3]
		}
	}
	if len(tcp) != 2 || logAddr == "" {
		t.Fatalf("the runner's TCP listeners: %q, want the proxy on loopback and one log listener", tcp)
	}
	host, port, _ := strings.Cut(logAddr, ":")

	run := func(netns string, asNobody bool, msg string) string {
		if asNobody {
			return strings.TrimSpace(nobodyPython(t, netns, frameScript, host, port, msg))
		}
		out, err := exec.Command("ip", "netns", "exec", netns, "/usr/bin/python3", "-c", frameScript, host, port, msg).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", netns, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run(other.Netns, false, "forged by another host"); got != "closed" {
		t.Errorf("root on another host of the LAN: %s, want closed", got)
	}
	if got := run("", true, "forged by nobody on the controller"); got != "closed" {
		t.Errorf("nobody on the controller: %s, want closed", got)
	}
	if got := run(node.Netns, false, "sent from the node itself"); got != "open" {
		t.Errorf("the node: %s, want open", got)
	}
	out := ht.finish(t)
	if !strings.Contains(out, "| sent from the node itself") {
		t.Errorf("the node's record is missing from the runner's output:\n%s", out)
	}
	if strings.Contains(out, "forged by") {
		t.Errorf("a record from outside the partition reached the runner's output:\n%s", out)
	}
}
