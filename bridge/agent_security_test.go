package bridge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Attacks on a real agent process (issue 7), each with its exact outcome.
// Memory is the agent's peak RSS (VmHWM) after resetting it, so it covers
// the attack and nothing before; every loop is bounded and dials
// 127.0.0.1 only.

// memBudgetKiB is the peak an attack may push the agent to.
const memBudgetKiB = 256 << 10

// systemPython is a Python every user may run (root's pyenv is not), for
// clients that run as nobody.
const systemPython = "/usr/bin/python3"

// resetHWM restarts the peak-RSS count of pid.
func resetHWM(tb testing.TB, pid int) {
	tb.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		tb.Fatalf("resetting VmHWM: %v", err)
	}
}

// vmHWM returns the peak RSS of pid in KiB.
func vmHWM(tb testing.TB, pid int) int {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				tb.Fatalf("VmHWM %q: %v", v, err)
			}
			return n
		}
	}
	tb.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// mustAnswer calls core.is_alive with the token and fails the test unless
// the agent answers True within a few seconds.
func (a *agentProc) mustAnswer(tb testing.TB) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.url, strings.NewReader(
		`<?xml version="1.0"?><methodCall><methodName>core.is_alive</methodName><params></params></methodCall>`))
	req.SetBasicAuth("vtc", a.token)
	// Within the header timeout: by then every flooding connection is gone.
	c := &http.Client{Timeout: 12 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("agent does not answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<boolean>1</boolean>") {
		tb.Fatalf("core.is_alive: HTTP %s %s", resp.Status, body)
	}
}

// rawExchange sends req on a new connection to addr and returns the
// status line of the reply, or the error that ended the exchange.
func rawExchange(addr, req string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func callXML(method string, params ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?><methodCall><methodName>%s</methodName><params>`, method)
	for _, p := range params {
		fmt.Fprintf(&b, "<param><value>%s</value></param>", p)
	}
	b.WriteString("</params></methodCall>")
	return b.String()
}

// touchCall is process.run(["touch", path], {}): proof that a caller ran a
// command when path appears.
func touchCall(path string) string {
	return callXML("process.run", `<array><data><value><string>touch</string></value><value><string>`+path+`</string></value></data></array>`, "<struct></struct>")
}

func TestAgentAttack_tokenlessTCPRefused(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1", "localhost", "0.0.0.0"} {
		code, _, stderr := runVtcluster(t, nil, "agent", "--host", host, "--port", strconv.Itoa(freeTCPPort(t)), "--pid-file", filepath.Join(t.TempDir(), "p.pid"))
		if code != 2 || !strings.Contains(stderr, "refusing to listen on TCP") || !strings.Contains(stderr, "--token-file") || !strings.Contains(stderr, "--unix-socket") {
			t.Errorf("tokenless agent on %s: exit %d, stderr %q; want exit 2 naming --token-file and --unix-socket", host, code, stderr)
		}
	}
}

// privateSocketDir is a 0700 directory for an agent socket, short enough
// for sun_path.
func privateSocketDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "vtc-sock-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestAgentAttack_unixSocketDirMustBePrivate(t *testing.T) {
	dir := privateSocketDir(t)
	os.Chmod(dir, 0o755)
	a, banner := launchAgent(t, agentSpec{socket: filepath.Join(dir, "agent.sock")})
	if banner {
		t.Fatal("agent listened in a 0755 directory")
	}
	if code := a.wait(t); code != 1 || !strings.Contains(a.stderr.String(), "has mode 0755; it must be a directory of mode 0700 owned by uid") {
		t.Fatalf("exit %d, stderr:\n%s", code, a.stderr)
	}
	if os.Geteuid() != 0 {
		return
	}
	other := privateSocketDir(t)
	os.Chown(other, 65534, 65534)
	a, banner = launchAgent(t, agentSpec{socket: filepath.Join(other, "agent.sock")})
	if banner || a.wait(t) != 1 || !strings.Contains(a.stderr.String(), "is owned by uid 65534") {
		t.Fatalf("agent in a directory owned by nobody: banner %v, stderr:\n%s", banner, a.stderr)
	}
}

// unixClient is what a local attacker runs: connect to the socket, ask
// for process.run(["touch", marker]) and print what happened.
const unixClient = `
import socket, sys
path, marker = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(path)
except OSError as e:
    print("connect:", e.strerror); sys.exit(0)
body = sys.stdin.buffer.read()
try:
    s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    data = s.recv(64)
except OSError:
    data = b""
print("reply:", data.split(b"\r\n")[0].decode() if data else "none, connection closed")
`

// runUnixClient runs unixClient as uid (0: as we are, with uid as gid
// too) with the given ambient capabilities and returns its output.
func runUnixClient(t *testing.T, sock, marker string, uid uint32, caps []uintptr) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, systemPython, "-c", unixClient, sock, marker)
	cmd.Stdin = strings.NewReader(touchCall(marker))
	cmd.Dir = "/"
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}},
			AmbientCaps: caps,
		}
	}
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		t.Fatalf("client as uid %d: %v\n%s", uid, err, buf.String())
	}
	return strings.TrimSpace(buf.String())
}

// TestAgentAttack_unixSocketNobody: a local user cannot reach a
// --unix-socket agent: the 0700 directory stops the connect, and even a
// user who can reach the socket (here nobody with CAP_DAC_OVERRIDE, as a
// loosened directory or a shared mount would allow) is dropped by the
// peer-uid check before anything is read. Root, the control, runs the
// command.
func TestAgentAttack_unixSocketNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as nobody")
	}
	if _, err := os.Stat(systemPython); err != nil {
		t.Skipf("no %s for the attacker's client", systemPython)
	}
	sock := filepath.Join(privateSocketDir(t), "agent.sock")
	a := startAgent(t, agentSpec{socket: sock})
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v, %v; want 0600", fi.Mode(), err)
	}
	markers := t.TempDir()
	os.Chmod(markers, 0o777)

	m1 := filepath.Join(markers, "nobody")
	if got := runUnixClient(t, sock, m1, 65534, nil); got != "connect: Permission denied" {
		t.Errorf("nobody: %q, want %q", got, "connect: Permission denied")
	}
	m2 := filepath.Join(markers, "nobody-dac")
	if got := runUnixClient(t, sock, m2, 65534, []uintptr{unix.CAP_DAC_OVERRIDE}); got != "reply: none, connection closed" {
		t.Errorf("nobody past the directory: %q, want %q", got, "reply: none, connection closed")
	}
	for _, m := range []string{m1, m2} {
		if _, err := os.Stat(m); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the command ran (%v)", m, err)
		}
	}
	if log := waitAgentLog(t, a, "runs as uid 65534"); !strings.Contains(log, "peer pid") || !strings.Contains(log, "runs as uid 65534") {
		t.Errorf("agent.log does not name the refused peer:\n%s", log)
	}
	m3 := filepath.Join(markers, "root")
	if got := runUnixClient(t, sock, m3, 0, nil); got != "reply: HTTP/1.1 200 OK" {
		t.Fatalf("root: %q", got)
	}
	if _, err := os.Stat(m3); err != nil {
		t.Fatalf("root's command did not run: %v", err)
	}
}

func readAgentLog(tb testing.TB, a *agentProc) string {
	data, _ := os.ReadFile(filepath.Join(a.dataDir, "log", "agent.log"))
	return string(data)
}

// waitAgentLog returns agent.log once it holds want: a running agent
// writes its log a moment behind the calls (agent's groupWriter).
func waitAgentLog(tb testing.TB, a *agentProc, want string) string {
	tb.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		log := readAgentLog(tb, a)
		if strings.Contains(log, want) || time.Now().After(deadline) {
			return log
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAgentAttack_browserRequestsRefused: a cross-site POST (Origin, or
// Sec-Fetch-*) and a DNS-rebinding Host are refused even with the token;
// Python's Host: 127.0.0.1:PORT and a name given with --allow-host are
// served.
func TestAgentAttack_browserRequestsRefused(t *testing.T) {
	a := startAgent(t, agentSpec{extra: []string{"--allow-host", "node1.lab.example"}})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port))
	dir := t.TempDir()
	auth := "Authorization: Basic " + basicAuth("vtc", a.token) + "\r\n"
	for _, c := range []struct {
		name, hdr, want string
	}{
		{"csrf", "Host: 127.0.0.1\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\n" + auth, "HTTP/1.1 403 Forbidden"},
		{"fetch", "Host: 127.0.0.1\r\nSec-Fetch-Site: cross-site\r\n" + auth, "HTTP/1.1 403 Forbidden"},
		{"rebinding", "Host: evil.example:" + strconv.Itoa(a.port) + "\r\n" + auth, "HTTP/1.1 403 Forbidden"},
		{"python", "Host: 127.0.0.1:" + strconv.Itoa(a.port) + "\r\n" + auth, "HTTP/1.1 200 OK"},
		{"allowed-name", "Host: node1.lab.example:" + strconv.Itoa(a.port) + "\r\n" + auth, "HTTP/1.1 200 OK"},
		{"other-name", "Host: node2.lab.example:" + strconv.Itoa(a.port) + "\r\n" + auth, "HTTP/1.1 403 Forbidden"},
	} {
		marker := filepath.Join(dir, c.name)
		body := touchCall(marker)
		got, err := rawExchange(addr, "POST / HTTP/1.1\r\n"+c.hdr+"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body, 10*time.Second)
		if got != c.want {
			t.Errorf("%s: %q (%v), want %q", c.name, got, err, c.want)
		}
		_, statErr := os.Stat(marker)
		if ran := statErr == nil; ran != (c.want == "HTTP/1.1 200 OK") {
			t.Errorf("%s: command ran = %v", c.name, ran)
		}
	}
}

func basicAuth(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// TestAgentAttack_headerFlood: 300 connections each sending an unfinished
// 1 MiB header leave the agent answering, within the memory budget.
func TestAgentAttack_headerFlood(t *testing.T) {
	a := startAgent(t, agentSpec{})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port))
	resetHWM(t, a.pid)
	line := "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Fill: " + strings.Repeat("a", 1<<20)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			c.SetWriteDeadline(time.Now().Add(3 * time.Second))
			io.WriteString(c, line) // the agent cuts it short
		}()
	}
	wg.Wait()
	a.mustAnswer(t)
	if kib := vmHWM(t, a.pid); kib > memBudgetKiB {
		t.Errorf("agent peak RSS %d MiB under the header flood, budget %d MiB", kib>>10, memBudgetKiB>>10)
	} else {
		t.Logf("agent peak RSS %d MiB", kib>>10)
	}
	for _, c := range conns {
		c.Close()
	}
}

// TestAgentAttack_wrongTokenSlowBody: clients with a wrong token that
// announce a body and dribble it get their 401 at once (the first few)
// or after a short back-off, and the connection is closed, not drained.
func TestAgentAttack_wrongTokenSlowBody(t *testing.T) {
	a := startAgent(t, agentSpec{})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port))
	resetHWM(t, a.pid)
	const n = 20
	type result struct {
		status  string
		elapsed time.Duration
		closed  bool
	}
	results := make(chan result, n)
	for range n {
		go func() {
			start := time.Now()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				results <- result{status: err.Error()}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic "+basicAuth("vtc", "wrong-token-guess-0000")+"\r\nContent-Length: 100000\r\n\r\n<")
			br := bufio.NewReader(c)
			st, _ := br.ReadString('\n')
			r := result{status: strings.TrimSpace(st), elapsed: time.Since(start)}
			// Read to the end: the agent must close instead of waiting
			// for the 99,999 bytes never sent.
			_, err = io.Copy(io.Discard, br)
			r.closed = err == nil
			results <- r
		}()
	}
	for range n {
		r := <-results
		if r.status != "HTTP/1.1 401 Unauthorized" || !r.closed || r.elapsed > 4*time.Second {
			t.Errorf("wrong token, slow body: %q after %v, closed by the agent %v; want 401 within 4 s and a close", r.status, r.elapsed.Round(time.Millisecond), r.closed)
		}
	}
	a.mustAnswer(t)
	if kib := vmHWM(t, a.pid); kib > memBudgetKiB {
		t.Errorf("agent peak RSS %d MiB, budget %d MiB", kib>>10, memBudgetKiB>>10)
	}
	// Stopped, the agent has written every line it logged.
	a.cmd.Process.Signal(syscall.SIGTERM)
	if code := a.wait(t); code != 0 {
		t.Errorf("agent exit code %d on SIGTERM", code)
	}
	if n := strings.Count(readAgentLog(t, a), "request without a valid token"); n != 1 {
		t.Errorf("agent.log has %d bad-token warnings for %d requests in one burst, want 1 (rate-limited)", n, 20)
	}
}

// bigCall posts body (with the token) and returns the status line and the
// start of the reply.
func (a *agentProc) bigCall(body io.Reader, length int64) (int, string, error) {
	req, _ := http.NewRequest(http.MethodPost, a.url, body)
	req.ContentLength = length
	req.SetBasicAuth("vtc", a.token)
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(data), nil
}

// valuesBody is an is_alive call with one array of n empty values: the
// cheapest document per decoded value.
func valuesBody(size int) []byte {
	head := `<?xml version="1.0"?><methodCall><methodName>core.is_alive</methodName><params><param><value><array><data>`
	tail := `</data></array></value></param></params></methodCall>`
	n := (size - len(head) - len(tail)) / len("<value/>")
	return []byte(head + strings.Repeat("<value/>", n) + tail)
}

// TestAgentAttack_largeCalls: a 60 MiB call, four concurrent 32 MiB calls
// and four concurrent 16 MiB calls of empty values (the worst decode
// amplification) leave the agent answering within the memory budget.
func TestAgentAttack_largeCalls(t *testing.T) {
	a := startAgent(t, agentSpec{})
	resetHWM(t, a.pid)

	// Announced: refused before a byte of the body is read.
	status, _, err := a.bigCall(bytes.NewReader(valuesBody(60<<20)), 60<<20)
	if status != http.StatusRequestEntityTooLarge && !isResetAfterRefusal(err) {
		t.Errorf("60 MiB call: HTTP %d %v, want 413", status, err)
	}
	// Chunked: read up to the limit, then refused.
	status, _, err = a.bigCall(io.LimitReader(infiniteValues{}, 60<<20), -1)
	if status != http.StatusRequestEntityTooLarge && !isResetAfterRefusal(err) {
		t.Errorf("60 MiB chunked call: HTTP %d %v, want 413", status, err)
	}

	var wg sync.WaitGroup
	for _, size := range []int{32 << 20, 16<<20 - 1024} {
		body := valuesBody(size)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, reply, err := a.bigCall(bytes.NewReader(body), int64(len(body)))
				switch {
				case size > 16<<20:
					if status != http.StatusRequestEntityTooLarge && !isResetAfterRefusal(err) {
						t.Errorf("%d MiB call: HTTP %d %v, want 413", size>>20, status, err)
					}
				case err != nil || status != 200 || !strings.Contains(reply, "ValueError") || !strings.Contains(reply, "more than 262144 values"):
					t.Errorf("16 MiB of values: HTTP %d %v %q, want a ValueError fault naming the value limit", status, err, reply)
				}
			}()
		}
		wg.Wait()
	}
	a.mustAnswer(t)
	kib := vmHWM(t, a.pid)
	if kib > memBudgetKiB {
		t.Errorf("agent peak RSS %d MiB, budget %d MiB", kib>>10, memBudgetKiB>>10)
	}
	t.Logf("agent peak RSS %d MiB", kib>>10)
}

// isResetAfterRefusal accepts the client seeing the connection closed
// while it was still sending the body the agent refused without reading.
func isResetAfterRefusal(err error) bool {
	return err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// infiniteValues reads as an endless run of "<value/>".
type infiniteValues struct{}

func (infiniteValues) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = "<value/>"[i%8]
	}
	return len(p), nil
}

// TestAgentAttack_logsBounded: a chatty command logged line by line
// rotates service.log while the agent runs, and a suite save copies only
// the end of it.
func TestAgentAttack_logsBounded(t *testing.T) {
	a := startAgent(t, agentSpec{})
	c := a.kolo(t, "")
	// 3,000 lines of 4,000 bytes: about 12 MB of records.
	script := `i=0; while [ $i -lt 3000 ]; do printf '%04000d\n' 0; i=$((i+1)); done`
	var res map[string]any
	if err := c.Call("process.run", []any{[]any{"sh", "-c", script}, map[string]any{"log_output": true, "timeout": 60}}, &res); err != nil {
		t.Fatal(err)
	}
	var ok bool
	if err := c.Call("core.save_job_data", []any{"j1", map[string]any{}}, &ok); err != nil || !ok {
		t.Fatalf("save_job_data: %v %v", ok, err)
	}
	if err := c.Call("core.save_suite_data", []any{"s1", map[string]any{}, map[string]any{}, "j1"}, &ok); err != nil || !ok {
		t.Fatalf("save_suite_data: %v %v", ok, err)
	}
	logDir := filepath.Join(a.dataDir, "log")
	cur, err1 := os.Stat(filepath.Join(logDir, "service.log"))
	old, err2 := os.Stat(filepath.Join(logDir, "service.log.1"))
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("service.log not rotated: %v", err)
	}
	if cur.Size() > 10<<20 || old.Size() > 10<<20 {
		t.Errorf("service.log %d and .1 %d bytes; each at most 10 MiB", cur.Size(), old.Size())
	}
	copied, err := os.ReadFile(filepath.Join(a.dataDir, "job_data", "j1", "test_results", "s1", "service.log"))
	if err != nil {
		t.Fatal(err)
	}
	// Rotation left less than the copy limit in service.log, so the copy
	// is the whole current file as it was at the save (the truncation
	// note is covered by agent.TestCopyLogTail_boundedAtLineStart).
	now, _ := os.ReadFile(filepath.Join(logDir, "service.log"))
	if len(copied) == 0 || len(copied) > 8<<20 || !bytes.HasPrefix(now, copied) {
		t.Errorf("suite copy of service.log: %d bytes, not the start of the current %d-byte file", len(copied), len(now))
	}
}

// TestAgent_detachUnixSocket: the way tunnel mode starts an agent: detached,
// on a Unix socket, reachable there, stopped by core.quit.
func TestAgent_detachUnixSocket(t *testing.T) {
	dir := privateSocketDir(t)
	sock, pidFile := filepath.Join(dir, "agent.sock"), filepath.Join(dir, "agent.pid")
	code, out, stderr := runVtcluster(t, nil, "agent", "--detach", "--unix-socket", sock, "--pid-file", pidFile, "--data-dir", filepath.Join(dir, "data"))
	if code != 0 || !strings.HasPrefix(out, "Agent daemon starting with PID ") {
		t.Fatalf("agent --detach --unix-socket: exit %d, %q\n%s", code, out, stderr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(out, "Agent daemon starting with PID ")))
	t.Cleanup(func() { unix.Kill(pid, unix.SIGKILL) })
	hc := &http.Client{Timeout: hangGuard, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	for _, m := range []string{"core.is_alive", "core.quit"} {
		resp, err := hc.Post("http://127.0.0.1/", "text/xml", strings.NewReader(callXML(m)))
		if err != nil {
			t.Fatalf("%s over the socket: %v", m, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.Contains(string(body), "<fault>") {
			t.Fatalf("%s: HTTP %s %s", m, resp.Status, body)
		}
	}
	deadline := time.Now().Add(hangGuard)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatal("agent did not exit after core.quit")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range []string{pidFile, sock} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after quit: %v", p, err)
		}
	}
}

// TestAgentAttack_slowBodyFlood: 200 authenticated connections that
// announce bodies (small and 16 MiB ones) and send only their first bytes
// leave the agent answering within the memory budget.
func TestAgentAttack_slowBodyFlood(t *testing.T) {
	a := startAgent(t, agentSpec{})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port))
	resetHWM(t, a.pid)
	auth := "Authorization: Basic " + basicAuth("vtc", a.token) + "\r\n"
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 200 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		size := 60 << 10
		if i%2 == 1 {
			size = 16 << 20
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %d\r\n\r\n%s", auth, size, strings.Repeat("<", 1000)); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	time.Sleep(500 * time.Millisecond) // let the agent take them all in
	a.mustAnswer(t)
	kib := vmHWM(t, a.pid)
	if kib > memBudgetKiB {
		t.Errorf("agent peak RSS %d MiB, budget %d MiB", kib>>10, memBudgetKiB>>10)
	}
	t.Logf("agent peak RSS %d MiB", kib>>10)
}
