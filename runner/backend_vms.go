package runner

import "context"

var _ vmCluster = (*backend)(nil)

// CallAgent calls one method of the agent on node, over the test's
// connection to it.
func (b *backend) CallAgent(ctx context.Context, node PartitionNode, method string, args ...any) (any, error) {
	nc, err := b.conn(node.Name)
	if err != nil {
		return nil, err
	}
	return nc.Call(ctx, method, args...)
}
