package resmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/tidwall/gjson"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/resmgr/node"
)

// The controller side. Pools and resources live in cluster.State.Resources
// (same store, lock and atomic writes as the partitions), so every process
// (CLI, job hooks, each test's runner) sees the same record, and what a
// crashed process leaves behind is found by the next one: resources owned
// by a partition are claims of that partition, and a reclaimed partition's
// claims are swept (see Sweep).

// Conn is one node's agent connection.
type Conn interface {
	Call(ctx context.Context, method string, args ...any) (any, error)
	Close() error
}

// Dialer connects to a registered node's agent.
type Dialer func(ctx context.Context, n cluster.Node) (Conn, error)

// ConnectDialer dials with cluster.Connect.
func ConnectDialer(opts cluster.ConnectOptions) Dialer {
	return func(ctx context.Context, n cluster.Node) (Conn, error) {
		return cluster.Connect(ctx, n, opts)
	}
}

// Manager is the controller-side resource manager.
type Manager struct {
	st   cluster.Store
	dial Dialer
	log  *slog.Logger

	mu    sync.Mutex
	conns map[string]Conn // kept until Close: one login per node, not per call
	skip  map[string]bool // nodes known to be unreachable: calls fail at once
}

// NewManager returns a manager on st reaching nodes with dial.
func NewManager(st cluster.Store, dial Dialer, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{st: st, dial: dial, log: log, conns: map[string]Conn{}, skip: map[string]bool{}}
}

// SkipNode makes every later call to node fail at once with
// ErrNodeSkipped, for a caller that already knows the node is gone.
func (m *Manager) SkipNode(node string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.skip[node] = true
}

// ErrNodeSkipped is the cause of a call to a node given to SkipNode.
var ErrNodeSkipped = errors.New("node is unreachable; not contacted")

// withoutSkipped drops from err (a tree of joined errors) the failures
// caused by ErrNodeSkipped: whoever skipped the node has reported it.
func withoutSkipped(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var kept []error
		for _, e := range j.Unwrap() {
			if e = withoutSkipped(e); e != nil {
				kept = append(kept, e)
			}
		}
		return errors.Join(kept...)
	}
	if errors.Is(err, ErrNodeSkipped) {
		return nil
	}
	return err
}

// Close closes the node connections the manager opened.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, c := range m.conns {
		c.Close()
		delete(m.conns, k)
	}
	return nil
}

// conn returns node's connection, dialing it once. The dial (an SSH
// login) runs without m.mu, so a slow node never holds up calls to the
// others; two callers racing for one node keep the first connection.
func (m *Manager) conn(ctx context.Context, n cluster.Node) (Conn, error) {
	m.mu.Lock()
	c := m.conns[n.Name]
	m.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := m.dial(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.conns[n.Name]; old != nil {
		c.Close()
		return old, nil
	}
	m.conns[n.Name] = c
	return c, nil
}

func (m *Manager) update(ctx context.Context, fn func(s *cluster.State, r *record) error) error {
	return m.st.Update(ctx, func(s *cluster.State) error {
		r, err := loadRecord(s)
		if err != nil {
			return err
		}
		if err := fn(s, r); err != nil {
			return err
		}
		return r.store(s)
	})
}

func (m *Manager) snapshot(ctx context.Context) (*cluster.State, *record, error) {
	s, err := m.st.Load(ctx)
	if err != nil {
		return nil, nil, err
	}
	r, err := loadRecord(s)
	return s, r, err
}

// call runs resource.<method> on node and returns the reply's "out",
// turning [1, {"out": msg}] into a *NodeError.
func (m *Manager) call(ctx context.Context, s *cluster.State, node, method string, args ...any) (any, error) {
	n := s.Node(node)
	if n == nil {
		return nil, fmt.Errorf("node %q: %w", node, cluster.ErrNodeNotFound)
	}
	m.mu.Lock()
	skipped := m.skip[node]
	m.mu.Unlock()
	if skipped {
		return nil, fmt.Errorf("node %s: %w", node, ErrNodeSkipped)
	}
	c, err := m.conn(ctx, *n)
	if err != nil {
		return nil, err
	}
	v, err := c.Call(ctx, "resource."+method, args...)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	if v == nil {
		return nil, nil
	}
	reply, ok := v.([]any)
	if !ok || len(reply) != 2 {
		return nil, &NodeError{Node: node, Method: method, Msg: fmt.Sprintf("unexpected reply %v", v)}
	}
	code, _ := py.Int(reply[0])
	body, _ := reply[1].(map[string]any)
	out := body["out"]
	if code != 0 {
		return nil, &NodeError{Node: node, Method: method, Msg: fmt.Sprint(out)}
	}
	return out, nil
}

// requestPath returns {last_key: value} for a dotted request path such as
// "spec.size", as upstream's get_*_info(request) does, or the whole
// config for an empty request.
func requestPath(v any, request, errText string) (json.RawMessage, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if request == "" {
		return data, nil
	}
	res := gjson.GetBytes(data, gjsonPathEscape(request))
	if !res.Exists() {
		return nil, errors.New(errText + request)
	}
	keys := strings.Split(request, ".")
	key, _ := json.Marshal(keys[len(keys)-1])
	return json.RawMessage("{" + string(key) + ": " + res.Raw + "}"), nil
}

// gjsonPathEscape keeps gjson's wildcards and modifiers out of a request
// path: only dots separate.
func gjsonPathEscape(p string) string {
	var b strings.Builder
	for _, c := range p {
		if strings.ContainsRune(`*?|#@\!=<>%`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// attachment is a pool attached on a node along the way (by bind), for
// the record.
type attachment struct {
	pool, node string
	out        node.PoolReply
}

// recordAttach records that pool p is attached on node n.
func recordAttach(p *Pool, n string, out node.PoolReply) {
	if !slices.Contains(p.Connected, n) {
		p.Connected = append(p.Connected, n)
	}
	if at := poolKinds[p.Config.Meta.Type].attached; at != nil {
		at(p, n, out)
	}
}

// commit stores the configs and bindings of the given resources (changed
// copies of a snapshot's) and the pools attached along the way, in one
// update.
func (m *Manager) commit(ctx context.Context, att []attachment, xs ...*Resource) error {
	return m.update(ctx, func(s *cluster.State, r *record) error {
		for _, a := range att {
			p, err := r.pool(a.pool)
			if err != nil {
				return err
			}
			recordAttach(p, a.node, a.out)
		}
		for _, x := range xs {
			y, err := r.resource(x.Config.Meta.UUID)
			if err != nil {
				return err
			}
			y.Config, y.Bindings = x.Config, x.Bindings
		}
		return nil
	})
}

// callInto is call with the reply's "out" decoded into v.
func (m *Manager) callInto(ctx context.Context, s *cluster.State, n string, v any, method string, args ...any) error {
	out, err := m.call(ctx, s, n, method, args...)
	if err != nil {
		return err
	}
	if err := node.DecodeOut(out, v); err != nil {
		return &NodeError{Node: n, Method: method, Msg: err.Error()}
	}
	return nil
}

// wrapErr adds the package's prefix to a public method's error, once.
func wrapErr(err *error) {
	if *err != nil && !strings.HasPrefix((*err).Error(), "resmgr: ") {
		*err = &Error{Err: *err}
	}
}

// viewResource is snapshot and the resource id in it.
func (m *Manager) viewResource(ctx context.Context, id string) (*cluster.State, *record, *Resource, error) {
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	x, err := r.resource(id)
	return s, r, x, err
}

// viewPool is snapshot and the pool id in it.
func (m *Manager) viewPool(ctx context.Context, id string) (*cluster.State, *record, *Pool, error) {
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := r.pool(id)
	return s, r, p, err
}
