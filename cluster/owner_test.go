package cluster

import (
	"testing"

	"github.com/vtcluster/vtcluster/agent"
)

// The controller recognises the agent's refusal by its exception type.
func TestNodeHeldFault_isTheAgents(t *testing.T) {
	if nodeHeldFault != agent.NodeHeldFault {
		t.Fatalf("cluster expects fault %q, the agent raises %q", nodeHeldFault, agent.NodeHeldFault)
	}
}
