package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vtcluster/vtcluster/agent/vm"
)

// vmFakeCluster is resourceFakeCluster with a MAC per tap, as the resource
// manager gives, and a fake of the agents' vm service that counts every
// call by node and method. The real service (agent/vm, real QEMU on lab
// hosts) is tested in bridge/vm_test.go; this checks what the runner asks
// of it.
type vmFakeCluster struct {
	resourceFakeCluster
	vmu     sync.Mutex
	calls   map[string]int     // "node method" -> count
	running map[string]vm.Spec // "node vm" -> the spec it started with
	stopped []string           // "node vm"
	macs    map[string]string  // "tag port" -> the tap's MAC
	started map[string]vm.Spec // "node vm" -> spec, never removed
}

func newVMFakeCluster() *vmFakeCluster {
	return &vmFakeCluster{resourceFakeCluster: resourceFakeCluster{fakeCluster: fakeCluster{nodes: twoNodes()}},
		calls: map[string]int{}, running: map[string]vm.Spec{}, macs: map[string]string{}, started: map[string]vm.Spec{}}
}

func (f *vmFakeCluster) AcquireResources(ctx context.Context, p *Partition, specs []ResourceSpec) ([]acquiredResource, error) {
	got, err := f.resourceFakeCluster.AcquireResources(ctx, p, specs)
	f.vmu.Lock()
	defer f.vmu.Unlock()
	for i := range got {
		if got[i].Type == "port" {
			got[i].MAC = fmt.Sprintf("52:54:00:00:00:%02x", i)
			f.macs[got[i].Tag+" "+got[i].Name] = got[i].MAC
		}
	}
	return got, err
}

func (f *vmFakeCluster) CallAgent(_ context.Context, node PartitionNode, method string, args ...any) (any, error) {
	f.vmu.Lock()
	defer f.vmu.Unlock()
	f.calls[node.Name+" "+method]++
	switch method {
	case "vm.start":
		var spec vm.Spec
		if err := json.Unmarshal([]byte(args[0].(string)), &spec); err != nil {
			return nil, err
		}
		f.running[node.Name+" "+spec.Name] = spec
		f.started[node.Name+" "+spec.Name] = spec
		return vm.Started{Name: spec.Name, Pid: 1, Accel: "tcg", Status: "running"}, nil
	case "vm.list":
		list := []vm.Status{}
		for _, k := range slices.Sorted(maps.Keys(f.running)) {
			if n, name, _ := strings.Cut(k, " "); n == node.Name {
				list = append(list, vm.Status{Name: name, Owner: f.running[k].Owner, Running: true, Status: "running"})
			}
		}
		return list, nil
	case "vm.stop":
		f.stopped = append(f.stopped, node.Name+" "+args[0].(string))
		delete(f.running, node.Name+" "+args[0].(string))
		return vm.Stopped{Name: args[0].(string), How: "quit"}, nil
	case "vm.console", "vm.events":
		return vm.ConsoleChunk{}, nil
	case "vm.remove":
		return true, nil
	}
	return nil, fmt.Errorf("fake vm service: no method %s", method)
}

func (f *vmFakeCluster) count(method string) int {
	f.vmu.Lock()
	defer f.vmu.Unlock()
	n := 0
	for k, c := range f.calls {
		if strings.HasSuffix(k, " "+method) {
			n += c
		}
	}
	return n
}

const vmStageSpec = `{"tests": [
 {"name": "steps", "nodes": {"src": null, "dst": null},
  "body": {"steps": [{"on": "*", "run": ["true"]}]}},
 {"name": "command", "nodes": {"src": null, "dst": null},
  "body": {"command": ["true"]}},
 {"name": "vms", "nodes": {"src": null, "dst": null},
  "resources": [{"name": "net", "type": "port", "on": "*"}],
  "vms": [{"name": "vm1", "on": "dst", "migrate_to": "src", "kernel": "/boot/vmlinux", "nics": [{"port": "net"}]},
          {"name": "vm2", "on": "src", "kernel": "/boot/vmlinux", "nics": [{"port": "net", "mac": "52:54:00:12:34:56"}]}],
  "body": {"steps": [{"on": "src", "run": ["true"]}]}}
]}`

// A test that cannot own VMs (steps only) asks no node for its VMs at
// the end; one whose body command could start some lists every node; one
// that declares VMs has each stopped and removed.
func TestVMStage_listsOnlyForTestsThatCanOwnVMs_fakeCluster(t *testing.T) {
	for _, tc := range []struct {
		test  string
		lists int
	}{{"steps", 0}, {"command", 2}, {"vms", 2}} {
		t.Run(tc.test, func(t *testing.T) {
			cl := newVMFakeCluster()
			_, msgs, _ := runInProcessWith(t, context.Background(), writeSpec(t, vmStageSpec), tc.test, cl)
			if fin := finishedOf(msgs); fin["result"] != "pass" {
				t.Fatalf("finished %v\n%s", fin, logText(msgs))
			}
			if got := cl.count("vm.list"); got != tc.lists {
				t.Errorf("vm.list called %d times, want %d (calls: %v)", got, tc.lists, cl.calls)
			}
			if tc.test != "vms" {
				if len(cl.calls) > tc.lists {
					t.Errorf("vm service called by a test without VMs: %v", cl.calls)
				}
				return
			}
			if len(cl.running) != 0 || !slices.Equal(slices.Sorted(slices.Values(cl.stopped)), []string{"node1 vm2", "node2 vm1"}) {
				t.Errorf("running after the test: %v; stopped: %v", cl.running, cl.stopped)
			}
			if cl.count("vm.remove") != 2 {
				t.Errorf("calls: %v", cl.calls)
			}
		})
	}
}

// The VM's NIC gets the MAC the resource manager chose for the tap where
// the VM starts (the same in partition.json's spec for the migration's
// destination), unless the spec gives one.
func TestVMStage_macFromTheResourceManager_fakeCluster(t *testing.T) {
	cl := newVMFakeCluster()
	_, msgs, out := runInProcessWith(t, context.Background(), writeSpec(t, vmStageSpec), "vms", cl)
	if fin := finishedOf(msgs); fin["result"] != "pass" {
		t.Fatalf("finished %v\n%s", fin, logText(msgs))
	}
	vm1, vm2 := cl.started["node2 vm1"], cl.started["node1 vm2"]
	if want := cl.macs["dst net"]; want == "" || len(vm1.NICs) != 1 || vm1.NICs[0].MAC != want || vm1.NICs[0].Ifname != "tap_dst" {
		t.Errorf("vm1 on dst: nics %+v, want the MAC %q of dst's tap", vm1.NICs, want)
	}
	if len(vm2.NICs) != 1 || vm2.NICs[0].MAC != "52:54:00:12:34:56" {
		t.Errorf("vm2: nics %+v, want the spec's MAC", vm2.NICs)
	}
	var pf struct {
		VMs map[string]vmPartitionEntry `json:"vms"`
	}
	data, err := os.ReadFile(filepath.Join(out, "partition.json"))
	if err != nil || json.Unmarshal(data, &pf) != nil {
		t.Fatalf("partition.json: %v\n%s", err, data)
	}
	if d := pf.VMs["vm1"].Specs["src"]; len(d.NICs) != 1 || d.NICs[0].MAC != vm1.NICs[0].MAC || d.NICs[0].Ifname != "tap_src" {
		t.Errorf("vm1's spec for the migration to src: %+v", d.NICs)
	}
}
