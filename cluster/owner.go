package cluster

// The controller's side of the agents' owner service (agent/svc_owner.go):
// a node handed to a partition is first acquired on the node itself, so
// that a controller with another state (or a state restored from a
// backup) cannot take it while the holder's test runs. The holder's
// liveness probes renew that lease; when its process dies the lease ends
// and the node is free again.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// NodeLease is the lease a runner holds a node's agent under. Its
// liveness probes renew it every second; a controller that died loses the
// node this long after its last probe (at once, for another process of
// the same host, which can see that the holder is gone).
const NodeLease = 30 * time.Second

// nodeHeldFault is agent.NodeHeldFault, the fault of a refused hand-over.
const nodeHeldFault = "NodeHeldError"

// NodeHolder is who a node's agent says holds it.
type NodeHolder struct {
	// ID is the holder's partition id (in its own controller's state).
	ID      string    `json:"id"`
	Owner   Owner     `json:"owner"`
	State   string    `json:"state,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
}

// NodeTakenError says that a node's agent refused a hand-over because
// another owner's lease runs there: that owner is most likely a test of
// another controller using the same hosts with a separate state.
type NodeTakenError struct {
	Node   string
	Holder NodeHolder // zero when the agent could not say
	Err    error      // the agent's fault
}

func (e *NodeTakenError) Error() string {
	if e.Holder.Owner.Host == "" {
		return fmt.Sprintf("node %q is held by another controller: %v", e.Node, e.Err)
	}
	return fmt.Sprintf("node %q is held by controller host %s (partition %s of %s) until %s, outside this state",
		e.Node, e.Holder.Owner.Host, e.Holder.ID, e.Holder.Owner, e.Holder.Expires.UTC().Format(time.RFC3339))
}

func (e *NodeTakenError) Unwrap() error { return e.Err }

func isNodeHeld(err error) bool {
	f, ok := xmlrpc.AsFault(err)
	return ok && f.ExcType == nodeHeldFault
}

// AcquireNode makes partition id, of owner o, the holder of nc's node for
// lease, as the node's agent records it. A holder the node names that is
// a process of this host and is gone is replaced. Errors: *NodeTakenError
// when another owner's lease runs; call errors.
func AcquireNode(ctx context.Context, nc *NodeConn, id string, o Owner, state string, lease time.Duration) error {
	info := map[string]any{
		"host": o.Host, "pid": o.PID, "pid_start": strconv.FormatUint(o.PIDStart, 10),
		"boot_id": o.BootID, "job_id": o.JobID, "test_id": o.TestID, "state": state,
	}
	_, err := nc.Call(ctx, "owner.acquire", id, info, lease.Seconds())
	if err == nil || !isNodeHeld(err) {
		return err
	}
	h, herr := NodeHolderOf(ctx, nc)
	if herr != nil || h == nil {
		return &NodeTakenError{Node: nc.Node().Name, Err: err}
	}
	if gone, _ := h.Owner.gone(); gone {
		_, err = nc.Call(ctx, "owner.acquire", id, info, lease.Seconds(), h.ID)
		if err == nil || !isNodeHeld(err) {
			return err
		}
	}
	return &NodeTakenError{Node: nc.Node().Name, Holder: *h, Err: err}
}

// RenewNode renews partition id's hold on nc's node. A *NodeTakenError
// means another owner took the node: this one has lost it.
func RenewNode(ctx context.Context, nc *NodeConn, id string, lease time.Duration) error {
	_, err := nc.Call(ctx, "owner.renew", id, lease.Seconds())
	if err != nil && isNodeHeld(err) {
		return &NodeTakenError{Node: nc.Node().Name, Err: err}
	}
	return err
}

// ReleaseNode ends partition id's hold on nc's node, if it has one.
func ReleaseNode(ctx context.Context, nc *NodeConn, id string) error {
	_, err := nc.Call(ctx, "owner.release", id)
	return err
}

// NodeHolderOf returns who nc's node says holds it, nil when nobody.
func NodeHolderOf(ctx context.Context, nc *NodeConn) (*NodeHolder, error) {
	v, err := nc.Call(ctx, "owner.show")
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	str := func(k string) string { s, _ := m[k].(string); return s }
	if str("id") == "" {
		return nil, nil
	}
	h := &NodeHolder{ID: str("id"), State: str("state")}
	h.Owner = Owner{Host: str("host"), BootID: str("boot_id"), JobID: str("job_id"), TestID: str("test_id")}
	switch pid := m["pid"].(type) {
	case int64:
		h.Owner.PID = int(pid)
	case int:
		h.Owner.PID = pid
	}
	h.Owner.PIDStart, _ = strconv.ParseUint(str("pid_start"), 10, 64)
	h.Expires, _ = time.Parse(time.RFC3339Nano, str("expires"))
	return h, nil
}

// AsNodeTaken returns the *NodeTakenError in err's chain.
func AsNodeTaken(err error) (*NodeTakenError, bool) {
	var e *NodeTakenError
	ok := errors.As(err, &e)
	return e, ok
}

// heldElsewhere returns who holds nc's node when that is a live holder
// this controller's state does not know: a test of another controller
// whose agent must not be stopped under it. nil otherwise, and when the
// agent cannot tell (an agent without the owner service).
func (c *Controller) heldElsewhere(ctx context.Context, nc *NodeConn) *NodeHolder {
	h, err := NodeHolderOf(ctx, nc)
	if err != nil || h == nil || !time.Now().Before(h.Expires) {
		return nil
	}
	if h.State != "" && h.State == StoreName(c.st) {
		// Our own state's holder: its partition is live (and shown by
		// this state), or was released or reclaimed here and its hold on
		// the node is only waiting to lapse.
		return nil
	}
	s, err := c.st.Load(ctx)
	if err != nil || s.Partition(h.ID) != nil {
		return nil
	}
	return h
}

// StoreName names a state store as the nodes' holders record it (its file
// or its etcd prefix): how a controller tells its own holds from those of
// a controller with another state.
func StoreName(st Store) string {
	if n, ok := st.(interface{ Path() string }); ok {
		return n.Path()
	}
	return ""
}
