package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
)

// The node set: in a lab of a thousand nodes the node records are nearly
// all of the state, while what an allocation changes is a partition. So a
// store keeps the nodes it last read or wrote as a NodeSet, decoded and
// checked once, and builds each operation's State on it: an update that
// leaves the nodes as they were neither decodes, checks, copies nor
// encodes them, and its cost does not grow with the lab (the file store
// keeps them in a file of their own, etcd in keys it follows by revision).

// NodeSet is a checked list of node records, never changed once made.
// Stores build States on it (StateOn) and get it back from a State whose
// nodes did not change (State.NodeSet).
type NodeSet struct {
	nodes []Node
	index map[string]int
}

// NewNodeSet checks nodes (each record as RegisterNode would, and no name
// twice) and returns them as a set. The set keeps nodes: the caller must
// not change them afterwards.
func NewNodeSet(nodes []Node) (*NodeSet, error) {
	for i := range nodes {
		if err := validateNode(&nodes[i]); err != nil {
			return nil, err
		}
	}
	return newNodeSet(nodes)
}

// newNodeSet is NewNodeSet for records checked already.
func newNodeSet(nodes []Node) (*NodeSet, error) {
	ns := &NodeSet{nodes: nodes, index: make(map[string]int, len(nodes))}
	for i := range nodes {
		if _, dup := ns.index[nodes[i].Name]; dup {
			return nil, fmt.Errorf("node %q is registered twice", nodes[i].Name)
		}
		ns.index[nodes[i].Name] = i
	}
	return ns, nil
}

var emptyNodeSet = &NodeSet{index: map[string]int{}}

// Len is the number of nodes.
func (ns *NodeSet) Len() int { return len(ns.nodes) }

// Has reports whether n is the set's record of its name as the set holds
// it: the same fields and the very same label and property maps (what a
// State built on the set with fixed nodes hands out). A record equal in
// content but with maps of its own is not the set's.
func (ns *NodeSet) Has(n *Node) bool {
	i, ok := ns.index[n.Name]
	return ok && sameRecord(n, &ns.nodes[i])
}

// fixedNodesKey marks a context whose Update leaves the node records alone.
type fixedNodesKey struct{}

// WithFixedNodes marks the Updates run with ctx as leaving node records
// alone: their fn may read s.Nodes and change other parts of the state, or
// assign whole records or maps, but must never change a node's Labels or
// Properties map in place. The store may then hand fn the maps it keeps
// instead of copies, which is what makes an allocation's cost independent
// of the number of nodes. Allocate, Release, Renew and the other
// per-partition operations of this package run so.
func WithFixedNodes(ctx context.Context) context.Context {
	return context.WithValue(ctx, fixedNodesKey{}, true)
}

// FixedNodes reports whether ctx was marked by WithFixedNodes, for stores.
func FixedNodes(ctx context.Context) bool {
	v, _ := ctx.Value(fixedNodesKey{}).(bool)
	return v
}

// StateOn gives st the nodes of ns: their records in a slice of st's own,
// whose maps are the set's when fixed (see WithFixedNodes), copies
// otherwise. st.NodesUnchanged then tells whether they are still those.
func StateOn(st *State, ns *NodeSet, fixed bool) {
	st.Nodes = slices.Clone(ns.nodes)
	if st.Nodes == nil {
		st.Nodes = []Node{}
	}
	if !fixed {
		for i := range st.Nodes {
			n := &st.Nodes[i]
			n.Labels, n.Properties = maps.Clone(n.Labels), maps.Clone(n.Properties)
		}
	}
	st.base, st.fixed = ns, fixed
}

// NodesUnchanged reports whether s's nodes are still the records of the
// set s was built on (StateOn), in the same order.
func (s *State) NodesUnchanged() bool { return s.NodesAre(s.base) }

// NodesAre reports whether s was built on ns (StateOn) and its nodes are
// still ns's records, in the same order. A store asks it of the set it
// built s on: a state copied over from another store (*s = *other) is
// built on another set, and its nodes are written.
func (s *State) NodesAre(ns *NodeSet) bool {
	b := s.base
	if b == nil || b != ns || len(s.Nodes) != len(b.nodes) {
		return false
	}
	for i := range s.Nodes {
		n, o := &s.Nodes[i], &b.nodes[i]
		if s.fixed {
			if !sameRecord(n, o) {
				return false
			}
		} else if !sameFields(n, o) || !sameValues(n.Labels, o.Labels) || !sameValues(n.Properties, o.Properties) {
			return false
		}
	}
	return true
}

// NodeSet returns s's nodes as a set: the one s was built on if they did
// not change, otherwise a new one, checked, holding copies (so that
// nothing the caller still holds changes it).
func (s *State) NodeSet() (*NodeSet, error) {
	if s.NodesUnchanged() {
		return s.base, nil
	}
	nodes := slices.Clone(s.Nodes)
	for i := range nodes {
		n := &nodes[i]
		n.Labels, n.Properties = maps.Clone(n.Labels), maps.Clone(n.Properties)
	}
	return NewNodeSet(nodes)
}

// sameRecord: the same fields and the same maps (not only equal ones).
func sameRecord(a, b *Node) bool {
	return sameFields(a, b) && sameMap(a.Labels, b.Labels) && sameMap(a.Properties, b.Properties)
}

func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// sameFields compares everything but the maps. Times compare as Go
// values, location included: a time that reads the same but would encode
// differently is a change.
func sameFields(a, b *Node) bool {
	return a.Name == b.Name && a.Address == b.Address && a.Hostname == b.Hostname && a.User == b.User &&
		a.ShellPort == b.ShellPort && a.ProxyPort == b.ProxyPort && a.AgentBaseDir == b.AgentBaseDir &&
		a.KeyFile == b.KeyFile && a.KnownHosts == b.KnownHosts && a.AgentBind == b.AgentBind &&
		a.TokenFile == b.TokenFile && a.Arch == b.Arch && a.PropertiesAt == b.PropertiesAt && a.Agent == b.Agent
}

// sameValues compares the maps of a record with their copies.
func sameValues(a, b map[string]any) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !sameValue(va, vb) {
			return false
		}
	}
	return true
}

func sameValue(a, b any) bool {
	switch a.(type) {
	case nil, string, bool, int64, float64, json.Number:
		return a == b
	}
	return reflect.DeepEqual(a, b)
}

// DecodeNode decodes one node record as the state file holds it (JSON of
// a Node, no unknown fields, numbers in labels and properties restored to
// the types they had) and checks it; for stores that keep a record per
// key.
func DecodeNode(data []byte) (Node, error) {
	var n Node
	if err := decodeStrict(data, &n, "node record"); err != nil {
		return Node{}, err
	}
	if err := restoreNodeNumbers(&n); err != nil {
		return Node{}, err
	}
	if err := validateNode(&n); err != nil {
		return Node{}, err
	}
	return n, nil
}

func restoreNodeNumbers(n *Node) error {
	var err error
	if n.Labels, err = restoreStateNumbers(n.Labels); err != nil {
		return fmt.Errorf("node %q labels: %w", n.Name, err)
	}
	if n.Properties, err = restoreStateNumbers(n.Properties); err != nil {
		return fmt.Errorf("node %q properties: %w", n.Name, err)
	}
	return nil
}

// UnmarshalStateOn decodes a state document without nodes (its "nodes"
// absent or empty) and gives it the nodes of ns (StateOn), then checks
// the whole as UnmarshalState does, without checking ns's records again.
func UnmarshalStateOn(data []byte, ns *NodeSet, fixed bool) (*State, error) {
	st, err := decodeDoc(data)
	if err != nil {
		return nil, err
	}
	if len(st.Nodes) != 0 {
		return nil, errors.New("the document holds nodes of its own")
	}
	StateOn(st, ns, fixed)
	if err := st.validateKnown(true); err != nil {
		return nil, err
	}
	return st, nil
}

// Nodes returns the set's records. Their maps are the set's: never change
// them in place.
func (ns *NodeSet) Nodes() []Node { return slices.Clone(ns.nodes) }
