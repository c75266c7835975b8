package bridge

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster/lab"
	"github.com/vtcluster/vtcluster/internal/testbin"
	"github.com/vtcluster/vtcluster/internal/testguest"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// vmLab is a two-host lab whose hosts each have a bridge br0 holding
// their uplink and address (so a guest on a tap there is on the lab's
// network), a filesystem pool both hosts reach (lab hosts share this
// machine's filesystem) and a linux_bridge pool on br0, with agents
// running and the pools attached.
type vmLab struct {
	*cliCluster
	guest testguest.Guest
	pool  string
}

func newVMLab(t *testing.T) *vmLab {
	t.Helper()
	g := testguest.Get(t)
	c := newCLICluster(t, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	for i, h := range c.lab.Hosts {
		for _, argv := range [][]string{
			{"ip", "link", "add", "br0", "type", "bridge"},
			{"ip", "link", "set", "eth0", "master", "br0"},
			{"ip", "addr", "del", h.Address + "/24", "dev", "eth0"},
			{"ip", "addr", "add", h.Address + "/24", "dev", "br0"},
			{"ip", "link", "set", "br0", "up"},
		} {
			if _, err := c.lab.Exec(ctx, i, argv...); err != nil {
				t.Fatal(err)
			}
		}
	}
	pool := filepath.Join(t.TempDir(), "pool")
	var cfg map[string]any
	data, _ := os.ReadFile(c.config)
	json.Unmarshal(data, &cfg)
	cfg["pools"] = map[string]any{
		"storage": map[string]any{"shared": map[string]any{"type": "filesystem", "path": pool}},
		"net": map[string]any{"br": map[string]any{"type": "linux_bridge",
			"switch": map[string]any{"node1": map[string]any{"ifname": "br0"}, "node2": map[string]any{"ifname": "br0"}}}},
	}
	data, _ = json.Marshal(cfg)
	os.WriteFile(c.config, data, 0o600)
	c.bootstrap(t)
	c.mustCLI(t, "hooks", "pre-tests", "--job-id", "job-vm", "--job-logdir", t.TempDir())
	t.Cleanup(func() {
		c.cli(t, "hooks", "post-tests", "--job-id", "job-vm")
		c.cli(t, "agents", "stop")
	})
	return &vmLab{cliCluster: c, guest: g, pool: pool}
}

// migrationSpec is the example's test, with this machine's guest.
func (v *vmLab) migrationSpec(t *testing.T, migrate map[string]any) string {
	t.Helper()
	ping := func(on ...string) map[string]any {
		return map[string]any{"on": on, "run": []string{"ping", "-c", "1", "-w", "20", "-i", "0.2", "{vm1.address}"}, "timeout": 30}
	}
	steps := []any{
		map[string]any{"vm": "vm1", "wait_console": "vtguest: net up", "timeout": 120},
		map[string]any{"vm": "vm1", "wait_console": `tick 2 `, "timeout": 30},
		ping("src", "dst"),
		map[string]any{"vm": "vm1", "qmp": "query-status", "expect": map[string]any{"status": "running", "running": true}},
		migrate,
		map[string]any{"vm": "vm1", "wait_console": `tick [0-9]+ `, "timeout": 30},
		// The guest prints a tick, then writes it: once the next tick is
		// printed, the first one after the migration is on the volume.
		map[string]any{"vm": "vm1", "wait_console": `tick [0-9]+ `, "timeout": 30},
		map[string]any{"vm": "vm1", "qmp": "query-status", "expect": map[string]any{"status": "running"}},
		ping("dst", "src"),
		map[string]any{"on": "dst", "run": []string{"qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -v 0 48", "{dst.resource_disk}"}, "timeout": 30},
	}
	spec := map[string]any{
		"name":  "migrate",
		"nodes": map[string]any{"src": nil, "dst": nil},
		"resources": []any{
			map[string]any{"name": "disk", "type": "volume", "on": []string{"src", "dst"}, "allocate": "src",
				"params": map[string]any{"image_size": "64M", "image_format": "qcow2",
					"volume_pool_selectors": "[{'key': 'type', 'operator': '==', 'values': 'filesystem'}]"}},
			map[string]any{"name": "net", "type": "port", "on": "*", "params": map[string]any{"network_type": "linux_bridge"}},
		},
		"vms": []any{map[string]any{
			"name": "vm1", "on": "src", "migrate_to": "dst", "memory_mib": 256, "machine": "q35",
			"kernel": v.guest.Vmlinux, "initrd": v.guest.Initrd, "cmdline": testguest.Cmdline("{vm1.cidr}"),
			"address": map[string]any{"from": "src", "host": 200},
			"disks":   []any{map[string]any{"resource": "disk"}},
			"nics":    []any{map[string]any{"port": "net"}},
		}},
		"body":    map[string]any{"steps": steps},
		"timeout": 300,
	}
	data, _ := json.MarshalIndent(spec, "", "  ")
	p := filepath.Join(t.TempDir(), "vm.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runnerCmd is the runner as Avocado starts it, on the lab's state.
func (v *vmLab) runnerCmd(t *testing.T, spec, out, id string) *exec.Cmd {
	cmd := exec.Command(testbin.RunnerPath(t), "task-run", "-i", id, "-j", "job-vm", "-k", "multihost", "-u", spec,
		"test=migrate", "output_dir="+out)
	cmd.Env = append(os.Environ(), "VTCLUSTER_STATE_DIR="+v.stateDir)
	return cmd
}

var (
	finishedRE = regexp.MustCompile(`\{'result': '(\w+)'(?:, 'fail_reason': (?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"))?.*'status': 'finished'`)
	tickRE     = regexp.MustCompile(`tick (\d+) up=([0-9.]+)`)
	hexLineRE  = regexp.MustCompile(`[0-9a-f]{8}:  ((?:[0-9a-f]{2} ){16})`)
)

func finished(t *testing.T, stdout string) (result, reason string) {
	t.Helper()
	m := finishedRE.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no finished message in the runner's output:\n%s", tail(stdout, 4000))
	}
	return m[1], m[2] + m[3]
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func ticks(t *testing.T, path string) [][2]float64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]float64
	for _, m := range tickRE.FindAllStringSubmatch(string(data), -1) {
		n, _ := strconv.ParseFloat(m[1], 64)
		up, _ := strconv.ParseFloat(m[2], 64)
		out = append(out, [2]float64{n, up})
	}
	return out
}

// assertNothingLeft: no QEMU in either host, no tap on either bridge, no
// volume in the pool, no VM directory in either agent's data dir.
func (v *vmLab) assertNothingLeft(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	for i, h := range v.lab.Hosts {
		if pids := qemuPIDs(t, h); len(pids) > 0 {
			t.Errorf("QEMU left on %s: %v", h.Name, pids)
		}
		out, err := v.lab.Exec(ctx, i, "ip", "-o", "link", "show", "master", "br0")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line != "" && !strings.Contains(line, " eth0@") {
				t.Errorf("link left on %s's br0: %s", h.Name, line)
			}
		}
		dir := filepath.Join(v.lab.Dir, "agents", h.Name)
		if dirs, _ := filepath.Glob(filepath.Join(dir, "*", "vm")); len(dirs) != 1 {
			t.Errorf("%s: want one agent data dir with a vm directory, found %v", dir, dirs)
		}
		if matches, _ := filepath.Glob(filepath.Join(dir, "*", "vm", "*")); len(matches) > 0 {
			t.Errorf("VM files left in %s's agent dir: %v", h.Name, matches)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(v.pool, "*", "*.qcow2")); len(files) > 0 {
		t.Errorf("volumes left in the pool: %v", files)
	}
	if files, _ := filepath.Glob(filepath.Join(v.pool, "*.qcow2")); len(files) > 0 {
		t.Errorf("volumes left in the pool: %v", files)
	}
}

func qemuPIDs(t *testing.T, h lab.Host) []int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "pids", h.Netns).Output()
	if err != nil {
		t.Fatalf("ip netns pids %s: %v", h.Netns, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		comm, err := os.ReadFile("/proc/" + f + "/comm")
		if err == nil && strings.HasPrefix(string(comm), "qemu-system") {
			pid, _ := strconv.Atoi(f)
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestVM_liveMigrationBetweenLabHosts is the scenario end to end
// through the runner: the guest boots on src from a qcow2 volume on the
// shared pool with a tap on src's bridge, both nodes ping it, it is
// migrated to dst, where its counter and uptime go on, its disk writes
// land in the same volume and it answers ping; the test passes with the
// migration figures and leaves nothing behind.
func TestVM_liveMigrationBetweenLabHosts(t *testing.T) {
	v := newVMLab(t)
	spec := v.migrationSpec(t, map[string]any{"vm": "vm1", "migrate": "dst", "max_bandwidth": 1000000000, "downtime_limit_ms": 300})
	out := filepath.Join(t.TempDir(), "1-migrate")
	stdout, err := v.runnerCmd(t, spec, out, "1-migrate").CombinedOutput()
	if err != nil {
		t.Fatalf("runner: %v\n%s", err, tail(string(stdout), 4000))
	}
	if res, reason := finished(t, string(stdout)); res != "pass" {
		t.Fatalf("result %s: %s\n%s", res, reason, tail(string(stdout), 6000))
	}

	src := ticks(t, filepath.Join(out, "cluster", "src", "vm1.console"))
	dst := ticks(t, filepath.Join(out, "cluster", "dst", "vm1.console"))
	if len(src) < 2 || len(dst) < 1 {
		t.Fatalf("ticks on src %v, on dst %v", src, dst)
	}
	last, first := src[len(src)-1], dst[0]
	if first[0] != last[0]+1 || first[1] <= last[1] {
		t.Errorf("the counter and uptime do not go on: src ends at %v, dst starts at %v", last, first)
	}
	// What the guest wrote to sector 0 after the migration, read from the
	// volume on dst by the last step.
	var disk []byte
	for _, m := range hexLineRE.FindAllStringSubmatch(string(stdout), -1) {
		b, _ := hex.DecodeString(strings.ReplaceAll(m[1], " ", ""))
		disk = append(disk, b...)
	}
	dm := tickRE.FindStringSubmatch(string(disk))
	if dm == nil {
		t.Fatalf("no tick on the volume: %q", disk)
	}
	if n, _ := strconv.ParseFloat(dm[1], 64); n <= last[0] {
		t.Errorf("the volume holds %q, written before the migration (src's last tick %v)", dm[0], last[0])
	}

	var figures struct {
		Migrations []struct {
			VM, From, To, Status string
			TotalTimeMs          int64 `json:"total_time_ms"`
			DowntimeMs           int64 `json:"downtime_ms"`
			Transferred          int64
		}
	}
	data, err := os.ReadFile(filepath.Join(out, "vm-migrations.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(data, &figures)
	if len(figures.Migrations) != 1 {
		t.Fatalf("vm-migrations.json: %s", data)
	}
	m := figures.Migrations[0]
	if m.VM != "vm1" || m.From != "src" || m.To != "dst" || m.Status != "completed" || m.TotalTimeMs <= 0 || m.Transferred <= 0 {
		t.Errorf("figures: %+v", m)
	}
	t.Logf("migration: total %d ms, downtime %d ms, %d bytes", m.TotalTimeMs, m.DowntimeMs, m.Transferred)
	if testing.Verbose() {
		for _, l := range regexp.MustCompile(`[^\x27]*vm vm1[^\x27]*`).FindAllString(string(stdout), -1) {
			t.Log(l)
		}
	}
	for _, want := range []string{`vm vm1: running on src \(node\d\), QEMU pid \d+, accel tcg`, "migration completed: total [1-9]",
		`source on src \(node\d\) stopped`, `vm vm1 on dst \(node\d\): stopped \(quit, was running\)`} {
		if !regexp.MustCompile(want).Match(stdout) {
			t.Errorf("the test's log lacks %q", want)
		}
	}
	if events, err := os.ReadFile(filepath.Join(out, "cluster", "src", "vm1.events.jsonl")); err != nil || !strings.Contains(string(events), `"MIGRATION"`) {
		t.Errorf("src's QMP event log: %v %s", err, events)
	}
	// The teardown listed both nodes (each vm.list is timed); a test of
	// steps alone on the same nodes cannot own VMs and lists none.
	if n := timingSpans(t, out)["vms: list"]; n != 2 {
		t.Errorf("the VM test listed %d nodes' VMs, want 2", n)
	}
	plain := filepath.Join(t.TempDir(), "plain.json")
	os.WriteFile(plain, []byte(`{"name": "migrate", "nodes": {"src": null, "dst": null}, "body": {"steps": [{"on": "*", "run": ["true"]}]}}`), 0o644)
	plainOut := filepath.Join(t.TempDir(), "2-plain")
	if stdout, err := v.runnerCmd(t, plain, plainOut, "2-plain").CombinedOutput(); err != nil || !strings.Contains(string(stdout), "'result': 'pass'") {
		t.Fatalf("a test without VMs: %v\n%s", err, tail(string(stdout), 4000))
	}
	if spans := timingSpans(t, plainOut); spans["vms: list"] != 0 || spans["vms teardown"] != 1 {
		t.Errorf("a test without VMs: timing %v, want a vms teardown without vms: list", spans)
	}
	v.assertNothingLeft(t)
}

// timingSpans counts the spans of a test's timing.json by name.
func timingSpans(t *testing.T, out string) map[string]int {
	t.Helper()
	var timing struct{ Spans []struct{ Name string } }
	data, err := os.ReadFile(filepath.Join(out, "timing.json"))
	if err != nil || json.Unmarshal(data, &timing) != nil {
		t.Fatalf("timing.json: %v\n%s", err, data)
	}
	n := map[string]int{}
	for _, s := range timing.Spans {
		n[s.Name]++
	}
	return n
}

// TestVM_migrationThatCannotConnect: the destination listens elsewhere;
// the test fails naming the VM, both nodes and QMP's error, and both
// QEMUs are stopped.
func TestVM_migrationThatCannotConnect(t *testing.T) {
	v := newVMLab(t)
	spec := v.migrationSpec(t, map[string]any{"vm": "vm1", "migrate": "dst", "port": 1})
	out := filepath.Join(t.TempDir(), "1-migrate")
	stdout, _ := v.runnerCmd(t, spec, out, "1-migrate").CombinedOutput()
	res, reason := finished(t, string(stdout))
	if res != "fail" {
		t.Fatalf("result %s (%s), want fail", res, reason)
	}
	t.Logf("fail reason: %s", reason)
	for _, want := range []string{"vm vm1", `src \(node\d\)`, `dst \(node\d\)`, "failed", "Connection refused"} {
		if !regexp.MustCompile(want).MatchString(reason) {
			t.Errorf("fail reason %q lacks %q", reason, want)
		}
	}
	for _, tag := range []string{"src", "dst"} {
		if !strings.Contains(string(stdout), "vm vm1 on "+tag) {
			t.Errorf("the log does not say the VM on %s was stopped", tag)
		}
	}
	v.assertNothingLeft(t)
}

// TestVM_interruptedAndKilledRunnersLeaveNoQEMU: SIGINT during the
// migration test stops its VMs; a runner killed with SIGKILL leaves its
// VM to the next allocation's hand-over, which stops it.
func TestVM_interruptedAndKilledRunnersLeaveNoQEMU(t *testing.T) {
	v := newVMLab(t)
	spec := v.migrationSpec(t, map[string]any{"vm": "vm1", "migrate": "dst"})
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		out := filepath.Join(t.TempDir(), "run")
		cmd := v.runnerCmd(t, spec, out, "1-"+sig.String())
		var buf testutil.SyncBuffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the VM running", func() bool { return strings.Contains(buf.String(), "vm vm1: running on src") })
		cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(hangGuard):
			cmd.Process.Kill()
			t.Fatalf("runner did not end after %v", sig)
		}
		if sig == syscall.SIGINT {
			if res, _ := finished(t, buf.String()); res != "interrupted" {
				t.Errorf("after SIGINT: result %s", res)
			}
			defer func() {
				if t.Failed() {
					t.Logf("runner output after SIGINT:\n%s", buf.String())
				}
			}()
			waitFor(t, "no QEMU after SIGINT", func() bool {
				return len(qemuPIDs(t, v.lab.Hosts[0]))+len(qemuPIDs(t, v.lab.Hosts[1])) == 0
			})
			continue
		}
		if len(qemuPIDs(t, v.lab.Hosts[0]))+len(qemuPIDs(t, v.lab.Hosts[1])) == 0 {
			t.Fatal("precondition: the killed runner's VM should still run until the next allocation")
		}
		// The next test on these nodes: its allocation hands them over.
		next := filepath.Join(t.TempDir(), "next")
		stdout, _ := v.runnerCmd(t, spec, next, "2-next").CombinedOutput()
		if !strings.Contains(string(stdout), "left by an earlier test") {
			t.Errorf("the next test's log does not report the hand-over:\n%s", tail(string(stdout), 3000))
		}
	}
	v.assertNothingLeft(t)
}

// TestVM_testTimeoutStopsTheVM: the test's timeout ends a step waiting on
// the console; the teardown still stops the VM and removes its resources.
func TestVM_testTimeoutStopsTheVM(t *testing.T) {
	v := newVMLab(t)
	path := v.migrationSpec(t, map[string]any{"vm": "vm1", "migrate": "dst"})
	var spec map[string]any
	data, _ := os.ReadFile(path)
	json.Unmarshal(data, &spec)
	spec["timeout"] = 15
	spec["body"] = map[string]any{"steps": []any{map[string]any{"vm": "vm1", "wait_console": "never printed", "timeout": 120}}}
	data, _ = json.Marshal(spec)
	os.WriteFile(path, data, 0o644)
	out := filepath.Join(t.TempDir(), "1-migrate")
	stdout, _ := v.runnerCmd(t, path, out, "1-migrate").CombinedOutput()
	if res, reason := finished(t, string(stdout)); res != "interrupted" || !strings.Contains(reason, "timeout") {
		t.Fatalf("result %s (%s), want interrupted by the test's timeout", res, reason)
	}
	if !regexp.MustCompile(`vm vm1 on src \(node\d\): stopped \(quit, was running\)`).Match(stdout) {
		t.Errorf("the log does not say the VM was stopped:\n%s", tail(string(stdout), 3000))
	}
	if _, err := os.Stat(filepath.Join(out, "cluster", "src", "vm1.console")); err != nil {
		t.Errorf("the console was not collected: %v", err)
	}
	v.assertNothingLeft(t)
}

// TestCLI_vm: `vtcluster vm` drives a guest on a lab host: start from a
// spec file, wait for the console, QMP, console, list, stop and remove,
// each with --json; bad input is a usage error that says what to give.
func TestCLI_vm(t *testing.T) {
	g := testguest.Get(t)
	c := newCLICluster(t, 1, nil)
	c.bootstrap(t)
	c.mustCLI(t, "agents", "start")
	t.Cleanup(func() { c.cli(t, "agents", "stop") })
	node := c.lab.Hosts[0].Name
	testutil.NeedCommand(t, "qemu-img", "qemu-utils", "the guest's disk is a qcow2 image")
	disk := filepath.Join(t.TempDir(), "d.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	spec := filepath.Join(t.TempDir(), "vm.json")
	data, _ := json.Marshal(map[string]any{"name": "cli1", "owner": "me", "accel": "tcg", "kernel": g.Vmlinux, "initrd": g.Initrd,
		"cmdline": testguest.Cmdline("10.0.0.9/24"), "disks": []any{map[string]any{"path": disk, "format": "qcow2"}}})
	os.WriteFile(spec, data, 0o644)

	started := jsonOut(t, c.mustCLI(t, "vm", "start", node, spec, "--json"))
	if started.Get("name").Str != "cli1" || started.Get("status").Str != "running" || started.Get("pid").Int() <= 0 {
		t.Fatalf("vm start: %s", started.Raw)
	}
	if line := c.mustCLI(t, "vm", "wait-console", node, "cli1", `tick 1 `, "--wait", "90"); !strings.HasPrefix(line, "tick 1 up=") {
		t.Errorf("vm wait-console printed %q", line)
	}
	if st := jsonOut(t, c.mustCLI(t, "vm", "qmp", node, "cli1", "query-status")); st.Get("status").Str != "running" {
		t.Errorf("vm qmp query-status: %s", st.Raw)
	}
	if code, _, errOut := c.cli(t, "vm", "qmp", node, "cli1", "query-nothing"); code != 1 || !strings.Contains(errOut, "QMPError: vm cli1: CommandNotFound") {
		t.Errorf("unknown QMP command: exit %d: %s", code, errOut)
	}
	if con := c.mustCLI(t, "vm", "console", node, "cli1"); !strings.Contains(con, "vtguest: net up ip=10.0.0.9/24") {
		t.Errorf("vm console: %q", tail(con, 500))
	}
	list := jsonOut(t, c.mustCLI(t, "vm", "list", node, "--json")).Array()
	if len(list) != 1 || list[0].Get("owner").Str != "me" || !list[0].Get("running").Bool() {
		t.Errorf("vm list: %v", list)
	}
	if code, _, errOut := c.cli(t, "vm", "wait-console", node, "cli1", "never printed", "--wait", "1"); code != 1 || !strings.Contains(errOut, "did not appear") {
		t.Errorf("wait-console without a match: exit %d: %s", code, errOut)
	}
	stopped := jsonOut(t, c.mustCLI(t, "vm", "stop", node, "cli1", "--powerdown-timeout", "0", "--remove", "--json"))
	if stopped.Get("how").Str != "quit" {
		t.Errorf("vm stop: %s", stopped.Raw)
	}
	if list := jsonOut(t, c.mustCLI(t, "vm", "list", node, "--json")).Array(); len(list) != 0 {
		t.Errorf("vm list after stop --remove: %v", list)
	}
	if pids := qemuPIDs(t, c.lab.Hosts[0]); len(pids) != 0 {
		t.Errorf("QEMU left: %v", pids)
	}
	if code, _, errOut := c.cli(t, "vm", "status", node); code != 2 || !strings.Contains(errOut, "want NODE|TAG NAME") {
		t.Errorf("vm status without NAME: exit %d: %s", code, errOut)
	}
	if code, _, errOut := c.cli(t, "vm", "migrate", "cli1", "--from", node, "--to", node); code != 2 || !strings.Contains(errOut, "give --spec") {
		t.Errorf("vm migrate without a spec: exit %d: %s", code, errOut)
	}
	// A VM dies with its agent (SIGKILL), and the next agent starts with
	// an empty vm directory.
	c.mustCLI(t, "vm", "start", node, spec)
	h := c.lab.Hosts[0]
	if len(qemuPIDs(t, h)) != 1 {
		t.Fatal("precondition: the VM runs")
	}
	for _, pid := range agentPIDs(t, h) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	waitFor(t, "QEMU gone with its agent", func() bool { return len(qemuPIDs(t, h)) == 0 })
	c.mustCLI(t, "agents", "start")
	if list := jsonOut(t, c.mustCLI(t, "vm", "list", node, "--json")).Array(); len(list) != 0 {
		t.Errorf("vm list after the agent's restart: %v", list)
	}
	if dirs, _ := filepath.Glob(filepath.Join(c.lab.Dir, "agents", node, "*", "vm")); len(dirs) != 1 {
		t.Errorf("want one agent vm directory, found %v", dirs)
	}
	if files, _ := filepath.Glob(filepath.Join(c.lab.Dir, "agents", node, "*", "vm", "*")); len(files) != 0 {
		t.Errorf("VM files left after the agent's restart: %v", files)
	}
}
