package runner

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/vtcluster/vtcluster/cluster"
)

// flakyCluster fails its first allocations as a lab does when a node's
// agent is down.
type flakyCluster struct {
	*fakeCluster
	fails int
}

func (f *flakyCluster) Allocate(ctx context.Context, req AllocRequest) (*Partition, error) {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.requests = append(f.requests, req)
		f.mu.Unlock()
		return nil, &infraError{err: fmt.Errorf("node %q: agent down", "n1"), node: "n1"}
	}
	f.mu.Unlock()
	return f.fakeCluster.Allocate(ctx, req)
}

// runRetry runs twoNodeSpec's "ok" with config (hold_test.go's runner).
func runRetry(t *testing.T, config string, cl Cluster) []map[string]any {
	t.Helper()
	msgs, _ := runWithConfig(t, writeSpec(t, twoNodeSpec), "ok", cl, config)
	return msgs
}

// An infrastructure failure is reported as such (reason prefix and
// fail_class); with multihost.retry_infra the test runs once more,
// avoiding the node it failed on, and passes there.
func TestLifecycle_infraFailureReportedAndRetriedOnce(t *testing.T) {
	cl := &flakyCluster{fakeCluster: &fakeCluster{nodes: twoNodes()}, fails: 1}
	fin := finishedOf(runRetry(t, `{}`, cl))
	if fin["result"] != "error" || fin["fail_class"] != InfraClass ||
		fin["fail_reason"] != `infrastructure: allocating nodes: node "n1": agent down` {
		t.Errorf("without retry: finished %v", fin)
	}

	cl = &flakyCluster{fakeCluster: &fakeCluster{nodes: twoNodes()}, fails: 1}
	msgs := runRetry(t, `{"multihost.retry_infra": true}`, cl)
	if fin := finishedOf(msgs); fin["result"] != "pass" {
		t.Fatalf("with retry: finished %v\n%s", fin, logText(msgs))
	}
	if !strings.Contains(logText(msgs), `infrastructure: allocating nodes: node "n1": agent down; running the test once more`) {
		t.Errorf("the log does not say why it ran again:\n%s", logText(msgs))
	}
	if len(cl.requests) != 2 || cl.requests[0].Avoid != nil || !reflect.DeepEqual(cl.requests[1].Avoid, []string{"n1"}) {
		t.Errorf("requests avoid %v", cl.requests)
	}

	// Twice in a row: reported, once, with both reasons.
	cl = &flakyCluster{fakeCluster: &fakeCluster{nodes: twoNodes()}, fails: 2}
	fin = finishedOf(runRetry(t, `{"multihost.retry_infra": true}`, cl))
	if fin["result"] != "error" || fin["fail_class"] != InfraClass || !strings.Contains(fmt.Sprint(fin["fail_reason"]), "(on the retry; the first attempt failed with: infrastructure: ") || len(cl.requests) != 2 {
		t.Errorf("two failures: finished %v after %d requests", fin, len(cl.requests))
	}
}

// The chooser prefers nodes not avoided, and takes avoided ones only when
// nothing else serves.
func TestPreferOthers(t *testing.T) {
	nodes := []cluster.Node{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}}
	firstTwo := func(idle []cluster.Node) (map[string]string, error) {
		if len(idle) < 2 {
			return nil, &cluster.NoMatchError{Tag: "b", Reason: cluster.ReasonTaken}
		}
		return map[string]string{"a": idle[0].Name, "b": idle[1].Name}, nil
	}
	if m, _ := preferOthers([]string{"n1"}, firstTwo)(nodes); m["a"] != "n2" || m["b"] != "n3" {
		t.Errorf("with n1 avoided: %v", m)
	}
	if m, _ := preferOthers([]string{"n1", "n2"}, firstTwo)(nodes); m["a"] != "n1" {
		t.Errorf("with too few others: %v", m)
	}
}
