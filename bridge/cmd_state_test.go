package bridge

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/vtcluster/vtcluster/cluster/etcdstore/etcdtest"
)

// Two controllers that share nothing but etcd (separate state
// directories; one chooses etcd with --state, the other with
// $VTCLUSTER_STATE) see one lab: nodes one registers, partitions the other
// holds, with the holder's host.
func TestCLI_etcdState_sharedByTwoControllers(t *testing.T) {
	members := etcdtest.Start(t, 1)
	url := etcdtest.URL(members)
	dirA, dirB := t.TempDir(), t.TempDir()
	a := func(args ...string) (int, string, string) {
		return runMain(t, append([]string{"--state-dir", dirA, "--state", url, "--cluster", "lab"}, args...)...)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if code, _, errOut := a("node", "add", n, "--address", "192.0.2."+n[1:], "--label", "cores="+n[1:]); code != 0 {
			t.Fatalf("node add %s: exit %d: %s", n, code, errOut)
		}
	}
	envB := []string{"VTCLUSTER_STATE_DIR=" + dirB, "VTCLUSTER_STATE=" + url, "VTCLUSTER_CLUSTER=lab"}
	code, out, errOut := runVtcluster(t, envB, "node", "list", "--json")
	if code != 0 || !slices.Equal(namesOf(out), []string{"n1", "n2", "n3"}) {
		t.Fatalf("controller B's node list: exit %d %s %s", code, out, errOut)
	}
	if entries, _ := os.ReadDir(dirB); len(entries) != 0 {
		t.Errorf("controller B wrote to its state directory: %v", entries)
	}
	code, out, errOut = runVtcluster(t, envB, "partition", "create", "--owner-pid", strconv.Itoa(os.Getpid()),
		"--tag", "vm", "--selectors", "[{'key': 'cores', 'operator': '>=', 'values': 2}]", "--lease", "1m")
	id := strings.TrimSpace(out)
	if code != 0 || len(id) != 32 {
		t.Fatalf("partition create on B: exit %d %q %s", code, out, errOut)
	}
	host := hostnameOf(t)
	code, out, _ = a("partition", "list", "--json")
	p := gjson.Parse(out).Get("0")
	if code != 0 || p.Get("id").Str != id || p.Get("owner.host").Str != host || p.Get("lease_seconds_left").Float() < 55 {
		t.Fatalf("partition list on A: %s", out)
	}
	if _, out, _ = a("partition", "list"); !strings.Contains(out, id) || !strings.Contains(out, "on "+host) {
		t.Errorf("partition list table does not name the holder's host:\n%s", out)
	}
	code, out, errOut = a("status", "--json", "--connect-timeout", "1s", "--timeout", "20s")
	held := gjson.Get(out, `#(partition=="`+id+`")`)
	if code != 0 && !held.Exists() || held.Get("owner_host").Str != host {
		t.Errorf("status on A: exit %d %s %s", code, out, errOut)
	}
	// Busy on A too: n2 and n3 are the only nodes with enough cores.
	code, _, errOut = a("partition", "create", "--owner-pid", strconv.Itoa(os.Getpid()), "--tag", "x", "--tag", "y",
		"--selectors", "[{'key': 'cores', 'operator': '>=', 'values': 2}]")
	if code == 0 || !strings.Contains(errOut, id) {
		t.Errorf("A allocated nodes B holds: exit %d %s", code, errOut)
	}
	if code, _, errOut = a("partition", "release", id); code != 0 {
		t.Errorf("release on A: %d %s", code, errOut)
	}
}

// state migrate moves a lab from its state file to etcd, and refuses to
// overwrite a cluster etcd already knows or to move held nodes.
func TestCLI_stateMigrate_fileToEtcd(t *testing.T) {
	members := etcdtest.Start(t, 1)
	url := etcdtest.URL(members)
	state := t.TempDir()
	registerLabelledNodes(t, state)
	migrate := func() (int, string, string) {
		return runMain(t, "--state-dir", t.TempDir(), "state", "migrate", "--from", "file://"+state, "--to", url)
	}
	code, _, errOut := migrate()
	if code != 0 || !strings.Contains(errOut, "copied 3 nodes") {
		t.Fatalf("migrate: exit %d: %s", code, errOut)
	}
	code, out, _ := runMain(t, "--state", url, "node", "list", "--json")
	if code != 0 || !slices.Equal(namesOf(out), []string{"n1", "n2", "n3"}) || gjson.Get(out, `#(name=="n2").labels.cores`).Int() != 16 {
		t.Fatalf("nodes in etcd after migrate: %s", out)
	}
	if code, _, errOut = migrate(); code == 0 || !strings.Contains(errOut, "already has 3 nodes") {
		t.Errorf("second migrate: exit %d: %s", code, errOut)
	}
	// Held nodes are not moved.
	if code, _, errOut = runMain(t, "--state-dir", state, "partition", "create", "--owner-pid", strconv.Itoa(os.Getpid()), "--tag", "t"); code != 0 {
		t.Fatal(errOut)
	}
	code, _, errOut = runMain(t, "state", "migrate", "--from", "file://"+state, "--to", url+"-other")
	if code == 0 || !strings.Contains(errOut, "migrate when no test holds nodes") {
		t.Errorf("migrate with a held node: exit %d: %s", code, errOut)
	}
}

// Bad --state values and an unreachable etcd fail fast with a message that
// says what is wrong.
func TestCLI_etcdState_badURLAndUnreachable(t *testing.T) {
	for _, tc := range []struct{ state, want string }{
		{"http://x:1/p", "expected etcd://"},
		{"etcd://nohost/p", `endpoint "nohost" is not host:port`},
		{"etcd://user:pw@h:2379/p", "credentials do not belong in the URL"},
		{"etcd://h:2379/p?x=1", "no query"},
		{"file://relative", "file:///absolute/dir"},
	} {
		code, _, errOut := runMain(t, "--state", tc.state, "node", "list")
		if code == 0 || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "pw") {
			t.Errorf("--state %s: exit %d, stderr %q; want %q", tc.state, code, errOut, tc.want)
		}
	}
	if code, _, errOut := runMain(t, "--state-dir", t.TempDir(), "state", "migrate", "--from", "file://"+t.TempDir(), "--to", "file://"+t.TempDir()); code == 0 || !strings.Contains(errOut, "nothing to migrate") {
		t.Errorf("migrating an empty cluster: exit %d: %s", code, errOut)
	}
	dead := etcdtest.FreePorts(t, 1)[0]
	start := time.Now()
	code, _, errOut := runMain(t, "--state", "etcd://"+dead+"/p", "--state-timeout", "1s", "node", "list")
	if took := time.Since(start); code == 0 || !strings.Contains(errOut, "did not answer within 1s") || took > 3*time.Second {
		t.Errorf("unreachable etcd: exit %d after %s: %s", code, took, errOut)
	}
}
