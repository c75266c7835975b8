package bridge

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// recordScript sends one record with levelname LEVEL and message MSG to
// HOST PORT, then hangs up.
const recordScript = `
import json, socket, struct, sys
host, port, level, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rec = {"name": "avocado.test", "levelno": 20, "levelname": level,
       "asctime": "2026-12-01 00:00:00,000", "msg": msg}
body = json.dumps(rec).encode()
s = socket.create_connection((host, port), timeout=5)
s.sendall(struct.pack(">I", len(body)) + body)
s.close()
`

// idleScript opens N connections to HOST PORT, sends nothing, and after
// SECS seconds prints how many the server has closed.
const idleScript = `
import socket, sys, time
host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
conns = []
for _ in range(n):
    try:
        conns.append(socket.create_connection((host, port), timeout=5))
    except OSError:
        pass
time.sleep(secs)
closed = 0
for s in conns:
    s.settimeout(0.2)
    try:
        if s.recv(1) == b"":
            closed += 1
    except socket.timeout:
        pass
    except OSError:
        closed += 1
print("closed %d of %d" % (closed + n - len(conns), n))
`

// The attacks of audit 3 L1 on "vtcluster logs serve", as its own process:
// a levelname that forges a line, idle connections that would hold every
// slot, and a symlink planted where --dir's node file goes.
func TestCLI_logsServe_forgeryIdleHoldersAndLinksRefused(t *testing.T) {
	c := newCLICluster(t, 1, nil)
	h := c.lab.Hosts[0]
	nodeDir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside")
	writeFile(t, outside, "precious\n")
	if err := os.Symlink(outside, filepath.Join(nodeDir, "node1.log")); err != nil {
		t.Fatal(err)
	}
	host, port, stdout, stop := startLogServe(t, c.stateDir, c.lab.Gateway,
		"--dir", nodeDir, "--node", h.Address+"=node1", "--idle-timeout", "3s")

	// nobody on the controller opens 200 connections and sends nothing:
	// beyond 8 they are closed at once, the 8 once idle for 3 s.
	idle := make(chan string, 1)
	go func() { idle <- nobodyPython(t, "", idleScript, host, port, "200", "8") }()
	time.Sleep(2 * time.Second) // they are open
	send := func(level, msg string) {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", h.Netns, "/usr/bin/python3", "-c", recordScript, host, port, level, msg).CombinedOutput()
		if err != nil {
			t.Fatalf("sending a record: %v\n%s", err, out)
		}
	}
	send("INFO\nnode9(10.9.9.9) v", "forged level")
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(hangGuard)
		for !strings.Contains(stdout.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the output:\n%s\nstderr:\n%s", what, stdout.String(), stop())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("forged level")
	var lines []string
	for l := range strings.SplitSeq(stdout.String(), "\n") {
		if strings.Contains(l, "node9(") || strings.Contains(l, "forged level") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], ` logserver L`) || !strings.Contains(lines[0], ` INFO\nnode9(10.9.9.9) v | node1(`+h.Address+`) `) {
		t.Errorf("the forged levelname gave %d lines, want one with it escaped in both halves: %q", len(lines), lines)
	}
	if got := <-idle; strings.TrimSpace(got) != "closed 200 of 200" {
		t.Errorf("idle connections of nobody: %s, want every one closed", got)
	}
	// A sender of the address that held connections is served again.
	out, err := exec.Command("/usr/bin/python3", "-c", recordScript, host, port, "INFO", "after the idle ones").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitFor("after the idle ones")
	if b, _ := os.ReadFile(outside); string(b) != "precious\n" {
		t.Errorf("written through the symlink planted in --dir: %q", b)
	}
	if errOut := stop(); !strings.Contains(errOut, "is a symlink: not followed") {
		t.Errorf("no warning about the planted symlink:\n%s", errOut)
	}
}
