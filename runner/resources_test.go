package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// resourceFakeCluster is fakeCluster plus a resource manager that only
// records calls: the real one (package resmgr, wired by bridge) is tested
// on lab hosts; this checks the lifecycle's ordering on every path.
type resourceFakeCluster struct {
	fakeCluster
	rmu        sync.Mutex
	events     []string
	acquireErr error
}

func (f *resourceFakeCluster) event(e string) {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	f.events = append(f.events, e)
}

func (f *resourceFakeCluster) Release(ctx context.Context, p *Partition) error {
	f.event("release partition")
	return f.fakeCluster.Release(ctx, p)
}

func (f *resourceFakeCluster) Collect(ctx context.Context, p *Partition, paths map[string][]string, dir string) error {
	f.event("collect")
	return f.fakeCluster.Collect(ctx, p, paths, dir)
}

func (f *resourceFakeCluster) AcquireResources(ctx context.Context, p *Partition, specs []ResourceSpec) ([]acquiredResource, error) {
	f.event("acquire")
	if f.acquireErr != nil {
		return nil, f.acquireErr
	}
	var out []acquiredResource
	for _, s := range specs {
		for _, tag := range s.On {
			v := "/pool/" + s.Name + ".raw"
			if s.Type == "port" {
				v = "tap_" + tag
			}
			out = append(out, acquiredResource{Name: s.Name, Type: s.Type, Tag: tag, ID: "id-" + s.Name, Value: v})
		}
	}
	return out, nil
}

func (f *resourceFakeCluster) ReleaseResources(ctx context.Context, p *Partition) error {
	f.event("release resources")
	return nil
}

const resourceSpec = `{"tests": [
 {"name": "ok", "nodes": {"src": null, "dst": null},
  "resources": [{"name": "disk", "type": "volume", "on": "*", "params": {"image_size": "1M"}},
                {"name": "net", "type": "port", "on": ["dst"]}],
  "body": {"steps": [{"on": "dst", "run": ["echo", "step disk={dst.resource_disk} net={dst.resource_net}"]}],
           "command": ["sh", "-c", "echo disk=$VTCLUSTER_RESOURCE_DISK_DST net=$VTCLUSTER_RESOURCE_NET_DST; cat $VTCLUSTER_PARTITION_FILE"]}},
 {"name": "fail", "nodes": {"src": null},
  "resources": [{"name": "disk", "type": "volume", "on": "*"}],
  "body": {"command": ["false"]}},
 {"name": "timeout", "nodes": {"src": null}, "timeout": 0.2,
  "resources": [{"name": "disk", "type": "volume", "on": "*"}],
  "body": {"command": ["sleep", "30"]}}
]}`

func TestLifecycle_resourcesStageOnEveryPath_fakeCluster(t *testing.T) {
	want := []string{"acquire", "collect", "release resources", "release partition"}
	for _, tc := range []struct{ test, result string }{{"ok", "pass"}, {"fail", "fail"}, {"timeout", "interrupted"}} {
		t.Run(tc.test, func(t *testing.T) {
			cl := &resourceFakeCluster{fakeCluster: fakeCluster{nodes: twoNodes()}}
			_, msgs, out := runInProcessWith(t, context.Background(), writeSpec(t, resourceSpec), tc.test, cl)
			if fin := finishedOf(msgs); fin["result"] != tc.result {
				t.Fatalf("finished %v\n%s", fin, logText(msgs))
			}
			if !slices.Equal(cl.events, want) {
				t.Errorf("events = %v, want %v", cl.events, want)
			}
			if len(cl.requests) != 1 || len(cl.requests[0].Resources) == 0 {
				t.Errorf("resources not passed to Allocate: %+v", cl.requests)
			}
			if tc.test != "ok" {
				return
			}
			stdout := outputOf(msgs, "stdout")
			if !strings.Contains(stdout, "disk=/pool/disk.raw net=tap_dst\n") || !strings.Contains(stdout, "step disk=/pool/disk.raw net=tap_dst\n") {
				t.Errorf("environment: %s", stdout)
			}
			data, err := os.ReadFile(filepath.Join(out, "partition.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), `"resources": {"disk": {"type": "volume", "ids": ["id-disk"], "nodes": {"src": "/pool/disk.raw", "dst": "/pool/disk.raw"}}, "net": {"type": "port", "ids": ["id-net"], "nodes": {"dst": "tap_dst"}}}`) {
				t.Errorf("partition file: %s", data)
			}
		})
	}
}

func TestLifecycle_resourceAcquireErrorReleases_fakeCluster(t *testing.T) {
	cl := &resourceFakeCluster{fakeCluster: fakeCluster{nodes: twoNodes()}, acquireErr: errors.New("pool full")}
	_, msgs, _ := runInProcessWith(t, context.Background(), writeSpec(t, resourceSpec), "ok", cl)
	fin := finishedOf(msgs)
	if fin["result"] != "error" || fin["fail_reason"] != "runner: acquiring resources: pool full" {
		t.Errorf("finished %v", fin)
	}
	// What a half-done acquire made goes, then the nodes; no collect of a
	// body that never ran.
	if want := []string{"acquire", "release resources", "release partition"}; !slices.Equal(cl.events, want) {
		t.Errorf("events = %v, want %v", cl.events, want)
	}
}

func TestLifecycle_resourcesWithoutManager_fakeCluster(t *testing.T) {
	cl := &fakeCluster{nodes: twoNodes()}
	_, msgs, _ := runInProcess(t, context.Background(), writeSpec(t, resourceSpec), "ok", cl)
	if fin := finishedOf(msgs); fin["result"] != "error" || !strings.Contains(fin["fail_reason"].(string), "no resource manager") {
		t.Errorf("finished %v", fin)
	}
	if len(cl.releasedIDs()) != 1 {
		t.Errorf("released %v", cl.releasedIDs())
	}
}
