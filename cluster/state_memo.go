package cluster

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"sync"
)

// The node memo: every store operation reads, checks and writes the whole
// state, and in a lab of a thousand nodes the nodes are nearly all of it,
// while what changes from one operation to the next is a partition. So the
// nodes last read or written are kept, decoded and checked, with the bytes
// they were read from and the bytes they were written as: a document whose
// nodes are those bytes is decoded without them, a state whose nodes are
// still those nodes is checked without them and written with those bytes.
// The document is the same as without the memo, byte for byte; only the
// work per operation no longer grows with the lab.
//
// One entry for the process: a runner, a CLI command and the etcd store
// each work on one cluster. Nodes whose labels or properties hold more than
// plain values (lists, objects) are never memoized.

type nodeMemo struct {
	raw      []byte // the nodes array as last read
	indented []byte // as the file store writes it
	nodes    []Node // never handed out: callers get clones
}

var memo struct {
	mu sync.Mutex
	m  *nodeMemo
}

func currentMemo() *nodeMemo {
	memo.mu.Lock()
	defer memo.mu.Unlock()
	return memo.m
}

// remember memoizes nodes (checked already), read as raw (nil: written).
func remember(raw []byte, nodes []Node) {
	for i := range nodes {
		if !plainValues(nodes[i].Labels) || !plainValues(nodes[i].Properties) {
			return
		}
	}
	m := &nodeMemo{nodes: cloneNodes(nodes)}
	ind, err := json.MarshalIndent(m.nodes, "  ", "  ")
	if err != nil {
		return
	}
	m.indented = ind
	m.raw = ind
	if raw != nil {
		m.raw = bytes.Clone(raw)
	}
	memo.mu.Lock()
	memo.m = m
	memo.mu.Unlock()
}

// memoHolds reports whether nodes are the memoized nodes.
func memoHolds(nodes []Node) bool { return memoOf(nodes) != nil }

// memoOf returns the memo if nodes are its nodes, else nil.
func memoOf(nodes []Node) *nodeMemo {
	if m := currentMemo(); m != nil && slices.EqualFunc(nodes, m.nodes, nodeEqual) {
		return m
	}
	return nil
}

// fileHead is how every document the file store writes begins; the nodes
// array follows at depth 1, and "partitions" after it.
var (
	fileHead = []byte("{\n  \"version\": 1,\n  \"nodes\": ")
	fileNext = []byte(",\n  \"partitions\": ")
)

// decodeFileDoc decodes a document in the file store's own layout whose
// nodes are the memo's, finding them by comparing bytes instead of
// scanning the JSON; ok is false for any other document.
func decodeFileDoc(data []byte) (st *State, ok bool) {
	m := currentMemo()
	if m == nil || !bytes.HasPrefix(data, fileHead) {
		return nil, false
	}
	rest := data[len(fileHead):]
	if !bytes.HasPrefix(rest, m.indented) || !bytes.HasPrefix(rest[len(m.indented):], fileNext) {
		return nil, false
	}
	doc := make([]byte, 0, len(data)-len(m.indented)+2)
	doc = append(append(append(doc, fileHead...), "[]"...), rest[len(m.indented):]...)
	st, err := decodeDoc(doc)
	if err != nil || len(st.Nodes) != 0 {
		return nil, false
	}
	st.Nodes = cloneNodes(m.nodes)
	if st.validateWith(true) != nil {
		return nil, false
	}
	return st, true
}

func decodeState(data []byte) (*State, error) {
	if st, ok := decodeFileDoc(data); ok {
		return st, nil
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) == nil {
		raw := top["nodes"]
		if m := currentMemo(); m != nil && raw != nil && (bytes.Equal(raw, m.raw) || bytes.Equal(raw, m.indented)) {
			top["nodes"] = json.RawMessage("[]")
			if rest, err := json.Marshal(top); err == nil {
				if st, err := decodeDoc(rest); err == nil {
					st.Nodes = cloneNodes(m.nodes)
					if st.validate() == nil {
						return st, nil
					}
				}
			}
		}
	}
	// Everything else, including every error, the whole way.
	st, err := decodeDoc(data)
	if err != nil {
		return nil, err
	}
	if err := st.validate(); err != nil {
		return nil, err
	}
	if raw := top["nodes"]; raw != nil {
		remember(raw, st.Nodes)
	}
	return st, nil
}

// nodesLine is how the file store's document names its nodes: "version"
// comes first, then "nodes", both at depth 1.
var nodesLine = []byte("\n  \"nodes\": []")

func encodeState(st *State) ([]byte, error) { return encodeStateWith(st, memoOf(st.Nodes)) }

// encodeStateWith is encodeState; m is memoOf(st.Nodes), for a caller that
// has just compared them (nil: they differ).
func encodeStateWith(st *State, m *nodeMemo) ([]byte, error) {
	if m == nil {
		data, err := encodeStateFull(st)
		if err == nil {
			remember(nil, st.Nodes)
		}
		return data, err
	}
	shadow := *st
	shadow.Nodes = []Node{}
	data, err := encodeStateFull(&shadow)
	if err != nil {
		return nil, err
	}
	i := bytes.Index(data, nodesLine)
	if i < 0 {
		return encodeStateFull(st)
	}
	at := i + len(nodesLine) - len("[]")
	out := make([]byte, 0, len(data)+len(m.indented))
	out = append(out, data[:at]...)
	out = append(out, m.indented...)
	return append(out, data[at+len("[]"):]...), nil
}

// plainValues reports whether every value of m is a string, number, bool
// or null, which nodeEqual compares and cloneNodes copies.
func plainValues(m map[string]any) bool {
	for _, v := range m {
		if !plain(v) {
			return false
		}
	}
	return true
}

func plain(v any) bool {
	switch v.(type) {
	case nil, string, bool, int64, float64, json.Number:
		return true
	}
	return false
}

// SameNode reports whether a and b are the same record, for stores that
// keep what they encoded (etcd): labels and properties holding more than
// plain values never compare equal.
func SameNode(a, b Node) bool { return nodeEqual(a, b) }

func nodeEqual(a, b Node) bool {
	return a.Name == b.Name && a.Address == b.Address && a.Hostname == b.Hostname && a.User == b.User &&
		a.ShellPort == b.ShellPort && a.ProxyPort == b.ProxyPort && a.AgentBaseDir == b.AgentBaseDir &&
		a.KeyFile == b.KeyFile && a.KnownHosts == b.KnownHosts && a.AgentBind == b.AgentBind &&
		a.TokenFile == b.TokenFile && a.Arch == b.Arch && a.PropertiesAt.Equal(b.PropertiesAt) &&
		a.PropertiesAt.Location() == b.PropertiesAt.Location() && a.Agent.PID == b.Agent.PID &&
		a.Agent.StartedAt.Equal(b.Agent.StartedAt) && a.Agent.StartedAt.Location() == b.Agent.StartedAt.Location() &&
		a.Agent.Version == b.Agent.Version && a.Agent.SHA256 == b.Agent.SHA256 &&
		plainEqual(a.Labels, b.Labels) && plainEqual(a.Properties, b.Properties)
}

// plainEqual compares maps the memo holds (plainValues) with any map.
func plainEqual(a, b map[string]any) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !plain(va) || va != vb {
			return false
		}
	}
	return true
}

func cloneNodes(nodes []Node) []Node {
	out := make([]Node, len(nodes))
	for i, n := range nodes {
		n.Labels = maps.Clone(n.Labels)
		n.Properties = maps.Clone(n.Properties)
		out[i] = n
	}
	return out
}
