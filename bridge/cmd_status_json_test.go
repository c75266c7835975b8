package bridge

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vtcluster/vtcluster/cluster"
)

// The keys of "status --json" and "node list --json" are what scripts read:
// the rows embed cluster's types, so this pins what those types write.
func TestStatusJSON_keysAndLease(t *testing.T) {
	zero := 0.0
	for _, c := range []struct {
		row  statusJSON
		want string
	}{
		{statusJSON{NodeStatus: cluster.NodeStatus{Name: "n1", Address: "192.0.2.1", Bind: "tunnel", AgentUp: true}},
			`{"node":"n1","address":"192.0.2.1","agent_bind":"tunnel","agent_up":true}`},
		// A lease that ran out is 0, not left out as a row without a partition is.
		{statusJSON{NodeStatus: cluster.NodeStatus{Name: "n1", Bind: "tunnel", Partition: "p1", Tag: "src", Owner: "job", OwnerHost: "h", LeaseLeft: -3}, LeaseSecondsLeft: &zero},
			`{"node":"n1","address":"","agent_bind":"tunnel","agent_up":false,"partition":"p1","tag":"src","owner":"job","owner_host":"h","lease_seconds_left":0}`},
	} {
		if b, err := json.Marshal(c.row); err != nil || string(b) != c.want {
			t.Errorf("status row = %s, %v\nwant %s", b, err, c.want)
		}
	}
}

func TestNodeJSON_keys(t *testing.T) {
	n := cluster.Node{Name: "n1", Address: "192.0.2.1", User: "root", ShellPort: 22, ProxyPort: 9999, AgentBaseDir: "/d", AgentBind: "tunnel"}
	want := `{"name":"n1","address":"192.0.2.1","user":"root","shell_port":22,"proxy_port":9999,"agent_base_dir":"/d","agent_bind":"tunnel"}`
	if b, err := json.Marshal(toNodeJSON(n)); err != nil || string(b) != want {
		t.Errorf("node = %s, %v\nwant %s", b, err, want)
	}
	n.Agent.PID = 42
	if b, _ := json.Marshal(toNodeJSON(n)); !json.Valid(b) || !strings.Contains(string(b), `"agent_pid":42`) {
		t.Errorf("node with an agent = %s, want agent_pid 42", b)
	}
}
