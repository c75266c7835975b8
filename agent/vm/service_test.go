package vm_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/agent/pgroup"
	"github.com/vtcluster/vtcluster/agent/vm"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
	"github.com/vtcluster/vtcluster/internal/testguest"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

type fixture struct {
	t     *testing.T
	procs *agent.ProcessService
	svc   *vm.Service
	m     map[string]agent.Method
	pm    map[string]agent.Method
	dir   string // the vm service's Dir
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	procs, err := agent.NewProcessService(agent.ProcessConfig{RecordFile: filepath.Join(dir, agent.ProcessRecordName)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := vm.NewService(vm.Config{Dir: filepath.Join(dir, "vm"), Procs: procs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		svc.Close()
		procs.Close()
	})
	return &fixture{t: t, procs: procs, svc: svc, m: svc.Methods(), pm: procs.Methods(), dir: filepath.Join(dir, "vm")}
}

func (f *fixture) call(method string, args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return f.m[method](ctx, agent.Args(args))
}

func (f *fixture) must(method string, args ...any) any {
	f.t.Helper()
	v, err := f.call(method, args...)
	if err != nil {
		f.t.Fatalf("vm.%s: %v", method, err)
	}
	return v
}

func decode[T any](t *testing.T, v any) T {
	t.Helper()
	out, err := vm.Decode[T](v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func specJSON(t *testing.T, s vm.Spec) string {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func qcow2(t *testing.T) string {
	t.Helper()
	testutil.NeedCommand(t, "qemu-img", "qemu-utils", "the guest's disk is a qcow2 image")
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r, err := pgroup.Run(ctx, []string{"qemu-img", "create", "-q", "-f", "qcow2", p, "16M"}, pgroup.Options{}); err != nil || r.ExitCode != 0 {
		t.Fatalf("qemu-img create: %v (exit %d)", err, r.ExitCode)
	}
	return p
}

func guestSpec(t *testing.T, name, disk string) vm.Spec {
	g := testguest.Get(t)
	return vm.Spec{Name: name, Owner: "p1", Accel: "tcg", Machine: "q35", MemoryMiB: 256,
		Kernel: g.Vmlinux, Initrd: g.Initrd, Cmdline: testguest.Cmdline("10.0.0.5/24"),
		Disks: []vm.Disk{{Path: disk, Format: "qcow2"}}}
}

func faultOf(t *testing.T, err error) *xmlrpc.Fault {
	t.Helper()
	var f *xmlrpc.Fault
	if !errors.As(err, &f) {
		t.Fatalf("want a fault, got %v", err)
	}
	return f
}

// A VM boots, its console and QMP answer, a local live migration keeps
// the guest's counter going on the destination, and stop leaves nothing.
func TestVM_BootConsoleQMPMigrateStop(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU guests")
	}
	f := newFixture(t)
	disk := qcow2(t)
	src := guestSpec(t, "src", disk)
	st := decode[vm.Started](t, f.must("start", specJSON(t, src)))
	if st.Accel != "tcg" || st.Pid <= 0 || st.Status != "running" {
		t.Fatalf("start: %+v", st)
	}
	// Only the agent's user reaches the QMP socket and the console.
	for _, d := range []string{f.dir, filepath.Join(f.dir, "src")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want mode 0700", d, fi.Mode(), err)
		}
	}
	// A second VM of the same name is refused while the first runs.
	if _, err := f.call("start", specJSON(t, src)); faultOf(t, err).ExcType != "FileExistsError" {
		t.Fatalf("second start: %v", err)
	}
	match := decode[vm.ConsoleMatch](t, f.must("wait_console", "src", `tick [2-9]`, 60))
	if !match.Matched {
		t.Fatalf("no tick on the console within 60 s")
	}
	ret := f.must("qmp", "src", "query-status").(string)
	if !strings.Contains(ret, `"running"`) {
		t.Fatalf("query-status: %s", ret)
	}
	if _, err := f.call("qmp", "src", "no-such-command"); !strings.Contains(faultOf(t, err).ExcValue, "CommandNotFound") {
		t.Fatalf("unknown QMP command: %v", err)
	}

	dst := src
	dst.Name, dst.Incoming = "dst", "tcp:127.0.0.1:0"
	dstSt := decode[vm.Started](t, f.must("start", specJSON(t, dst)))
	if dstSt.Status != "inmigrate" || !strings.HasPrefix(dstSt.Incoming, "tcp:127.0.0.1:") || strings.HasSuffix(dstSt.Incoming, ":0") {
		t.Fatalf("destination: %+v", dstSt)
	}
	mig := decode[vm.Migration](t, f.must("migrate", "src", dstSt.Incoming, `{"max_bandwidth": 1000000000, "downtime_limit_ms": 300}`))
	if mig.Status != "completed" || mig.TotalTimeMs <= 0 || mig.Transferred <= 0 {
		t.Fatalf("migration: %+v", mig)
	}
	srcStatus := decode[vm.Status](t, f.must("status", "src"))
	if srcStatus.Status != "postmigrate" {
		t.Fatalf("source after migration: %+v", srcStatus)
	}
	// The destination may still be switching over for a moment.
	var dstStatus vm.Status
	for i := 0; i < 100; i++ {
		if dstStatus = decode[vm.Status](t, f.must("status", "dst")); dstStatus.Status == "running" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dstStatus.Status != "running" {
		t.Fatalf("destination after migration: %+v", dstStatus)
	}
	// The counter goes on where the source stopped.
	srcCon := decode[vm.ConsoleChunk](t, f.must("console", "src"))
	last := lastTick(string(srcCon.Data))
	if last == "" {
		t.Fatalf("source console has no tick: %q", srcCon.Data)
	}
	next := decode[vm.ConsoleMatch](t, f.must("wait_console", "dst", `tick [0-9]+`, 30))
	if !next.Matched || next.Match == "tick 1" {
		t.Fatalf("destination console after %q: %+v", last, next)
	}
	events := decode[vm.ConsoleChunk](t, f.must("events", "src"))
	if !strings.Contains(string(events.Data), `"MIGRATION"`) && !strings.Contains(string(events.Data), `"STOP"`) {
		t.Fatalf("source event log: %s", events.Data)
	}

	// dst gets a second for an ACPI powerdown, which the busybox guest
	// ignores: stop goes on to quit.
	for name, grace := range map[string]float64{"src": 0, "dst": 1} {
		stopped := decode[vm.Stopped](t, f.must("stop", name, grace))
		if stopped.How != "quit" {
			t.Fatalf("stop %s: %+v", name, stopped)
		}
		if v := f.must("remove", name); v != true {
			t.Fatalf("remove %s: %v", name, v)
		}
	}
	if l := f.must("list").([]any); len(l) != 0 {
		t.Fatalf("list after remove: %v", l)
	}
	assertGone(t, dstSt.Pid, st.Pid)
}

func lastTick(console string) string {
	i := strings.LastIndex(console, "tick ")
	if i < 0 {
		return ""
	}
	return strings.Fields(console[i:])[1]
}

func assertGone(t *testing.T, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if _, err := os.Stat(filepath.Join("/proc", itoa(pid))); err == nil {
			if b, _ := os.ReadFile(filepath.Join("/proc", itoa(pid), "stat")); !strings.Contains(string(b), ") Z ") {
				t.Errorf("QEMU pid %d still runs", pid)
			}
		}
	}
}

func itoa(n int) string { return jsonInt(n) }

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

// The hand-over (process.stop_others) stops the VMs of earlier owners,
// and the vm service forgets them and removes their files.
func TestVM_HandOverStopsOtherOwnersVMs(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU guests")
	}
	f := newFixture(t)
	s := guestSpec(t, "old", qcow2(t))
	st := decode[vm.Started](t, f.must("start", specJSON(t, s)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := f.pm["stop_others"](ctx, agent.Args{"p2"})
	if err != nil {
		t.Fatal(err)
	}
	l := out.([]any)
	if len(l) != 1 || !strings.Contains(jsonOf(l[0]), `"-name","old"`) {
		t.Fatalf("stop_others stopped %v", l)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := f.call("status", "old"); err != nil && faultOf(t, err).ExcType == "KeyError" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the handed-over VM is still listed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	assertGone(t, st.Pid)
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

// Bad input gets an error that says what to do, before any QEMU starts.
func TestVM_BadSpecs(t *testing.T) {
	f := newFixture(t)
	cases := []struct{ spec, want string }{
		{`{"name": "a b", "kernel": "/k"}`, "name"},
		{`{"name": "a", "kernel": "/k", "memory": 5}`, `unknown field "memory"`},
		{`{"name": "a"}`, "nothing to boot"},
		{`{"name": "a", "kernel": "k"}`, "absolute path"},
		{`{"name": "a", "disks": [{"path": "/d", "format": "vmdk"}]}`, "raw or qcow2"},
		{`{"name": "a", "disks": [{"path": "/d"}], "nics": [{"ifname": "t,x", "mac": "52:54:00:00:00:01"}]}`, "interface name"},
		{`{"name": "a", "disks": [{"path": "/d"}], "nics": [{"ifname": "t0", "mac": "5254"}]}`, "MAC"},
		{`{"name": "a", "disks": [{"path": "/d"}], "incoming": "exec:sh"}`, "tcp:HOST:PORT"},
		{`{"name": "a", "disks": [{"path": "/d"}], "accel": "xen"}`, "auto, kvm or tcg"},
	}
	for _, c := range cases {
		_, err := f.call("start", c.spec)
		if fl := faultOf(t, err); fl.ExcType != "ValueError" || !strings.Contains(fl.ExcValue, c.want) {
			t.Errorf("start(%s): %v; want ValueError with %q", c.spec, err, c.want)
		}
	}
	if _, err := f.call("status", "nope"); faultOf(t, err).ExcType != "KeyError" {
		t.Errorf("status of an unknown VM: %v", err)
	}
	if _, err := f.call("start", `{"name": "a", "arch": "s390x", "disks": [{"path": "/d"}]}`); err == nil ||
		!strings.Contains(err.Error(), "qemu-system-s390x") {
		t.Errorf("start of an arch without QEMU: %v", err)
	} else if _, statErr := os.Stat("/usr/bin/qemu-system-s390x"); statErr != nil && !strings.Contains(err.Error(), "install the qemu-system-s390x package") {
		t.Errorf("missing QEMU error does not name the package: %v", err)
	}
}

// QEMU refusing its command line (a disk that does not exist) is a fault
// carrying QEMU's own words, and nothing is left running.
func TestVM_QEMUFailsToStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts QEMU")
	}
	f := newFixture(t)
	s := guestSpec(t, "bad", "/nonexistent/disk.qcow2")
	_, err := f.call("start", specJSON(t, s))
	if fl := faultOf(t, err); fl.ExcType != "RuntimeError" || !strings.Contains(fl.ExcValue, "/nonexistent/disk.qcow2") {
		t.Fatalf("start with a missing disk: %v", err)
	}
	if l := f.must("list").([]any); len(l) != 0 {
		t.Fatalf("list after a failed start: %v", l)
	}
}

// A QEMU that answers nothing (stopped with SIGSTOP) is killed.
func TestVM_StopKillsAnUnresponsiveQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU guests")
	}
	f := newFixture(t)
	st := decode[vm.Started](t, f.must("start", specJSON(t, guestSpec(t, "hung", qcow2(t)))))
	if err := syscall.Kill(st.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := decode[vm.Stopped](t, f.must("stop", "hung", 0))
	if stopped.How != "killed" {
		t.Fatalf("stop of a hung QEMU: %+v", stopped)
	}
	assertGone(t, st.Pid)
}
