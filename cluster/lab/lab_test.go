package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPickSubnet_firstFree(t *testing.T) {
	base := netip.MustParsePrefix("10.250.0.0/16")
	taken := []netip.Prefix{
		netip.MustParsePrefix("10.250.0.0/24"),
		netip.MustParsePrefix("10.250.1.0/24"),
	}
	// An interface address inside 10.250.2.0/24 makes that subnet unusable
	// even though no lab holds it.
	addrs := []netip.Addr{netip.MustParseAddr("10.250.2.77"), netip.MustParseAddr("192.168.1.5")}
	got, err := pickSubnet(base, taken, addrs)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParsePrefix("10.250.3.0/24"); got != want {
		t.Fatalf("pickSubnet = %s, want %s", got, want)
	}
}

func TestPickSubnet_widerTakenPrefixOverlaps(t *testing.T) {
	base := netip.MustParsePrefix("10.250.0.0/22")
	taken := []netip.Prefix{netip.MustParsePrefix("10.250.0.0/23")}
	got, err := pickSubnet(base, taken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParsePrefix("10.250.2.0/24"); got != want {
		t.Fatalf("pickSubnet = %s, want %s", got, want)
	}
}

func TestPickSubnet_exhausted(t *testing.T) {
	base := netip.MustParsePrefix("10.250.4.0/23")
	taken := []netip.Prefix{netip.MustParsePrefix("10.250.4.0/24"), netip.MustParsePrefix("10.250.5.0/24")}
	_, err := pickSubnet(base, taken, nil)
	if err == nil || !strings.Contains(err.Error(), "no free /24 left in 10.250.4.0/23") {
		t.Fatalf("err = %v, want exhaustion naming the base", err)
	}
}

// A /24 asked for by name (lab up --subnet) is that /24 or an error that
// says it is taken.
func TestPickSubnet_exactSubnet(t *testing.T) {
	want := netip.MustParsePrefix("10.124.7.0/24")
	if got, err := pickSubnet(want, nil, nil); err != nil || got != want {
		t.Fatalf("pickSubnet(%s) = %v, %v", want, got, err)
	}
	_, err := pickSubnet(want, nil, []netip.Addr{netip.MustParseAddr("10.124.7.1")})
	if err == nil || !strings.Contains(err.Error(), "subnet 10.124.7.0/24 is in use") {
		t.Fatalf("taken /24: %v", err)
	}
}

func TestPickSubnet_badBase(t *testing.T) {
	for _, b := range []string{"10.250.0.0/25", "fd00::/64"} {
		if _, err := pickSubnet(netip.MustParsePrefix(b), nil, nil); err == nil {
			t.Errorf("pickSubnet(%s): no error", b)
		}
	}
}

func TestHostAddr_range(t *testing.T) {
	s := netip.MustParsePrefix("10.250.9.0/24")
	if a, err := hostAddr(s, 1); err != nil || a.String() != "10.250.9.1" {
		t.Fatalf("hostAddr(1) = %v, %v", a, err)
	}
	if a, err := hostAddr(s, maxHosts+1); err != nil || a.String() != "10.250.9.201" {
		t.Fatalf("hostAddr(max) = %v, %v", a, err)
	}
	for _, i := range []int{0, maxHosts + 2} {
		if _, err := hostAddr(s, i); err == nil {
			t.Errorf("hostAddr(%d): no error", i)
		}
	}
}

func TestValidPrefix(t *testing.T) {
	for _, p := range []string{"vt", "vtt0a1b2", "a1"} {
		if err := validPrefix(p); err != nil {
			t.Errorf("validPrefix(%q) = %v", p, err)
		}
	}
	// Too long for "<prefix>v200" to fit 15 bytes, not a user name, or empty.
	for _, p := range []string{"", "v", "vtt0a1b2c", "1ab", "Ab", "a-b", "a b"} {
		if err := validPrefix(p); err == nil {
			t.Errorf("validPrefix(%q): no error", p)
		}
	}
	if p := randomPrefix(testPrefix); validPrefix(p) != nil || !strings.HasPrefix(p, testPrefix) {
		t.Errorf("randomPrefix = %q", p)
	}
}

func TestProcStartTime_self(t *testing.T) {
	st, err := procStartTime(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("procStartTime(self) = %d, %v", st, err)
	}
	if !ownerAlive(os.Getpid(), st) {
		t.Fatal("ownerAlive(self) = false")
	}
	if ownerAlive(os.Getpid(), st+1) {
		t.Fatal("ownerAlive with another start time = true (pid reuse not detected)")
	}
}

func TestLoad_badState(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"not json":      `{"dir": `,
		"missing dir":   `{"prefix":"vtl1","bridge":"vtl1br","hosts":[]}`,
		"hosts not arr": `{"dir":"/x","prefix":"vtl1","bridge":"vtl1br","hosts":{}}`,
		"bad prefix":    `{"dir":"/x","prefix":"../etc","bridge":"b","hosts":[]}`,
	}
	for name, body := range cases {
		if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, stateFile)) {
			t.Errorf("%s: err = %v, want an error naming the file", name, err)
		}
	}
}

func TestDown_noLabIsNotAnError(t *testing.T) {
	if err := Down(t.TempDir()); err != nil {
		t.Fatalf("Down(empty dir) = %v", err)
	}
}

func TestUp_refusesBadSpec(t *testing.T) {
	ctx := context.Background()
	for name, spec := range map[string]Spec{
		"no dir":     {Hosts: 1},
		"zero hosts": {Dir: t.TempDir()},
		"too many":   {Dir: t.TempDir(), Hosts: maxHosts + 1},
		"bad prefix": {Dir: t.TempDir(), Hosts: 1, Prefix: "Bad"},
	} {
		if l, err := Up(ctx, spec); err == nil {
			l.Down()
			t.Errorf("%s: Up succeeded", name)
		}
	}
}

func TestLab_Up_hostsReachableWithOwnHostnames(t *testing.T) {
	l := Start(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for i, h := range l.Hosts {
		out, err := l.Exec(ctx, i, "hostname")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != h.Hostname {
			t.Errorf("host %d hostname = %q, want %q", i, got, h.Hostname)
		}
		// sshd answers with its banner on the host's own address.
		conn, err := net.DialTimeout("tcp", h.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		banner := make([]byte, 8)
		if _, err := conn.Read(banner); err != nil || !bytes.HasPrefix(banner, []byte("SSH-2.0-")) {
			t.Errorf("host %s banner = %q, %v", h.Name, banner, err)
		}
		conn.Close()
	}
	// Hosts reach each other's sshd through the bridge (bash's /dev/tcp
	// makes the connection; the netns has no other client tool).
	if out, err := l.Exec(ctx, 0, "bash", "-c", `exec 3<>"/dev/tcp/$0/22" && head -c 8 <&3`, l.Hosts[1].Address); err != nil || string(out) != "SSH-2.0-" {
		t.Errorf("node1 -> node2:22: %q, %v", out, err)
	}
	for _, st := range l.Status(ctx) {
		if !st.Netns || !st.SSHD || !st.Reachable {
			t.Errorf("status %+v, want all true", st)
		}
	}

	loaded, err := Load(l.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Prefix != l.Prefix || len(loaded.Hosts) != 2 || loaded.Hosts[1].SSHDPid != l.Hosts[1].SSHDPid {
		t.Errorf("Load = %+v, want the lab from Up", loaded)
	}
	raw, err := os.ReadFile(filepath.Join(l.Dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	var probe map[string]any
	if err := json.Unmarshal(raw, &probe); err != nil {
		t.Fatal(err)
	}
}

func TestLab_Down_leavesNothing(t *testing.T) {
	l := StartSpec(t, Spec{Hosts: 2, PasswordUser: true})
	pids := []int{l.Hosts[0].SSHDPid, l.Hosts[1].SSHDPid}
	userName := l.User.Name
	// Another process tears the lab down from its directory alone.
	if err := Down(l.Dir); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l, pids, userName)
	// Down is idempotent, both from the directory and on the value.
	if err := Down(l.Dir); err != nil {
		t.Fatalf("second Down(dir) = %v", err)
	}
	if err := l.Down(); err != nil {
		t.Fatalf("Lab.Down after Down(dir) = %v", err)
	}
}

func assertGone(tb testing.TB, l *Lab, pids []int, userName string) {
	tb.Helper()
	for _, h := range l.Hosts {
		if netnsExists(h.Netns) {
			tb.Errorf("netns %s still exists", h.Netns)
		}
		if linkExists(h.Veth) {
			tb.Errorf("veth %s still exists", h.Veth)
		}
	}
	if linkExists(l.Bridge) {
		tb.Errorf("bridge %s still exists", l.Bridge)
	}
	for _, p := range pids {
		if processRunning(p) {
			comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "comm"))
			tb.Errorf("pid %d (%s) still running", p, bytes.TrimSpace(comm))
		}
	}
	if _, err := os.Stat(registryPath(l.Prefix)); err == nil {
		tb.Errorf("registry entry %s still exists", registryPath(l.Prefix))
	}
	if _, err := os.Stat(filepath.Join(l.Dir, stateFile)); err == nil {
		tb.Errorf("%s still exists", stateFile)
	}
	if userName != "" {
		passwd, _ := os.ReadFile("/etc/passwd")
		if strings.Contains(string(passwd), "\n"+userName+":") {
			tb.Errorf("user %s still in /etc/passwd", userName)
		}
	}
}

func TestUp_failureUndoesEverything(t *testing.T) {
	if err := CheckTools(""); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	// /bin/false stands in for an sshd that dies at start: the network and
	// the user exist by then and must be undone.
	spec := Spec{Dir: dir, Hosts: 2, PasswordUser: true, SSHD: "/bin/false", Prefix: randomPrefix(testPrefix)}
	l, err := Up(context.Background(), spec)
	if err == nil {
		l.Down()
		t.Fatal("Up with a failing sshd succeeded")
	}
	if !strings.Contains(err.Error(), "start sshd") {
		t.Errorf("err = %v, want it to say sshd failed to start", err)
	}
	planned, lerr := layout(Spec{Dir: dir, Hosts: 2, PasswordUser: true}, spec.Prefix, netip.MustParsePrefix("10.250.0.0/24"))
	if lerr != nil {
		t.Fatal(lerr)
	}
	assertGone(t, planned, nil, planned.User.Name)
}

func TestUp_refusesDirWithLab(t *testing.T) {
	l := Start(t, 1)
	_, err := Up(context.Background(), Spec{Dir: l.Dir, Hosts: 1})
	if err == nil || !strings.Contains(err.Error(), "already holds a lab") {
		t.Fatalf("err = %v, want refusal", err)
	}
	// The refusal must not have disturbed the running lab.
	if st := l.Status(context.Background()); !st[0].Reachable {
		t.Fatalf("status after refused Up: %+v", st)
	}
}

func TestDownAll_reapsOnlyLabsOfDeadOwners(t *testing.T) {
	owner := exec.Command("sleep", "300")
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Process.Kill(); owner.Wait() })
	orphan := StartSpec(t, Spec{Hosts: 1, OwnerPID: owner.Process.Pid})
	kept := Start(t, 1) // owned by this test binary, which is alive

	owner.Process.Kill()
	owner.Wait()
	pid := orphan.Hosts[0].SSHDPid

	removed, err := DownAll(testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, orphan.Prefix) || slices.Contains(removed, kept.Prefix) {
		t.Fatalf("DownAll removed %v, want %s and not %s", removed, orphan.Prefix, kept.Prefix)
	}
	assertGone(t, orphan, []int{pid}, "")
	if st := kept.Status(context.Background()); !st[0].Reachable {
		t.Fatalf("live lab hurt by DownAll: %+v", st)
	}
}
