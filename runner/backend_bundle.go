package runner

import "context"

var _ agentCaller = (*backend)(nil)

// CallAgent calls method on the agent of one of this test's nodes; a lost
// node answers at once with why it was lost.
func (b *backend) CallAgent(ctx context.Context, node PartitionNode, method string, args ...any) (any, error) {
	nc, err := b.conn(node.Name)
	if err != nil {
		return nil, err
	}
	return nc.Call(ctx, method, args...)
}
