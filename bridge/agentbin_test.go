package bridge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vtcluster/vtcluster/internal/testbin"
)

// makeBuild is what `make build` makes, built once for the package's
// tests: vtcluster and the agent-only vtcluster-agent in one directory,
// sharing one build id.
var makeBuild struct {
	once     sync.Once
	dir, id  string
	err      error
	failArgs string
}

func makeBuildDir(tb testing.TB) (dir, id string) {
	tb.Helper()
	makeBuild.once.Do(func() {
		// Under make (VTCLUSTER_BIN set), bin/ already holds such a pair:
		// use it rather than link two more binaries, which costs most of
		// make unit's time.
		if dir, id, ok := madePair(); ok {
			makeBuild.dir, makeBuild.id = dir, id
			return
		}
		makeBuild.dir = filepath.Join(filepath.Dir(vtclusterBinary(tb)), "make-build")
		makeBuild.id = "test-" + rand.Text()[:12]
		ld := "-X github.com/vtcluster/vtcluster/bridge.BuildID=" + makeBuild.id
		for _, args := range [][]string{
			{"build", "-ldflags", ld, "-o", filepath.Join(makeBuild.dir, "vtcluster"), ".."},
			{"build", "-ldflags", ld, "-tags", "vtcluster_noetcd", "-o", filepath.Join(makeBuild.dir, LeanAgentName), ".."},
		} {
			cmd := exec.Command("go", args...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				makeBuild.err, makeBuild.failArgs = err, strings.Join(args, " ")+"\n"+string(out)
				return
			}
		}
	})
	if makeBuild.err != nil {
		tb.Fatalf("go %s: %v", makeBuild.failArgs, makeBuild.err)
	}
	return makeBuild.dir, makeBuild.id
}

// madePair reports the directory of the binary make built, when it holds
// the agent-only build beside it and both say the same build id.
func madePair() (dir, id string, ok bool) {
	bin := os.Getenv(testbin.Env)
	if bin == "" {
		return "", "", false
	}
	dir = filepath.Dir(bin)
	ctx := context.Background()
	full, err1 := probeBuild(ctx, filepath.Join(dir, "vtcluster"))
	lean, err2 := probeBuild(ctx, filepath.Join(dir, LeanAgentName))
	if err1 != nil || err2 != nil || full.BuildID == "" || full.BuildID != lean.BuildID || full.Version != Version || lean.Version != Version {
		return "", "", false
	}
	return dir, full.BuildID, true
}

// The deployer picks the agent-only build beside the running binary only
// when that build says it is the same build; anything else deploys the
// running binary itself.
func TestAgentBinary_choice(t *testing.T) {
	dir, id := makeBuildDir(t)
	lean := filepath.Join(dir, LeanAgentName)
	exe := filepath.Join(dir, "vtcluster")
	defer func(v string) { BuildID = v }(BuildID)
	ctx := context.Background()

	BuildID = id
	if got, why := chooseAgentBinary(ctx, exe); got != lean {
		t.Errorf("same build: chose %s (%s), want %s", got, why, lean)
	}

	BuildID = id + "-other"
	got, why := chooseAgentBinary(ctx, exe)
	if got != exe || !strings.Contains(why, "another build") || !strings.Contains(why, id) {
		t.Errorf("another build beside it: chose %s (%s), want %s saying the build ids", got, why, exe)
	}

	BuildID = ""
	if got, why := chooseAgentBinary(ctx, exe); got != exe || !strings.Contains(why, "no build id") {
		t.Errorf("binary without build id: chose %s (%s), want %s", got, why, exe)
	}

	BuildID = id
	alone := filepath.Join(t.TempDir(), "vtcluster")
	if got, why := chooseAgentBinary(ctx, alone); got != alone || !strings.Contains(why, "no agent-only build") {
		t.Errorf("no agent-only build beside it: chose %s (%s), want %s", got, why, alone)
	}

	// A file of that name that is not a vtcluster does not pass.
	odd := t.TempDir()
	if err := os.WriteFile(filepath.Join(odd, LeanAgentName), []byte("#!/bin/sh\necho '{\"version\": 1'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, why := chooseAgentBinary(ctx, filepath.Join(odd, "vtcluster")); got != filepath.Join(odd, "vtcluster") || !strings.Contains(why, "does not say its build") {
		t.Errorf("a broken agent-only build: chose %s (%s)", got, why)
	}
}

func fileSum(tb testing.TB, p string) [32]byte {
	tb.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return sha256.Sum256(b)
}

// After a make-style build, bootstrap without --agent-binary deploys the
// agent-only build, and the agent running on the node is it: no etcd
// client, the same build id.
func TestCLI_bootstrapDeploysTheLeanAgent(t *testing.T) {
	dir, id := makeBuildDir(t)
	c := newCLICluster(t, 1, nil)
	h := c.lab.Hosts[0]
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(dir, "vtcluster"), append([]string{"--state-dir", c.stateDir}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("vtcluster %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("bootstrap", "--vt-cluster-config", c.config)
	if !strings.Contains(out, filepath.Join(dir, LeanAgentName)+": the agent-only build") {
		t.Errorf("bootstrap does not say it deploys the agent-only build:\n%s", out)
	}
	run("agents", "start")
	t.Cleanup(func() {
		exec.Command(filepath.Join(dir, "vtcluster"), "--state-dir", c.stateDir, "agents", "stop").Run()
	})
	pids := agentPIDs(t, h)
	if len(pids) != 1 {
		t.Fatalf("agents on %s: %v", h.Name, pids)
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pids[0]) + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	if fileSum(t, exe) != fileSum(t, filepath.Join(dir, LeanAgentName)) {
		t.Errorf("the agent on %s runs %s, which is not the agent-only build", h.Name, exe)
	}
	info, err := exec.Command(exe, "build-info").Output()
	if err != nil {
		t.Fatal(err)
	}
	var bi buildInfo
	if err := json.Unmarshal(info, &bi); err != nil || bi.Etcd || bi.BuildID != id {
		t.Errorf("deployed agent's build: %s (%v), want no etcd and build id %s", info, err, id)
	}
	if st, err := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/status"); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				t.Logf("deployed agent %s", strings.Join(strings.Fields(l), " "))
			}
		}
	}
}
