package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/vtcluster/vtcluster/cluster/lab"
)

func runMain(tb testing.TB, args ...string) (int, string, string) {
	tb.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), append([]string{"vtcluster"}, args...), strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestLabCommand_upStatusDown(t *testing.T) {
	if err := lab.CheckTools(""); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "cfg", "cluster.json")
	t.Cleanup(func() { lab.Down(dir) })

	code, out, errOut := runMain(t, "lab", "up", "--hosts", "2", "--dir", dir, "--cluster-config", cfgPath, "--json")
	if code != 0 {
		t.Fatalf("lab up: exit %d: %s", code, errOut)
	}
	var l lab.Lab
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("lab up --json: %v\n%s", err, out)
	}
	if len(l.Hosts) != 2 || l.KnownHosts == "" || l.ClientKey == "" || l.Gateway == "" {
		t.Fatalf("lab up --json = %+v", l)
	}

	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !gjson.ValidBytes(cfg) {
		t.Fatalf("cluster config is not JSON:\n%s", cfg)
	}
	for key, want := range map[string]string{
		"hosts.node1.address":        l.Hosts[0].Address,
		"hosts.node2.address":        l.Hosts[1].Address,
		"hosts.node1.username":       "root",
		"hosts.node1.shell_port":     "22",
		"hosts.node1.proxy_port":     "9999",
		"hosts.node1.agent_base_dir": filepath.Join(dir, "agents"),
		"hosts.node1.key_file":       l.ClientKey,
		"hosts.node1.known_hosts":    l.KnownHosts,
		"hosts.node1.agent_bind":     "tunnel",
	} {
		if got := gjson.GetBytes(cfg, key); got.Type != gjson.String || got.Str != want {
			t.Errorf("cluster config %s = %s, want %q", key, got.Raw, want)
		}
	}
	if p := gjson.GetBytes(cfg, "pools"); !p.IsObject() {
		t.Errorf("cluster config pools = %s, want {}", p.Raw)
	}

	code, out, errOut = runMain(t, "lab", "status", "--dir", dir, "--json")
	if code != 0 || !gjson.Valid(out) || !gjson.Get(out, "healthy").Bool() {
		t.Fatalf("lab status: exit %d: %s %s", code, out, errOut)
	}

	code, out, _ = runMain(t, "lab", "down", "--dir", dir)
	if code != 0 || !strings.Contains(out, "is down") {
		t.Fatalf("lab down: exit %d: %s", code, out)
	}
	if _, err := os.Stat("/run/netns/" + l.Hosts[0].Netns); err == nil {
		t.Errorf("netns %s left after lab down", l.Hosts[0].Netns)
	}
	code, out, _ = runMain(t, "lab", "down", "--dir", dir)
	if code != 0 || !strings.Contains(out, "no lab") {
		t.Fatalf("second lab down: exit %d: %s", code, out)
	}
	if code, _, errOut := runMain(t, "lab", "status", "--dir", dir); code != 1 || !strings.Contains(errOut, "lab.json") {
		t.Fatalf("status without a lab: exit %d, stderr %q", code, errOut)
	}
}

func TestLabCommand_usageErrors(t *testing.T) {
	if code, _, _ := runMain(t, "lab", "up", "--hosts", "2"); code != 2 {
		t.Errorf("lab up without --dir: exit %d, want 2", code)
	}
	if code, _, errOut := runMain(t, "lab", "up", "--dir", t.TempDir(), "--hosts", "0"); code != 2 || !strings.Contains(errOut, "--hosts 0: want 1 to 200") {
		t.Errorf("lab up --hosts 0: exit %d, %q", code, errOut)
	}
}

// lab up --subnet puts the lab inside the prefix asked for; bad values are
// usage errors (exit 2) naming the flag, before anything is built.
func TestLabCommand_subnet(t *testing.T) {
	for _, args := range [][]string{
		{"--subnet", "fd00::/64"},
		{"--subnet", "10.124.0.0/25"},
		{"--subnet", "ten"},
	} {
		code, _, errOut := runMain(t, append([]string{"lab", "up", "--dir", t.TempDir()}, args...)...)
		if code != 2 || !strings.Contains(errOut, args[0]) {
			t.Errorf("lab up %q: exit %d: %s", args, code, errOut)
		}
	}
	if err := lab.CheckTools(""); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	t.Cleanup(func() { lab.Down(dir) })
	code, out, errOut := runMain(t, "lab", "up", "--hosts", "1", "--subnet", "10.124.0.0/16", "--dir", dir, "--json")
	if code != 0 {
		t.Fatalf("lab up: exit %d: %s", code, errOut)
	}
	var l lab.Lab
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l.Subnet, "10.124.") || !strings.HasPrefix(l.Hosts[0].Address, "10.124.") {
		t.Errorf("lab in 10.124.0.0/16: subnet %s, host %s", l.Subnet, l.Hosts[0].Address)
	}
}
