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
	r, err := nc.Run(ctx, argv, b.runOptions(node, opts))
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
	for _, pn := range p.Nodes {
		nc, err := b.conn(pn.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		local := filepath.Join(dir, pn.Tag)
		if err := os.MkdirAll(local, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		want := append([]string(nil), paths[pn.Tag]...)
		if v, err := nc.Call(ctx, "core.get_service_log_filename"); err == nil {
			if s, ok := v.(string); ok && s != "" {
				want = append([]string{s}, want...)
			}
		}
		if n := nc.Node(); n.Unauthenticated() {
			if len(paths[pn.Tag]) > 0 {
				errs = append(errs, fmt.Errorf("node %q: files cannot be fetched from a direct-mode node without SSH", pn.Name))
			}
			continue
		}
		ssh, err := nc.SSH(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rp := range want {
			name := path.Base(path.Clean(rp))
			if name == "/" || name == "." || name == ".." {
				errs = append(errs, fmt.Errorf("node %q: cannot collect %q", pn.Name, rp))
				continue
			}
			if err := ssh.CopyFrom(ctx, rp, filepath.Join(local, name)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
