package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/vtcluster/vtcluster/cluster"
)

// Exec runs argv on the node through the agent's process service.
func (b *backend) Exec(ctx context.Context, node PartitionNode, argv []string, opts ExecOptions) (ExecResult, error) {
	nc, err := b.conn(node.Name)
	if err != nil {
		return ExecResult{}, err
	}
	endRun := timeSpan(ctx, "body: process.run")
	r, err := nc.Run(ctx, argv, b.runOptions(node, opts))
	endRun()
	if err != nil {
		return ExecResult{}, err
	}
	return ExecResult(r), nil
}

// runOptions are the options of a command the test starts on node: the
// test's owner, so the next test's hand-over stops what outlives it.
func (b *backend) runOptions(node PartitionNode, opts ExecOptions) cluster.RunOptions {
	b.mu.Lock()
	owner := b.owners[node.Name]
	b.mu.Unlock()
	return cluster.RunOptions{Timeout: opts.Timeout, Env: opts.Env, Owner: owner, LogOutput: true}
}

var _ agentCaller = (*backend)(nil)

// CallAgent calls method on the agent of one of this test's nodes, over
// the test's connection to it; a lost node answers at once with why it was
// lost.
func (b *backend) CallAgent(ctx context.Context, node PartitionNode, method string, args ...any) (any, error) {
	nc, err := b.conn(node.Name)
	if err != nil {
		return nil, err
	}
	return nc.Call(ctx, method, args...)
}

// Collect fetches each node's service log and the paths the test asked
// for into dir/<tag>/.
func (b *backend) Collect(ctx context.Context, p *Partition, paths map[string][]string, dir string) error {
	var errs []error
	for pn, nc := range b.partitionConns(p, &errs) {
		local := filepath.Join(dir, pn.Tag)
		if err := os.MkdirAll(local, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		want := append([]string(nil), paths[pn.Tag]...)
		b.mu.Lock()
		mark, marked := b.logMarks[pn.Name]
		b.mu.Unlock()
		// Asked also when the log is marked: the agent writes its logs in
		// batches (agent/logfile.go) and writes what it holds before it
		// answers this, so the copy below has the test's last lines.
		endName := timeSpan(ctx, "collect: service log name")
		v, err := nc.Call(ctx, "core.get_service_log_filename")
		endName()
		if s, ok := v.(string); err == nil && ok && s != "" && !marked {
			want = append([]string{s}, want...)
		}
		if n := nc.Node(); n.Unauthenticated() {
			if len(paths[pn.Tag]) > 0 {
				errs = append(errs, fmt.Errorf("node %q: files cannot be fetched from a direct-mode node without SSH", pn.Name))
			}
			continue
		}
		link, err := nc.Link(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		endCopy := timeSpan(ctx, "collect: copy")
		if marked {
			// Only what the service log gained during the test: the whole
			// log grows through the job (up to its 10 MiB rotation).
			if err := link.CopyTail(ctx, mark.path, filepath.Join(local, path.Base(mark.path)), mark.size); err != nil {
				errs = append(errs, err)
			}
		}
		for _, rp := range want {
			name := path.Base(path.Clean(rp))
			if name == "/" || name == "." || name == ".." {
				errs = append(errs, fmt.Errorf("node %q: cannot collect %q", pn.Name, rp))
				continue
			}
			if err := link.CopyFrom(ctx, rp, filepath.Join(local, name)); err != nil {
				errs = append(errs, err)
			}
		}
		endCopy()
	}
	return errors.Join(errs...)
}

// logMark is where a node's service log stood when a test got the node.
type logMark struct {
	path string
	size int64
}

// markServiceLog notes the service log's size on a tunnel-mode node, so
// Collect copies only this test's part of it. Without a mark (a failure
// here, a direct-mode node) Collect copies the whole log, as before.
func (b *backend) markServiceLog(ctx context.Context, nc *cluster.NodeConn) {
	if nc.Node().AgentBind == cluster.AgentBindDirect {
		return
	}
	defer timeSpan(ctx, "partition: mark service log")()
	v, err := nc.Call(ctx, "core.get_service_log_filename")
	p, _ := v.(string)
	if err != nil || p == "" {
		return
	}
	link, err := nc.Link(ctx)
	if err != nil {
		return
	}
	size, err := link.Size(ctx, p)
	if err != nil {
		return
	}
	b.mu.Lock()
	if b.logMarks == nil {
		b.logMarks = map[string]logMark{}
	}
	b.logMarks[nc.Node().Name] = logMark{p, size}
	b.mu.Unlock()
}
