package runner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const syncSpec = `{"tests": [
 {"name": "values", "nodes": {"a": null, "b": null},
  "body": {"steps": [
    {"send": "k", "value": "v-{a.name}", "on": "a"},
    {"wait": "k", "on": "b", "tags": ["a"]},
    {"on": "b", "run": ["echo", "got {sync.k}"]},
    {"together": {"a": [{"lock": "m"}, {"barrier": "in"}, {"unlock": "m"}],
                  "b": [{"barrier": "in"}, {"lock": "m"}, {"unlock": "m"}]}}]}},
 {"name": "gone", "nodes": {"a": null, "b": null},
  "body": {"steps": [{"together": {"a": [{"barrier": "x"}], "b": [{"run": ["false"]}]}}]}}
]}`

// The JSON steps on the fake cluster (local processes): values reach
// later argv, a together group's barrier and mutex work, and a peer that
// fails ends the group with its own failure, the waiter's released at
// once naming it.
func TestSyncSteps_fakeCluster(t *testing.T) {
	spec := writeSpec(t, syncSpec)
	_, msgs, _ := runInProcess(t, context.Background(), spec, "values", &fakeCluster{nodes: twoNodes()})
	if fin := finishedOf(msgs); fin["result"] != "pass" {
		t.Fatalf("values: %v\n%s", fin, logText(msgs))
	}
	if out := outputOf(msgs, "stdout"); out != "got v-node1\n" {
		t.Errorf("stdout %q", out)
	}
	log := logText(msgs)
	for _, want := range []string{"sync: a (node1) send 'k': v-node1", "sync: b (node2) receive 'k'", "sync: b (node2) locked 'm' after"} {
		if !strings.Contains(log, want) {
			t.Errorf("debug log lacks %q:\n%s", want, log)
		}
	}
	_, msgs, out := runInProcess(t, context.Background(), spec, "gone", &fakeCluster{nodes: twoNodes()})
	fin := finishedOf(msgs)
	if fin["result"] != "fail" || fin["fail_reason"] != "step 1 on b: 'false' exited with status 1" {
		t.Errorf("gone: %v", fin)
	}
	if log := logText(msgs); !strings.Contains(log, "sync: a (node1) fail 'x'") || !strings.Contains(log, "tag 'b' (node node2) finished without reaching it (failed in step 1: step 1 on b: 'false' exited with status 1)") {
		t.Errorf("the waiter's release is not in the log:\n%s", log)
	}
	// The timeline shows the failed wait on the waiter's lane, in red.
	data, err := os.ReadFile(filepath.Join(out, eventsFile))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct{ Events []Event }
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rec.Events, func(e Event) bool {
		return e.Kind == KindSync && e.Tag == "a" && e.Name == "fail x" && e.Severity == SeverityError && strings.Contains(e.Detail, "finished without reaching it")
	}) {
		t.Errorf("events.json has no failed sync event on tag a: %s", data)
	}
}
