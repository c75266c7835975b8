package runner

import (
	"context"
	"errors"
	"net"
	"path"

	"github.com/vtcluster/vtcluster/cluster"
)

// SyncAliasDir is the directory, in a node's agent directory, where the
// agent places the sync command aliases (lava-send, rhts-sync-set, ...) as
// links to itself; the test's processes get it first in PATH.
const SyncAliasDir = "sync-bin"

// ForwardSync opens the way from the node's processes to the test's sync
// service as the log path does: an SSH remote forward of a fresh Unix
// socket in the node's 0700 agent directory, so only the SSH user (the
// agent's, whose processes the test starts) can connect, and nothing
// listens on a network. Direct-mode nodes (no SSH) cannot.
func (b *backend) ForwardSync(ctx context.Context, node PartitionNode, serve func(net.Listener)) (string, string, func(context.Context), error) {
	nc, err := b.conn(node.Name)
	if err != nil {
		return "", "", nil, err
	}
	n := nc.Node()
	if n.AgentBind == cluster.AgentBindDirect {
		return "", "", nil, errors.New("a direct-mode node has no SSH connection to forward the sync socket over")
	}
	// The job's connection holder when there is one (no SSH command of
	// this test's own to remove the socket afterwards).
	link, err := nc.Link(ctx)
	if err != nil {
		return "", "", nil, err
	}
	sock, err := cluster.NewSyncSocketPath(n)
	if err != nil {
		return "", "", nil, err
	}
	ln, err := link.ListenRemoteUnix(ctx, sock)
	if err != nil {
		return "", "", nil, err
	}
	serve(ln)
	cleanup := func(context.Context) {
		// Closing also removes the socket file, which sshd leaves behind.
		ln.Close()
	}
	// The agent placed the aliases when it started (bridge's agent command).
	return sock, path.Join(n.AgentDir(), SyncAliasDir), cleanup, nil
}

// StartBackground starts argv on the node with the agent's process.start,
// for the test's owner; stop kills what is still running.
func (b *backend) StartBackground(ctx context.Context, node PartitionNode, argv []string, opts ExecOptions) (func(context.Context), error) {
	nc, err := b.conn(node.Name)
	if err != nil {
		return nil, err
	}
	id, err := nc.Start(ctx, argv, b.runOptions(node, opts))
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) {
		if _, err := b.conn(node.Name); err != nil {
			return
		}
		_, _ = nc.Call(ctx, "process.kill", id)
	}, nil
}
