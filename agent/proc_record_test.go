//go:build linux

package agent

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent/pgroup"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

func TestProcessService_stopOthers(t *testing.T) {
	s, log := newProcSvc(t, nil)
	start := func(owner string) string {
		opts := map[string]any{}
		if owner != "" {
			opts["owner"] = owner
		}
		return mustCall(t, s, "start", procArgv("sleep", "600"), opts).(string)
	}
	old, mine, unowned := start("partition-old"), start("partition-new"), start("")
	pidOf := func(id string) int { return procMember(t, mustCall(t, s, "poll", id), "pid").(int) }
	oldPid, unownedPid := pidOf(old), pidOf(unowned)

	got := mustCall(t, s, "stop_others", "partition-new").([]any)
	if len(got) != 2 {
		t.Fatalf("stopped %v, want the other owner's and the unowned process", got)
	}
	if procMember(t, got[0], "id") != old || procMember(t, got[0], "owner") != "partition-old" ||
		procMember(t, got[1], "id") != unowned || procMember(t, got[1], "owner") != "" {
		t.Fatalf("stopped %v", got)
	}
	if code := procMember(t, got[0], "exit_code"); code != -int(syscall.SIGTERM) {
		t.Fatalf("exit_code %v, want -SIGTERM", code)
	}
	procWantGroupGone(t, oldPid)
	procWantGroupGone(t, unownedPid)
	if running := procMember(t, mustCall(t, s, "poll", mine), "running"); running != true {
		t.Fatal("the new owner's process was stopped")
	}
	if !slicesContainsPrefix(log.Lines(), "WARN stopping process group "+strconv.Itoa(oldPid)) {
		t.Fatalf("no stop logged:\n%s", strings.Join(log.Lines(), "\n"))
	}
	if got := mustCall(t, s, "stop_others", "partition-new").([]any); len(got) != 0 {
		t.Fatalf("second call stopped %v", got)
	}
}

func TestProcessService_stopOthers_runInFlight(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := callMethod(t, s, "run", procArgv("sleep", "600"), map[string]any{"owner": "a"})
		errc <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := mustCall(t, s, "stop_others", "b").([]any)
		if len(got) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run call never showed up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "handed over to owner 'b'") {
		t.Fatalf("run ended with %v", err)
	}
}

func TestProcessService_ownerOption(t *testing.T) {
	s, _ := newProcSvc(t, nil)
	_, err := callMethod(t, s, "run", procArgv("true"), map[string]any{"owner": 3})
	procWantFault(t, err, "TypeError", "option 'owner' must be str, not int")
	_, err = callMethod(t, s, "run", procArgv("true"), map[string]any{"owner": strings.Repeat("x", 300)})
	procWantFault(t, err, "ValueError", "option 'owner' must be at most 256 bytes")
	_, err = callMethod(t, s, "stop_others")
	if err == nil {
		t.Fatal("stop_others without an owner accepted")
	}
}

func slicesContainsPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// deadAgentEnv makes the test binary play an agent that is then SIGKILLed.
const deadAgentEnv = "VTCLUSTER_TEST_DEAD_AGENT_RECORD"

// TestProcessRecord_deadAgentHelper is the agent of
// TestProcessRecord_newAgentStopsWhatADeadOneLeft; alone it does nothing.
func TestProcessRecord_deadAgentHelper(t *testing.T) {
	record := os.Getenv(deadAgentEnv)
	if record == "" {
		t.Skip("helper process only")
	}
	s, err := NewProcessService(ProcessConfig{RecordFile: record}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The leader waits on a grandchild in its group: the parent-death
	// signal reaches only the leader, the record has to do the rest.
	// echo is a shell builtin writing the line at once, and the reader
	// waits for its newline; an mv here would be a second process of the
	// group that may still be exiting when the agent is killed.
	pidFile := record + ".pid"
	if _, err := callMethod(t, s, "start", procArgv("sh", "-c", `sleep 600 & echo $! > "$0"; wait`, pidFile), map[string]any{"owner": "p1"}); err != nil {
		t.Fatal(err)
	}
	select {} // until SIGKILLed
}

func TestProcessRecord_newAgentStopsWhatADeadOneLeft(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, ProcessRecordName)
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcessRecord_deadAgentHelper$")
	cmd.Env = append(os.Environ(), deadAgentEnv+"="+record)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sleepPid, err := strconv.Atoi(strings.TrimSpace(string(procWaitForFile(t, record+".pid"))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(sleepPid, syscall.SIGKILL) })
	var rec recordFile
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil || len(rec.Groups) != 1 || rec.Groups[0].Owner != "p1" {
		t.Fatalf("record %s: %v", b, err)
	}
	leader := rec.Groups[0].Pgid

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	// The parent-death signal ends the leader with the agent.
	deadline := time.Now().Add(10 * time.Second)
	for procPidAlive(leader) {
		if time.Now().After(deadline) {
			t.Fatalf("leader %d outlived its agent", leader)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !procPidAlive(sleepPid) {
		t.Fatalf("precondition: the grandchild %d should have outlived the agent", sleepPid)
	}

	log := &testutil.LogRecorder{}
	s, err := NewProcessService(ProcessConfig{RecordFile: record, KillGrace: 300 * time.Millisecond}, slog.New(log))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if procPidAlive(sleepPid) {
		t.Fatalf("the dead agent's grandchild %d still runs", sleepPid)
	}
	want := "WARN stopped ['sh', '-c',"
	found := false
	for _, l := range log.Lines() {
		if strings.HasPrefix(l, want) && strings.Contains(l, fmt.Sprintf("process group %d, pids [%d]", leader, sleepPid)) && strings.Contains(l, "owner 'p1'") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no log line names what was stopped:\n%s", strings.Join(log.Lines(), "\n"))
	}
	if err := json.Unmarshal(testutil.ReadFile(t, record), &rec); err != nil || len(rec.Groups) != 0 || rec.Agent != pgroup.Self() {
		t.Fatalf("record not taken over: %+v %v", rec, err)
	}
	s.Close()
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("a clean shutdown left the record: %v", err)
	}
}

// A recorded group whose leader pid now belongs to another process (other
// start time) is left alone.
func TestProcessRecord_reusedPidIsNotStopped(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, ProcessRecordName)
	other := exec.Command("sleep", "600")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	st := testutil.ReadFile(t, fmt.Sprintf("/proc/%d/stat", other.Process.Pid))
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
	tick, _ := strconv.ParseUint(f[19], 10, 64)

	rec := recordFile{BootID: pgroup.BootID(), Agent: pgroup.Ident{Pgid: 1 << 30, StartTick: 1},
		Groups: []recordedGroup{{Ident: pgroup.Ident{Pgid: other.Process.Pid, StartTick: tick - 1}, Argv: []string{"x"}}}}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(record, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := NewProcessService(ProcessConfig{RecordFile: record, KillGrace: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !procPidAlive(other.Process.Pid) {
		t.Fatal("a process whose pid merely matches the record was stopped")
	}
}

func TestProcessRecord_badFile(t *testing.T) {
	record := filepath.Join(t.TempDir(), ProcessRecordName)
	if err := os.WriteFile(record, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := NewProcessService(ProcessConfig{RecordFile: record}, nil)
	if err == nil || !strings.Contains(err.Error(), record) {
		t.Fatalf("got %v, want an error naming %s", err, record)
	}
}
