package runner

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vtcluster/vtcluster/agent/vm"
)

// The example spec loads with tp-qemu's parameter names, and each tag gets
// the VM as that node must run it: its own tap, the shared volume, the
// same MAC, the cmdline with the guest's address.
func TestVMs_exampleSpecResolvesPerNode(t *testing.T) {
	f, err := LoadSpecFile("../examples/vm-migration.json")
	if err != nil {
		t.Fatal(err)
	}
	test, _ := f.Test("migrate")
	if len(test.VMs) != 1 {
		t.Fatalf("VMs: %+v", test.VMs)
	}
	s := test.VMs[0]
	abs, _ := filepath.Abs("../build/guest/current/vmlinux")
	if s.On != "src" || s.MigrateTo != "dst" || s.Kernel != abs || s.AddressFrom != "src" || s.AddressHost != 200 {
		t.Fatalf("vm1: %+v", s)
	}
	var migrate *VMStep
	for _, st := range test.Body.Steps {
		if st.VM != nil && st.VM.Kind == "migrate" {
			migrate = st.VM
		}
	}
	if migrate == nil || migrate.To != "dst" || migrate.MaxBandwidth != 1000000000 || migrate.DowntimeLimitMs != 300 {
		t.Fatalf("migrate step: %+v", migrate)
	}
	p := &Partition{ID: "p1", Nodes: []PartitionNode{
		{Tag: "src", Name: "node1", Address: "10.9.8.11", Resources: map[string]string{"disk": "/pool/disk_p1.qcow2", "net": "tap_a"},
			MACs: map[string]string{"net": "52:54:00:0a:0a:0a"}},
		{Tag: "dst", Name: "node2", Address: "10.9.8.12", Resources: map[string]string{"disk": "/pool/disk_p1.qcow2", "net": "tap_b"},
			MACs: map[string]string{"net": "52:54:00:0b:0b:0b"}},
	}}
	src, err := s.resolve(p, "src")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := s.resolve(p, "dst")
	if err != nil {
		t.Fatal(err)
	}
	if src.Cmdline != "console=ttyS0 quiet panic=-1 vmip=10.9.8.200/24" || src.Owner != "p1" {
		t.Errorf("src spec: %+v", src)
	}
	if !reflect.DeepEqual(src.Disks, []vm.Disk{{Path: "/pool/disk_p1.qcow2", Format: "qcow2"}}) {
		t.Errorf("disks: %+v", src.Disks)
	}
	// The MAC is the resource manager's for the tap where the VM starts,
	// kept on the destination of a migration.
	if src.NICs[0].Ifname != "tap_a" || dst.NICs[0].Ifname != "tap_b" || src.NICs[0].MAC != "52:54:00:0a:0a:0a" || dst.NICs[0].MAC != src.NICs[0].MAC {
		t.Errorf("nics: src %+v, dst %+v", src.NICs, dst.NICs)
	}
	// A MAC the spec gives wins.
	given := s
	given.NICs = []VMNIC{{Port: "net", MAC: "52:54:00:12:34:56"}}
	if g, err := given.resolve(p, "dst"); err != nil || g.NICs[0].MAC != "52:54:00:12:34:56" {
		t.Errorf("given mac: %+v, %v", g.NICs, err)
	}
	// Without one from the resource manager, the error says what to do.
	p.Nodes[0].MACs = nil
	if _, err := s.resolve(p, "dst"); err == nil || !strings.Contains(err.Error(), `port "net" has no MAC from the resource manager on src`) {
		t.Errorf("resolve without a MAC: %v", err)
	}
	p.Nodes[0].MACs = map[string]string{"net": "52:54:00:0a:0a:0a"}
	r := &testRun{test: test}
	argv, err := r.expandStepArgv(context.Background(), "src", []string{"ping", "{vm1.address}", "{dst.address}", "{{vm1.address}}"}, 0, p)
	if err != nil || !reflect.DeepEqual(argv, []string{"ping", "10.9.8.200", "10.9.8.12", "{vm1.address}"}) {
		t.Errorf("step argv: %q %v", argv, err)
	}
	section := r.vmPartitionSection(p)
	if e := section["vm1"]; e.On != "src" || e.MigrateTo != "dst" || e.Specs["dst"].NICs[0].Ifname != "tap_b" {
		t.Errorf("partition file section: %+v", section)
	}
	// A tag without the port has no spec there, and says why.
	p.Nodes[1].Resources = map[string]string{"disk": "/pool/disk_p1.qcow2"}
	if _, err := s.resolve(p, "dst"); err == nil || !strings.Contains(err.Error(), `port "net" has no tap on dst`) {
		t.Errorf("resolve without a tap: %v", err)
	}
}

func TestVMs_jsonContains(t *testing.T) {
	got := map[string]any{"status": "running", "running": true, "x": map[string]any{"a": 1.0, "b": "c"}}
	for _, c := range []struct {
		want any
		ok   bool
	}{
		{map[string]any{"status": "running"}, true},
		{map[string]any{"x": map[string]any{"b": "c"}}, true},
		{map[string]any{"status": "paused"}, false},
		{map[string]any{"missing": nil}, false},
		{map[string]any{"x": "c"}, false},
		{"running", false},
	} {
		if jsonContains(got, c.want) != c.ok {
			t.Errorf("jsonContains(%v) != %v", c.want, c.ok)
		}
	}
}
