package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCluster stands in for the cluster-backed Cluster, which bridge wires
// in once it exists; it allocates from a fixed node list and runs Exec as
// real local processes.
type fakeCluster struct {
	mu        sync.Mutex
	nodes     []PartitionNode
	allocErr  error
	relErr    error
	panicOn   string
	logs      []LogRecord
	requests  []AllocRequest
	released  []string
	collected map[string][]string
	collDir   string
	closed    bool
	// onAllocate runs after each successful allocation.
	onAllocate func()
	// handOver is what the partition reports as stopped at hand-over.
	handOver []string
}

func (f *fakeCluster) Allocate(ctx context.Context, req AllocRequest) (*Partition, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicOn == "Allocate" {
		panic("fake cluster exploded")
	}
	f.requests = append(f.requests, req)
	if f.allocErr != nil {
		return nil, f.allocErr
	}
	p := &Partition{ID: "0123456789abcdef0123456789abcdef", HandOver: f.handOver}
	for i, ns := range req.Nodes {
		n := f.nodes[i]
		n.Tag = ns.Tag
		p.Nodes = append(p.Nodes, n)
	}
	if f.onAllocate != nil {
		f.onAllocate()
	}
	return p, nil
}

func (f *fakeCluster) StartLogs(ctx context.Context, p *Partition, sink LogSink) (func(), error) {
	for _, rec := range f.logs {
		sink(rec)
	}
	return func() {}, nil
}

func (f *fakeCluster) Exec(ctx context.Context, node PartitionNode, argv []string, opts ExecOptions) (ExecResult, error) {
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	res := ExecResult{Stdout: out.Bytes(), Stderr: errb.Bytes(), Duration: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		res.TimedOut = ctx.Err() != nil
	case err != nil:
		return res, err
	}
	return res, nil
}

func (f *fakeCluster) Collect(ctx context.Context, p *Partition, paths map[string][]string, dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.collected, f.collDir = paths, dir
	return nil
}

func (f *fakeCluster) Release(ctx context.Context, p *Partition) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, p.ID)
	return f.relErr
}

func (f *fakeCluster) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeCluster) releasedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.released...)
}

func twoNodes() []PartitionNode {
	return []PartitionNode{
		{Name: "node1", Address: "192.0.2.1", AgentURL: "http://192.0.2.1:8000/", Properties: map[string]any{"hostname": "host-one", "arch": "x86_64"}},
		{Name: "node2", Address: "192.0.2.2", AgentURL: "http://192.0.2.2:8000/", Properties: map[string]any{"hostname": "host-two"}},
	}
}

const envScript = `#!/bin/sh
echo "nodes=$VTCLUSTER_NODES"
echo "src=$VTCLUSTER_NODE_SRC_NAME $VTCLUSTER_NODE_SRC_ADDRESS $VTCLUSTER_NODE_SRC_URL"
echo "dst=$VTCLUSTER_NODE_DST_NAME $VTCLUSTER_NODE_DST_ADDRESS"
echo "stale=$VTCLUSTER_NODE_OLD_NAME"
cat "$VTCLUSTER_PARTITION_FILE"
`

// writeSpec writes a spec and a body script into a temporary directory.
func writeSpec(tb testing.TB, spec string) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "env.sh"), []byte(envScript), 0o755); err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

const twoNodeSpec = `{"tests": [
 {"name": "ok", "nodes": {"src": "[{'key': 'arch', 'operator': '==', 'values': 'x86_64'}]", "dst": null},
  "body": {"steps": [{"on": "src", "run": ["echo", "ping {dst.address} from {src.hostname}"]},
                     {"on": "*", "run": ["sh", "-c", "echo on $0", "{src.name}"], "parallel": true}],
           "command": ["./env.sh"]},
  "collect": {"dst": ["/var/log/x"]}},
 {"name": "stepfail", "nodes": {"src": null, "dst": null},
  "body": {"steps": [{"on": ["src", "dst"], "run": ["false"]}, {"on": "src", "run": ["echo", "never"]}], "command": ["./env.sh"]}},
 {"name": "sleep", "nodes": {"src": null},
  "body": {"command": ["sleep", "60"]}}
]}`

// runInProcess runs Main as task-run against a real unix status server.
func runInProcess(t *testing.T, ctx context.Context, spec, test string, cl *fakeCluster) (int, []map[string]any, string) {
	t.Helper()
	if cl == nil {
		return runInProcessWith(t, ctx, spec, test, nil)
	}
	return runInProcessWith(t, ctx, spec, test, cl)
}

func runInProcessWith(t *testing.T, ctx context.Context, spec, test string, cl Cluster) (int, []map[string]any, string) {
	t.Helper()
	s := newUnixStatusServer(t)
	out := filepath.Join(t.TempDir(), "out")
	var stderr bytes.Buffer
	opts := Options{
		Args: []string{runnerArgv0, "task-run", "-i", "1-" + test, "-j", "job", "-u", spec, "test=" + test,
			"output_dir=" + out, "-s", s.URI},
		Stderr:  &stderr,
		Environ: append(os.Environ(), "VTCLUSTER_NODE_OLD_NAME=leaked"),
	}
	if cl != nil {
		opts.NewCluster = func(context.Context, RunConfig, *slog.Logger) (Cluster, error) { return cl, nil }
	}
	code := Main(ctx, opts)
	msgs := s.waitFor(hasFinished)
	checkStream(t, msgs, "1-"+test, "job")
	if stderr.Len() > 0 {
		t.Logf("stderr: %s", stderr.String())
	}
	return code, msgs, out
}

func logText(msgs []map[string]any) string {
	var b strings.Builder
	for _, m := range msgs {
		if m["type"] == "log" {
			b.Write(m["log"].([]byte))
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func TestLifecycle_nodesStepsBodyCollectRelease_fakeCluster(t *testing.T) {
	cl := &fakeCluster{nodes: twoNodes(), logs: []LogRecord{{Tag: "src", Node: "node1", Logger: "avocado.service.process", Level: "INFO", Text: "process started"}},
		handOver: []string{"node node1: stopped ['sleep', '600'] (pid 42, owner old, exit status -15), left by an earlier test"}}
	spec := writeSpec(t, twoNodeSpec)
	code, msgs, out := runInProcess(t, context.Background(), spec, "ok", cl)
	if fin := finishedOf(msgs); code != 0 || fin["result"] != "pass" {
		t.Fatalf("exit %d, finished %v\nlog:\n%s", code, fin, logText(msgs))
	}
	if !strings.Contains(logText(msgs), cl.handOver[0]) {
		t.Errorf("the test's log does not name what was stopped at hand-over:\n%s", logText(msgs))
	}
	wantReq := AllocRequest{JobID: "job", TestID: "1-ok", Nodes: []NodeSpec{{"src", "[{'key': 'arch', 'operator': '==', 'values': 'x86_64'}]"}, {"dst", ""}}}
	if len(cl.requests) == 1 {
		cl.requests[0].Waiting = nil // a func: compared by the wait tests
	}
	if len(cl.requests) != 1 || !reflect.DeepEqual(cl.requests[0], wantReq) {
		t.Errorf("allocation requests = %+v", cl.requests)
	}
	if got := cl.releasedIDs(); len(got) != 1 {
		t.Errorf("released %v, want once", got)
	}
	if !cl.closed {
		t.Error("cluster not closed")
	}
	stdout := outputOf(msgs, "stdout")
	for _, want := range []string{
		"ping 192.0.2.2 from host-one\n", "on node1\n",
		"nodes=src dst\n", "src=node1 192.0.2.1 http://192.0.2.1:8000/\n", "dst=node2 192.0.2.2\n", "stale=\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Count(stdout, "on node1\n") != 2 {
		t.Errorf("parallel step did not run on both nodes:\n%s", stdout)
	}
	var pf struct {
		ID    string `json:"id"`
		Nodes map[string]struct {
			Name, Address string
			AgentURL      string         `json:"agent_url"`
			Properties    map[string]any `json:"properties"`
		} `json:"nodes"`
	}
	data, err := os.ReadFile(filepath.Join(out, "partition.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &pf); err != nil {
		t.Fatal(err)
	}
	if pf.ID != "0123456789abcdef0123456789abcdef" || pf.Nodes["dst"].Address != "192.0.2.2" ||
		pf.Nodes["src"].AgentURL != "http://192.0.2.1:8000/" || pf.Nodes["src"].Properties["hostname"] != "host-one" {
		t.Errorf("partition file: %s", data)
	}
	if cl.collDir != filepath.Join(out, "cluster") || !reflect.DeepEqual(cl.collected, map[string][]string{"dst": {"/var/log/x"}}) {
		t.Errorf("collect: %q %v", cl.collDir, cl.collected)
	}
	var forwarded map[string]any
	for _, m := range msgs {
		if m["log_name"] == "avocado.service.process" {
			forwarded = m
		}
	}
	if forwarded == nil || string(forwarded["log"].([]byte)) != "[src] process started" || forwarded["log_levelname"] != "INFO" {
		t.Errorf("node log not forwarded: %v", forwarded)
	}
	streamed, err := os.ReadFile(filepath.Join(out, "cluster", "src", "streamed.log"))
	if err != nil || !strings.Contains(string(streamed), "INFO avocado.service.process: process started") {
		t.Errorf("streamed.log: %q, %v", streamed, err)
	}
}

func TestLifecycle_stepFailureStopsAndReleases_fakeCluster(t *testing.T) {
	cl := &fakeCluster{nodes: twoNodes()}
	code, msgs, _ := runInProcess(t, context.Background(), writeSpec(t, twoNodeSpec), "stepfail", cl)
	fin := finishedOf(msgs)
	if code != 0 || fin["result"] != "fail" || fin["fail_reason"] != "step 1 on src: 'false' exited with status 1" {
		t.Errorf("exit %d, finished %v", code, fin)
	}
	if strings.Contains(outputOf(msgs, "stdout"), "never") || strings.Contains(outputOf(msgs, "stdout"), "nodes=") {
		t.Error("ran on after a failed step")
	}
	if len(cl.releasedIDs()) != 1 {
		t.Errorf("released %v", cl.releasedIDs())
	}
}

func TestLifecycle_allocationError_fakeCluster(t *testing.T) {
	cl := &fakeCluster{nodes: twoNodes(), allocErr: errors.New("cluster: no registered nodes can ever satisfy the request")}
	code, msgs, _ := runInProcess(t, context.Background(), writeSpec(t, twoNodeSpec), "ok", cl)
	fin := finishedOf(msgs)
	if code != 0 || fin["result"] != "error" || fin["fail_reason"] != "runner: allocating nodes: cluster: no registered nodes can ever satisfy the request" {
		t.Errorf("exit %d, finished %v", code, fin)
	}
	if len(cl.releasedIDs()) != 0 {
		t.Error("released a partition that was never allocated")
	}
}

func TestLifecycle_releaseErrorTurnsPassIntoError_fakeCluster(t *testing.T) {
	cl := &fakeCluster{nodes: twoNodes(), relErr: errors.New("state file locked")}
	_, msgs, _ := runInProcess(t, context.Background(), writeSpec(t, twoNodeSpec), "ok", cl)
	if fin := finishedOf(msgs); fin["result"] != "error" || !strings.Contains(fin["fail_reason"].(string), "state file locked") {
		t.Errorf("finished %v", fin)
	}
}

func TestLifecycle_noClusterBackend(t *testing.T) {
	code, msgs, _ := runInProcess(t, context.Background(), writeSpec(t, twoNodeSpec), "ok", nil)
	fin := finishedOf(msgs)
	if code != 0 || fin["result"] != "error" || !strings.Contains(fin["fail_reason"].(string), "no cluster backend") {
		t.Errorf("exit %d, finished %v", code, fin)
	}
}

func TestLifecycle_panicFinishesWithError_fakeCluster(t *testing.T) {
	cl := &fakeCluster{nodes: twoNodes(), panicOn: "Allocate"}
	code, msgs, _ := runInProcess(t, context.Background(), writeSpec(t, twoNodeSpec), "ok", cl)
	fin := finishedOf(msgs)
	if code != 1 || fin["result"] != "error" || fin["fail_reason"] != "runner internal error: panic: fake cluster exploded" {
		t.Errorf("exit %d, finished %v", code, fin)
	}
}

func TestLifecycle_cancelInterruptsAndReleases_fakeCluster(t *testing.T) {
	cl := &fakeCluster{nodes: twoNodes()}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	cl.onAllocate = func() {
		go func() {
			time.Sleep(200 * time.Millisecond) // let the body start; either way the test is interrupted
			cancel(errors.New("job cancelled"))
		}()
	}
	code, msgs, _ := runInProcess(t, ctx, writeSpec(t, twoNodeSpec), "sleep", cl)
	fin := finishedOf(msgs)
	if code != 0 || fin["result"] != "interrupted" || fin["fail_reason"] != "Test interrupted: job cancelled" {
		t.Errorf("exit %d, finished %v", code, fin)
	}
	if len(cl.releasedIDs()) != 1 {
		t.Errorf("released %v after interrupt", cl.releasedIDs())
	}
}

// The backend's warnings reach the test's debug.log (they used to go to a
// discard logger, hiding failed lease renewals and resource sweeps);
// below warning they stay out of it.
func TestLifecycle_backendWarningsInTestLog_fakeCluster(t *testing.T) {
	cl := &fakeCluster{nodes: twoNodes()}
	s := newUnixStatusServer(t)
	out := filepath.Join(t.TempDir(), "out")
	opts := Options{
		Args: []string{runnerArgv0, "task-run", "-i", "1-ok", "-j", "job", "-u", writeSpec(t, twoNodeSpec), "test=ok",
			"output_dir=" + out, "-s", s.URI},
		Stderr:  io.Discard,
		Environ: os.Environ(),
		NewCluster: func(_ context.Context, _ RunConfig, log *slog.Logger) (Cluster, error) {
			log.Info("chatter that stays out")
			log.Warn("removing resources of reclaimed partitions", "err", "node \"n1\": refused\nforged line")
			return cl, nil
		},
	}
	Main(context.Background(), opts)
	msgs := s.waitFor(hasFinished)
	text := logText(msgs)
	if !strings.Contains(text, `level=WARN msg="removing resources of reclaimed partitions" err="node \"n1\": refused\nforged line"`) {
		t.Errorf("the warning is not in the test's log as one line:\n%s", text)
	}
	if strings.Contains(text, "chatter") {
		t.Errorf("an info record reached the test's log:\n%s", text)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "forged line") {
			t.Errorf("a value started a line of its own:\n%s", text)
		}
	}
}
