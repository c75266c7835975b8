package resmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/resmgr/node"

	"github.com/tidwall/gjson"

	"github.com/vtcluster/vtcluster/cluster"
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

// ClaimKind is the cluster.Claim kind of resources.
const ClaimKind = "resource"

// Pool is a pool's record.
type Pool struct {
	Config PoolConfig `json:"config"`
	// Connected are the nodes the pool is attached to (upstream's
	// connected_nodes).
	Connected []string `json:"connected_nodes"`
	// Paths are each node's root of a filesystem pool (upstream kept only
	// the last node's).
	Paths map[string]string `json:"paths,omitempty"`
}

// Binding is a resource's backing on one node.
type Binding struct {
	Node    string `json:"node"`
	Backing string `json:"backing"`
}

// Resource is a resource's record.
type Resource struct {
	Config   ResourceConfig `json:"config"`
	Bindings []Binding      `json:"bindings"`
	// Partition and Job own the resource, when a test made it; a
	// reclaimed partition's resources are removed by Sweep, a finished
	// job's by Teardown.
	Partition string `json:"partition,omitempty"`
	Job       string `json:"job,omitempty"`
	// Use is how the owning test declared it.
	Use *Use `json:"use,omitempty"`
}

type record struct {
	Pools     []*Pool     `json:"pools"`
	Resources []*Resource `json:"resources"`
}

func loadRecord(s *cluster.State) (*record, error) {
	r := &record{}
	if len(s.Resources) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(s.Resources, r); err != nil {
		return nil, fmt.Errorf("resmgr: state's resources record: %w", err)
	}
	return r, nil
}

func (r *record) store(s *cluster.State) error {
	if len(r.Pools) == 0 && len(r.Resources) == 0 {
		s.Resources = nil
		return nil
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.Resources = data
	return nil
}

func (r *record) pool(id string) (*Pool, error) {
	for _, p := range r.Pools {
		if p.Config.Meta.UUID == id || p.Config.Meta.Name == id {
			return p, nil
		}
	}
	return nil, &NotFoundError{Kind: "pool", ID: id}
}

func (r *record) resource(id string) (*Resource, error) {
	for _, x := range r.Resources {
		if x.Config.Meta.UUID == id {
			return x, nil
		}
	}
	return nil, &NotFoundError{Kind: "resource", ID: id}
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
		return nil, fmt.Errorf("resmgr: node %s: %w", n.Name, err)
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
		return nil, fmt.Errorf("resmgr: node %q: %w", node, cluster.ErrNodeNotFound)
	}
	m.mu.Lock()
	skipped := m.skip[node]
	m.mu.Unlock()
	if skipped {
		return nil, fmt.Errorf("resmgr: node %s: %w", node, ErrNodeSkipped)
	}
	c, err := m.conn(ctx, *n)
	if err != nil {
		return nil, err
	}
	v, err := c.Call(ctx, "resource."+method, args...)
	if err != nil {
		return nil, fmt.Errorf("resmgr: node %s: %w", node, err)
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

// Setup registers the configured pools (upstream's setup): the "pools"
// section of the cluster config, then a default filesystem pool
// def_fs_pool_<node> for every node no configured filesystem pool
// reaches. It replaces earlier pools, but refuses while resources exist or
// pools are attached, since forgetting them would leak them on the nodes.
func (m *Manager) Setup(ctx context.Context, pools json.RawMessage) error {
	params, err := parsePools(pools)
	if err != nil {
		return fmt.Errorf("resmgr: %w", err)
	}
	return m.update(ctx, func(s *cluster.State, r *record) error {
		if len(r.Resources) > 0 {
			return fmt.Errorf("resmgr: setup: %d resources still exist; remove them first (vtcluster resource list, vtcluster resource destroy --force)", len(r.Resources))
		}
		for _, p := range r.Pools {
			if len(p.Connected) > 0 {
				return fmt.Errorf("resmgr: setup: pool %s is attached to %s (vtcluster pool detach %s): %w",
					p.Config.Meta.Name, strings.Join(p.Connected, ", "), p.Config.Meta.Name, ErrPoolBusy)
			}
		}
		names := make([]string, len(s.Nodes))
		for i, n := range s.Nodes {
			names[i] = n.Name
		}
		if err := ValidatePools(pools, names); err != nil {
			return fmt.Errorf("resmgr: %w", err)
		}
		r.Pools = nil
		covered := map[string]bool{}
		for _, np := range params {
			c, err := poolFromParams(np.Name, np.Params, names)
			if err != nil {
				return fmt.Errorf("resmgr: %w", err)
			}
			for _, n := range c.Meta.Access.Nodes {
				if s.Node(n) == nil {
					return fmt.Errorf("resmgr: pool %s: access node %q is not registered", np.Name, n)
				}
				if c.Meta.Type == PoolFilesystem {
					covered[n] = true
				}
			}
			r.Pools = append(r.Pools, &Pool{Config: c})
		}
		for _, n := range names {
			if !covered[n] {
				empty := ""
				r.Pools = append(r.Pools, &Pool{Config: PoolConfig{
					Meta: PoolMeta{Name: "def_fs_pool_" + n, UUID: newUUID(), Type: PoolFilesystem, Access: PoolAccess{Nodes: []string{n}}},
					Spec: PoolSpec{Path: &empty},
				}})
			}
		}
		return nil
	})
}

// Cleanup forgets every pool (upstream's cleanup), refusing like Setup.
func (m *Manager) Cleanup(ctx context.Context) error {
	return m.update(ctx, func(s *cluster.State, r *record) error {
		if len(r.Resources) > 0 {
			return fmt.Errorf("resmgr: cleanup: %d resources still exist; destroy them first", len(r.Resources))
		}
		for _, p := range r.Pools {
			if len(p.Connected) > 0 {
				return fmt.Errorf("resmgr: cleanup: pool %s: %w", p.Config.Meta.Name, ErrPoolBusy)
			}
		}
		r.Pools = nil
		return nil
	})
}

// Startup starts the backing service on every node and attaches every
// pool (upstream's startup, run by the job's pre hook).
func (m *Manager) Startup(ctx context.Context) error {
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range s.Nodes {
		if _, err := m.call(ctx, s, n.Name, "start_resource_backing_service"); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range r.Pools {
		if err := m.AttachPool(ctx, p.Config.Meta.UUID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RemoveJob removes on the nodes every resource the job jobID still holds
// (all resources when jobID is empty), and what reclaimed partitions left.
func (m *Manager) RemoveJob(ctx context.Context, jobID string) error {
	_, r, err := m.snapshot(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, x := range r.Resources {
		if jobID == "" || x.Job == jobID {
			if err := m.Remove(ctx, x.Config.Meta.UUID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := m.Sweep(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Teardown is upstream's teardown, run by the last job's post hook: it
// removes what the job jobID still holds (upstream left it behind), then
// detaches the pools no resource uses and, when no resource is left at
// all, stops the nodes' backing services.
func (m *Manager) Teardown(ctx context.Context, jobID string) error {
	var errs []error
	if err := m.RemoveJob(ctx, jobID); err != nil {
		errs = append(errs, err)
	}
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	busy := map[string]bool{}
	for _, x := range r.Resources {
		busy[x.Config.Meta.Pool] = true
	}
	for _, p := range r.Pools {
		if busy[p.Config.Meta.UUID] {
			// Resources of another job still use it.
			continue
		}
		if err := m.DetachPool(ctx, p.Config.Meta.UUID); err != nil {
			errs = append(errs, err)
		}
	}
	if len(r.Resources) == 0 {
		for _, n := range s.Nodes {
			if _, err := m.call(ctx, s, n.Name, "stop_resource_backing_service"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// A node given to SkipNode was reported by whoever skipped it.
	return withoutSkipped(errors.Join(errs...))
}

// CreatePoolFromParams registers a pool from upstream's pool parameters.
func (m *Manager) CreatePoolFromParams(ctx context.Context, name string, params json.RawMessage) (string, error) {
	if !gjson.ValidBytes(params) || !gjson.ParseBytes(params).IsObject() {
		return "", fmt.Errorf("resmgr: pool %s: parameters must be a JSON object", name)
	}
	var id string
	err := m.update(ctx, func(s *cluster.State, r *record) error {
		if _, err := r.pool(name); err == nil {
			return fmt.Errorf("resmgr: pool %q exists already", name)
		}
		c, err := poolFromParams(name, gjson.ParseBytes(params), s.SortedNames())
		if err != nil {
			return fmt.Errorf("resmgr: %w", err)
		}
		for _, n := range c.Meta.Access.Nodes {
			if s.Node(n) == nil {
				return fmt.Errorf("resmgr: pool %s: access node %q is not registered", name, n)
			}
		}
		r.Pools = append(r.Pools, &Pool{Config: c})
		id = c.Meta.UUID
		return nil
	})
	return id, err
}

// DestroyPool forgets a pool; ErrPoolBusy while attached or used.
func (m *Manager) DestroyPool(ctx context.Context, id string) error {
	return m.update(ctx, func(s *cluster.State, r *record) error {
		p, err := r.pool(id)
		if err != nil {
			return fmt.Errorf("resmgr: %w", err)
		}
		if len(p.Connected) > 0 || slices.ContainsFunc(r.Resources, func(x *Resource) bool { return x.Config.Meta.Pool == p.Config.Meta.UUID }) {
			return fmt.Errorf("resmgr: destroy pool %s: %w", p.Config.Meta.Name, ErrPoolBusy)
		}
		r.Pools = slices.DeleteFunc(r.Pools, func(x *Pool) bool { return x == p })
		return nil
	})
}

// customize is the pool config one node is sent (upstream's
// customize_pool_config).
func customize(c PoolConfig, node string) map[string]any {
	pick := func(m map[string]any) any {
		if v, ok := m[node]; ok {
			return v
		}
		return m["*"]
	}
	if nc := poolKinds[c.Meta.Type].nodeConfig; nc != nil {
		return nc(c, pick)
	}
	var out map[string]any
	data, _ := json.Marshal(c)
	json.Unmarshal(data, &out)
	return out
}

// AttachPool connects the pool on each of its access nodes.
func (m *Manager) AttachPool(ctx context.Context, id string) error {
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return err
	}
	p, err := r.pool(id)
	if err != nil {
		return fmt.Errorf("resmgr: %w", err)
	}
	type done struct {
		node string
		out  node.PoolReply
	}
	var ok []done
	var errs []error
	for _, n := range p.Config.Meta.Access.Nodes {
		var out node.PoolReply
		if err := m.callInto(ctx, s, n, &out, node.MethodCreatePool, customize(p.Config, n)); err != nil {
			errs = append(errs, err)
			continue
		}
		ok = append(ok, done{n, out})
	}
	uerr := m.update(ctx, func(s *cluster.State, r *record) error {
		p, err := r.pool(id)
		if err != nil {
			return err
		}
		for _, d := range ok {
			if !slices.Contains(p.Connected, d.node) {
				p.Connected = append(p.Connected, d.node)
			}
			if at := poolKinds[p.Config.Meta.Type].attached; at != nil {
				at(p, d.node, d.out)
			}
		}
		return nil
	})
	return errors.Join(append(errs, uerr)...)
}

// DetachPool disconnects the pool from every node it is attached to.
func (m *Manager) DetachPool(ctx context.Context, id string) error {
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return err
	}
	p, err := r.pool(id)
	if err != nil {
		return fmt.Errorf("resmgr: %w", err)
	}
	var gone []string
	var errs []error
	for _, n := range p.Connected {
		_, err := m.call(ctx, s, n, "destroy_pool_connection", p.Config.Meta.UUID)
		var ne *NodeError
		if err != nil && !(errors.As(err, &ne) && node.IsKeyError(ne.Msg, p.Config.Meta.UUID)) {
			errs = append(errs, err)
			continue
		}
		gone = append(gone, n)
	}
	uerr := m.update(ctx, func(s *cluster.State, r *record) error {
		p, err := r.pool(id)
		if err != nil {
			return err
		}
		p.Connected = slices.DeleteFunc(p.Connected, func(n string) bool { return slices.Contains(gone, n) })
		return nil
	})
	return errors.Join(append(errs, uerr)...)
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

// PoolInfo is the pool's config, or the request path's slice of it.
func (m *Manager) PoolInfo(ctx context.Context, id, request string) (json.RawMessage, error) {
	_, r, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	p, err := r.pool(id)
	if err != nil {
		return nil, fmt.Errorf("resmgr: %w", err)
	}
	out, err := requestPath(p.Config, request, "Unknown key ")
	if err != nil {
		return nil, fmt.Errorf("resmgr: pool %s: %w", p.Config.Meta.Name, err)
	}
	return out, nil
}

// Pools returns the pool records in selection order.
func (m *Manager) Pools(ctx context.Context) ([]Pool, []Resource, error) {
	_, r, err := m.snapshot(ctx)
	if err != nil {
		return nil, nil, err
	}
	var ps []Pool
	for _, p := range r.Pools {
		ps = append(ps, *p)
	}
	var rs []Resource
	for _, x := range r.Resources {
		rs = append(rs, *x)
	}
	return ps, rs, nil
}

// poolSelectors derives the selectors for a resource as upstream does:
// volume_pool_selectors, else storage_type; port_pool_selectors, else
// network_type; none matches any pool of the right kind.
func poolSelectors(resType string, params map[string]string) ([]cluster.Selector, error) {
	if err := checkResourceType(resType); err != nil {
		return nil, err
	}
	sel, typ := "volume_pool_selectors", "storage_type"
	if resType == TypePort {
		sel, typ = "port_pool_selectors", "network_type"
	}
	if s := params[sel]; s != "" {
		out, err := cluster.ParseSelectors(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sel, err)
		}
		return out, nil
	}
	if t := params[typ]; t != "" {
		s, err := cluster.NewSelector("type", "==", t)
		if err != nil {
			return nil, err
		}
		return []cluster.Selector{s}, nil
	}
	return nil, nil
}

// poolProps is what pool selectors match against: each key's first
// occurrence in the pool config, as upstream's recursive lookup finds it
// (type -> meta.type, nodes -> meta.access.nodes, server, path, ...).
func poolProps(c PoolConfig) map[string]any {
	props := map[string]any{"name": c.Meta.Name, "uuid": c.Meta.UUID, "type": c.Meta.Type}
	nodes := make([]any, len(c.Meta.Access.Nodes))
	for i, n := range c.Meta.Access.Nodes {
		nodes[i] = n
	}
	props["nodes"] = nodes
	var spec map[string]any
	data, _ := json.Marshal(c.Spec)
	json.Unmarshal(data, &spec)
	for k, v := range spec {
		if _, ok := props[k]; !ok {
			props[k] = v
		}
	}
	return props
}

// selectPool is the first pool (configured first, then defaults) that
// holds resType and matches the selectors; a "nodes" selector's value is
// a space-separated list, as upstream writes it.
func selectPool(r *record, resType string, sels []cluster.Selector, need ...string) (*Pool, error) {
	for i := range sels {
		if sels[i].Key == "nodes" {
			if s, ok := sels[i].Values.(string); ok {
				var vals []any
				for _, f := range strings.Fields(s) {
					vals = append(vals, f)
				}
				ns, err := cluster.NewSelector("nodes", sels[i].Operator, vals)
				if err != nil {
					return nil, err
				}
				sels[i] = ns
			}
		}
	}
	np := &NoPoolError{Type: resType, Selectors: sels, Nodes: need}
	for _, p := range r.Pools {
		name := p.Config.Meta.Name + " (" + p.Config.Meta.Type + ")"
		if !supports(p.Config.Meta.Type, resType) {
			np.Considered = append(np.Considered, name+": holds no "+resType)
			continue
		}
		if missing := slices.DeleteFunc(slices.Clone(need), func(n string) bool { return slices.Contains(p.Config.Meta.Access.Nodes, n) }); len(missing) > 0 {
			np.Considered = append(np.Considered, name+": not reachable from "+strings.Join(missing, ", "))
			continue
		}
		ok, err := cluster.MatchAll(sels, poolProps(p.Config))
		if err != nil {
			return nil, err
		}
		if ok {
			return p, nil
		}
		np.Considered = append(np.Considered, name+": does not match the selectors")
	}
	return nil, np
}

// SelectPool returns the uuid of the pool a resource would be created in.
func (m *Manager) SelectPool(ctx context.Context, resType string, params map[string]string) (string, error) {
	_, r, err := m.snapshot(ctx)
	if err != nil {
		return "", err
	}
	sels, err := poolSelectors(resType, params)
	if err != nil {
		return "", fmt.Errorf("resmgr: %w", err)
	}
	p, err := selectPool(r, resType, sels)
	if err != nil {
		return "", fmt.Errorf("resmgr: %w", err)
	}
	return p.Config.Meta.UUID, nil
}

// defineResource builds a resource config from upstream's parameters.
func defineResource(name, resType string, p *Pool, params map[string]string) (ResourceConfig, error) {
	if !resourceNameOK(name) {
		return ResourceConfig{}, fmt.Errorf("resource name %q must be letters, digits, '_', '.', '+' or '-'", name)
	}
	c := ResourceConfig{Meta: ResourceMeta{UUID: newUUID(), Name: name, Type: resType, Pool: p.Config.Meta.UUID}}
	switch resType {
	case TypeVolume:
		c.Meta.VolumeType = "file"
		sizeText := params["image_size"]
		if sizeText == "" {
			sizeText = "20G"
		}
		size, err := ParseSize(sizeText)
		if err != nil {
			return c, fmt.Errorf("image_size: %w", err)
		}
		s := fmt.Sprint(size)
		c.Spec.Size = &s
		img := params["image_name"]
		if img == "" {
			img = "image"
		}
		if strings.HasPrefix(img, "/") {
			if err := node.CheckAbsPath(img); err != nil {
				return c, fmt.Errorf("image_name: %w", err)
			}
			c.Spec.Filename = path.Base(img)
			c.Spec.URI = map[string]string{"*": img}
		} else {
			format := params["image_format"]
			if format == "" {
				format = "qcow2"
			}
			if format != "qcow2" && format != "raw" {
				return c, fmt.Errorf("image_format %q: only qcow2 and raw file volumes are supported", format)
			}
			c.Spec.Filename = img + "." + format
			if err := node.CheckFilename(c.Spec.Filename); err != nil {
				return c, fmt.Errorf("image_name: %w", err)
			}
		}
	case TypePort:
		c.Meta.PortType = "tap"
		empty := ""
		c.Spec.Switch, c.Spec.Ifname, c.Spec.FDs = &empty, &empty, []string{}
	default:
		return c, &UnknownResourceTypeError{Type: resType}
	}
	return c, nil
}

func resourceNameOK(n string) bool { return node.ValidName(n) && len(n) <= 128 }

// CreateResourceFromParams defines a resource in the pool its parameters
// select; like upstream it is neither bound nor allocated.
//
// A volume its pool cannot hold is refused here, naming both sizes: the
// pool's free space is asked of a node it is attached to (none attached:
// not checked; the node checks again at allocate).
func (m *Manager) CreateResourceFromParams(ctx context.Context, name, resType string, params map[string]string) (_ string, err error) {
	defer wrapErr(&err)
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return "", err
	}
	planned, err := r.newResource(name, resType, params)
	if err != nil {
		return "", err
	}
	if err := m.checkRoom(ctx, s, r, planned); err != nil {
		return "", err
	}
	var id string
	err = m.update(ctx, func(s *cluster.State, r *record) error {
		x, err := r.newResource(name, resType, params)
		if err != nil {
			return err
		}
		id = x.Config.Meta.UUID
		return nil
	})
	return id, err
}

func (r *record) newResource(name, resType string, params map[string]string) (*Resource, error) {
	sels, err := poolSelectors(resType, params)
	if err != nil {
		return nil, fmt.Errorf("resmgr: %w", err)
	}
	p, err := selectPool(r, resType, sels)
	if err != nil {
		return nil, fmt.Errorf("resmgr: resource %s: %w", name, err)
	}
	c, err := defineResource(name, resType, p, params)
	if err != nil {
		return nil, fmt.Errorf("resmgr: resource %s: %w", name, err)
	}
	x := &Resource{Config: c, Bindings: []Binding{}}
	if err := r.add(x); err != nil {
		return nil, fmt.Errorf("resmgr: %w", err)
	}
	return x, nil
}

// checkRoom refuses volume x when its pool (unless it allows overcommit)
// has less free space than x's size on the first attached node that
// answers.
func (m *Manager) checkRoom(ctx context.Context, s *cluster.State, r *record, x *Resource) error {
	if x.Config.Meta.Type != TypeVolume || x.Config.Spec.Size == nil {
		return nil
	}
	p, err := r.pool(x.Config.Meta.Pool)
	if err != nil || p.Config.Spec.Overcommit {
		return err
	}
	size, err := strconv.ParseInt(*x.Config.Spec.Size, 10, 64)
	if err != nil {
		return err
	}
	for _, n := range p.Connected {
		var c node.Capacity
		if err := m.callInto(ctx, s, n, &c, node.MethodPoolCapacity, p.Config.Meta.UUID); err != nil {
			m.log.Info("pool capacity unknown", "pool", p.Config.Meta.Name, "node", n, "err", err)
			continue
		}
		if size > c.Free {
			return &CapacityError{Resource: x.Config.Meta.Name, Pool: p.Config.Meta.Name, Node: n, Size: size, Free: c.Free, Total: c.Size}
		}
		return nil
	}
	return nil
}

// PoolCapacity is the size and free bytes of a pool's filesystem on each
// node it is attached to that answers; a pool kind without capacity (a
// bridge) has none.
func (m *Manager) PoolCapacity(ctx context.Context, id string) (_ map[string]node.Capacity, err error) {
	defer wrapErr(&err)
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	p, err := r.pool(id)
	if err != nil {
		return nil, err
	}
	out := map[string]node.Capacity{}
	if !supports(p.Config.Meta.Type, TypeVolume) {
		return out, nil
	}
	var errs []error
	for _, n := range p.Connected {
		var c node.Capacity
		if err := m.callInto(ctx, s, n, &c, node.MethodPoolCapacity, p.Config.Meta.UUID); err != nil {
			errs = append(errs, err)
			continue
		}
		out[n] = c
	}
	return out, errors.Join(errs...)
}

// volumeFile is what a volume's file is called in its pool: its absolute
// image_name, or its file name there.
func volumeFile(c ResourceConfig) string {
	if u := c.Spec.URI["*"]; u != "" {
		return u
	}
	return c.Spec.Filename
}

// add records x, refusing a volume whose file another resource of the
// same pool already has: releasing one would remove the other's data
// (audit H2). The first is named so the caller can pick another name.
func (r *record) add(x *Resource) error {
	if x.Config.Meta.Type == TypeVolume {
		f := volumeFile(x.Config)
		for _, o := range r.Resources {
			if o.Config.Meta.Type == TypeVolume && o.Config.Meta.Pool == x.Config.Meta.Pool && volumeFile(o.Config) == f {
				return &RefusedError{Msg: fmt.Sprintf("resource %s: file %s of its pool is already resource %s's (%s); give this one another image_name", x.Config.Meta.Name, f, o.Config.Meta.Name, o.Config.Meta.UUID)}
			}
		}
	}
	r.Resources = append(r.Resources, x)
	return nil
}

// CreateResourceFromSource defines a copy of a volume (upstream's
// define_config_by_self): new uuid, filename <filename>_<8 alnum>, not
// allocated, in targetPool or the source's pool.
func (m *Manager) CreateResourceFromSource(ctx context.Context, sourceID, targetPool string) (string, error) {
	var id string
	err := m.update(ctx, func(s *cluster.State, r *record) error {
		src, err := r.resource(sourceID)
		if err != nil {
			return fmt.Errorf("resmgr: %w", err)
		}
		c := src.Config
		c.Meta.UUID, c.Meta.Allocated = newUUID(), false
		if targetPool != "" {
			p, err := r.pool(targetPool)
			if err != nil {
				return fmt.Errorf("resmgr: %w", err)
			}
			if !supports(p.Config.Meta.Type, c.Meta.Type) {
				return fmt.Errorf("resmgr: pool %s cannot hold a %s", p.Config.Meta.Name, c.Meta.Type)
			}
			c.Meta.Pool = p.Config.Meta.UUID
		}
		if c.Meta.Type == TypeVolume {
			c.Spec.Filename += "_" + alnum8()
			c.Spec.URI = nil
			c.Spec.Allocation = nil
		}
		if err := r.add(&Resource{Config: c, Bindings: []Binding{}, Partition: src.Partition, Job: src.Job}); err != nil {
			return fmt.Errorf("resmgr: %w", err)
		}
		id = c.Meta.UUID
		return nil
	})
	return id, err
}

// DestroyResource forgets an unbound, unallocated resource.
func (m *Manager) DestroyResource(ctx context.Context, id string) error {
	return m.update(ctx, func(s *cluster.State, r *record) error {
		x, err := r.resource(id)
		if err != nil {
			return fmt.Errorf("resmgr: %w", err)
		}
		if x.Config.Meta.Allocated {
			return fmt.Errorf("resmgr: resource %s: %w", x.Config.Meta.Name, ErrAllocated)
		}
		if len(x.Bindings) > 0 {
			return fmt.Errorf("resmgr: resource %s: %w", x.Config.Meta.Name, ErrBound)
		}
		r.Resources = slices.DeleteFunc(r.Resources, func(y *Resource) bool { return y == x })
		dropClaim(s, x)
		return nil
	})
}

// dropClaim removes x's claim from its partition: it was given back.
func dropClaim(s *cluster.State, x *Resource) {
	if x.Partition == "" {
		return
	}
	if p := s.Partition(x.Partition); p != nil {
		p.Claims = slices.DeleteFunc(p.Claims, func(c cluster.Claim) bool { return c.Kind == ClaimKind && c.ID == x.Config.Meta.UUID })
	}
}

// BindResource makes a backing of the resource on each node (registration
// names; all the pool's nodes when none are given). Nodes already bound
// are skipped.
func (m *Manager) BindResource(ctx context.Context, id string, nodes []string) (err error) {
	defer wrapErr(&err)
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return err
	}
	x, err := r.resource(id)
	if err != nil {
		return err
	}
	// The backings made are recorded even when another node failed.
	return errors.Join(m.bind(ctx, s, r, x, nodes), m.commit(ctx, x))
}

// bind makes x's backings on nodes (all the pool's nodes when none are
// given; bound ones are skipped), changing x, a snapshot's copy, which the
// caller commits.
func (m *Manager) bind(ctx context.Context, s *cluster.State, r *record, x *Resource, nodes []string) error {
	p, err := r.pool(x.Config.Meta.Pool)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		nodes = p.Config.Meta.Access.Nodes
	}
	var denied []string
	for _, n := range nodes {
		if !slices.Contains(p.Config.Meta.Access.Nodes, n) {
			denied = append(denied, "'"+n+"'")
		}
	}
	if len(denied) > 0 {
		return fmt.Errorf("Pool %s cannot be accessed from {%s}", p.Config.Meta.Name, strings.Join(denied, ", "))
	}
	if x.Config.Meta.Type == TypePort {
		all := map[string]bool{}
		for _, b := range x.Bindings {
			all[b.Node] = true
		}
		for _, n := range nodes {
			all[n] = true
		}
		if len(all) > 1 {
			return fmt.Errorf("port %s: a tap port lives on one node", x.Config.Meta.Name)
		}
	}
	var errs []error
	for _, n := range nodes {
		if slices.ContainsFunc(x.Bindings, func(b Binding) bool { return b.Node == n }) {
			continue
		}
		if !slices.Contains(p.Connected, n) {
			errs = append(errs, &NotConnectedError{Pool: p.Config.Meta.Name, Node: n})
			continue
		}
		spec := map[string]any{}
		if x.Config.Meta.Type == TypeVolume {
			spec = map[string]any{"filename": x.Config.Spec.Filename, "uri": nil}
			if u := x.Config.Spec.URI["*"]; u != "" {
				spec["uri"] = u
			} else if u := x.Config.Spec.URI[n]; u != "" {
				spec["uri"] = u
			}
		}
		cfg := map[string]any{"meta": map[string]any{"uuid": x.Config.Meta.UUID, "type": x.Config.Meta.Type, "pool": x.Config.Meta.Pool}, "spec": spec}
		var o node.SyncReply
		if err := m.callInto(ctx, s, n, &o, node.MethodCreateBacking, cfg); err != nil {
			errs = append(errs, err)
			continue
		}
		x.Bindings = append(x.Bindings, Binding{Node: n, Backing: o.Backing})
		applySync(x, n, o)
	}
	return errors.Join(errs...)
}

// commit stores the configs and bindings of the given resources (changed
// copies of a snapshot's) in one update.
func (m *Manager) commit(ctx context.Context, xs ...*Resource) error {
	return m.update(ctx, func(s *cluster.State, r *record) error {
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

// applySync copies a node's sync reply into the config.
func applySync(x *Resource, n string, o node.SyncReply) {
	if a := o.Meta.Allocated; a != nil {
		x.Config.Meta.Allocated = *a
	}
	if x.Config.Meta.Type == TypePort {
		if o.Spec.Ifname != nil && *o.Spec.Ifname != "" {
			sw := ""
			if o.Spec.Switch != nil {
				sw = *o.Spec.Switch
			}
			x.Config.Spec.Switch, x.Config.Spec.Ifname = &sw, o.Spec.Ifname
		}
		return
	}
	if u := o.Spec.URI; u != nil && x.Config.Spec.URI["*"] == "" {
		if x.Config.Spec.URI == nil {
			x.Config.Spec.URI = map[string]string{}
		}
		x.Config.Spec.URI[n] = *u
	}
	if a := o.Spec.Allocation; a != nil {
		x.Config.Spec.Allocation = *a
	} else {
		x.Config.Spec.Allocation = nil
	}
}

// wrapErr adds the package's prefix to a public method's error, once.
func wrapErr(err *error) {
	if *err != nil && !strings.HasPrefix((*err).Error(), "resmgr: ") {
		*err = &Error{Err: *err}
	}
}

// UnbindResource destroys the backings on nodes (all when none given).
// The backings that went are recorded in one write, also when another
// node failed.
func (m *Manager) UnbindResource(ctx context.Context, id string, nodes []string) (err error) {
	defer wrapErr(&err)
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return err
	}
	x, err := r.resource(id)
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range slices.Clone(x.Bindings) {
		if len(nodes) > 0 && !slices.Contains(nodes, b.Node) {
			continue
		}
		_, err := m.call(ctx, s, b.Node, node.MethodDestroyBacking, b.Backing)
		var ne *NodeError
		if err != nil && !(errors.As(err, &ne) && node.IsKeyError(ne.Msg, b.Backing)) {
			errs = append(errs, err)
			continue
		}
		x.Bindings = slices.DeleteFunc(x.Bindings, func(y Binding) bool { return y == b })
		delete(x.Config.Spec.URI, b.Node)
	}
	return errors.Join(append(errs, m.commit(ctx, x))...)
}

// BindingNodes returns the nodes the resource is bound to.
func (m *Manager) BindingNodes(ctx context.Context, id string) ([]string, error) {
	_, r, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	x, err := r.resource(id)
	if err != nil {
		return nil, fmt.Errorf("resmgr: %w", err)
	}
	out := []string{}
	for _, b := range x.Bindings {
		out = append(out, b.Node)
	}
	return out, nil
}

// ResourceInfo is the resource's config, or the request path's slice.
func (m *Manager) ResourceInfo(ctx context.Context, id, request string) (json.RawMessage, error) {
	_, r, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	x, err := r.resource(id)
	if err != nil {
		return nil, fmt.Errorf("resmgr: %w", err)
	}
	out, err := requestPath(x.Config, request, "Cannot find the requested options ")
	if err != nil {
		return nil, fmt.Errorf("resmgr: resource %s: %w", x.Config.Meta.Name, err)
	}
	return out, nil
}

// UpdateResource runs command (allocate, release, sync, resize, clone) on
// node's backing (the first binding's node when empty). arguments are
// the command's: resize takes {"size": ...}. clone returns the new uuid.
func (m *Manager) UpdateResource(ctx context.Context, id, command, onNode string, arguments map[string]any) (_ string, err error) {
	if command == "clone" {
		return m.CloneResource(ctx, id, onNode)
	}
	defer wrapErr(&err)
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return "", err
	}
	x, err := r.resource(id)
	if err != nil {
		return "", err
	}
	if err := m.runCommand(ctx, s, x, command, onNode, arguments); err != nil {
		return "", err
	}
	return "", m.commit(ctx, x)
}

// runCommand runs command on x's backing on onNode (the first binding's
// node when empty), changing x, a snapshot's copy, which the caller
// commits.
func (m *Manager) runCommand(ctx context.Context, s *cluster.State, x *Resource, command, onNode string, arguments map[string]any) error {
	switch command {
	case "allocate", "release", "sync":
	case "resize":
		if x.Config.Meta.Type != TypeVolume {
			return &UnsupportedCommandError{command, x.Config.Meta.Type}
		}
	default:
		return &UnsupportedCommandError{command, x.Config.Meta.Type}
	}
	b, err := x.binding(onNode)
	if err != nil {
		return err
	}
	args := map[string]any{}
	switch command {
	case "allocate":
		if x.Config.Spec.Size != nil {
			args["size"] = *x.Config.Spec.Size
		}
	case "resize":
		size, err := node.SizeArg(arguments["size"])
		if err != nil {
			return fmt.Errorf("resize %s: %w", x.Config.Meta.Name, err)
		}
		args["size"] = size
	}
	var o node.SyncReply
	if err := m.callInto(ctx, s, b.Node, &o, node.MethodUpdate, b.Backing, command, args); err != nil {
		return err
	}
	switch command {
	case "release":
		x.Config.Meta.Allocated = false
		if x.Config.Meta.Type == TypeVolume {
			x.Config.Spec.Allocation = nil
		}
		return nil
	case "resize":
		size := fmt.Sprint(args["size"])
		x.Config.Spec.Size = &size
	}
	applySync(x, b.Node, o)
	return nil
}

func (x *Resource) binding(node string) (Binding, error) {
	if len(x.Bindings) == 0 {
		return Binding{}, fmt.Errorf("resource %s is not bound to any node; bind it first (vtcluster resource bind %s)", x.Config.Meta.Name, x.Config.Meta.UUID)
	}
	if node == "" {
		return x.Bindings[0], nil
	}
	for _, b := range x.Bindings {
		if b.Node == node {
			return b, nil
		}
	}
	return Binding{}, fmt.Errorf("resource %s is not bound to node %s", x.Config.Meta.Name, node)
}

// CloneResource makes an allocated copy of a volume named
// <name>_clone_<8 alnum>, bound to the same nodes, copied on node.
func (m *Manager) CloneResource(ctx context.Context, id, onNode string) (_ string, err error) {
	defer wrapErr(&err)
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return "", err
	}
	src, err := r.resource(id)
	if err != nil {
		return "", err
	}
	if src.Config.Meta.Type != TypeVolume {
		return "", &UnsupportedCommandError{"clone", src.Config.Meta.Type}
	}
	sb, err := src.binding(onNode)
	if err != nil {
		return "", err
	}
	suffix := "_clone_" + alnum8()
	c := src.Config
	c.Meta.UUID, c.Meta.Name, c.Meta.Allocated = newUUID(), c.Meta.Name+suffix, false
	c.Spec.Filename += suffix
	c.Spec.URI, c.Spec.Allocation = nil, nil
	newID := c.Meta.UUID
	// The new record is written first, so a crash leaves it (and what the
	// nodes made) to Remove; then the bindings and the copy, written once.
	err = m.update(ctx, func(s *cluster.State, r *record) error {
		if err := r.add(&Resource{Config: c, Bindings: []Binding{}, Partition: src.Partition, Job: src.Job}); err != nil {
			return err
		}
		if src.Partition != "" {
			if p := s.Partition(src.Partition); p != nil {
				p.Claims = append(p.Claims, cluster.Claim{Kind: ClaimKind, ID: newID})
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	dst := &Resource{Config: c, Bindings: []Binding{}}
	var nodes []string
	for _, b := range src.Bindings {
		nodes = append(nodes, b.Node)
	}
	err = m.bind(ctx, s, r, dst, nodes)
	if err == nil {
		var db Binding
		if db, err = dst.binding(sb.Node); err == nil {
			var o node.SyncReply
			if err = m.callInto(ctx, s, sb.Node, &o, node.MethodClone, db.Backing, map[string]any{"source": sb.Backing}); err == nil {
				applySync(dst, sb.Node, o)
			}
		}
	}
	return newID, errors.Join(err, m.commit(ctx, dst))
}

// Remove releases, unbinds and destroys a resource whatever its state,
// also finding backings a crash left unrecorded (query_resource_backing
// on each node of its pool).
func (m *Manager) Remove(ctx context.Context, id string) error {
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return err
	}
	x, err := r.resource(id)
	if err != nil {
		return fmt.Errorf("resmgr: %w", err)
	}
	nodes := map[string]bool{}
	for _, b := range x.Bindings {
		nodes[b.Node] = true
	}
	if p, err := r.pool(x.Config.Meta.Pool); err == nil {
		for _, n := range p.Connected {
			nodes[n] = true
		}
	}
	var errs []error
	for _, n := range sortedKeys(nodes) {
		if s.Node(n) == nil {
			continue
		}
		for range 4 { // bounded: one backing per node is the rule
			bid, err := m.queryBacking(ctx, s, n, id)
			if err != nil {
				errs = append(errs, err)
				break
			}
			if bid == "" {
				break
			}
			if _, err := m.call(ctx, s, n, "update_resource_by_backing", bid, "release", map[string]any{}); err != nil {
				errs = append(errs, err)
				break
			}
			if _, err := m.call(ctx, s, n, "destroy_resource_backing", bid); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return m.update(ctx, func(s *cluster.State, r *record) error {
		x, err := r.resource(id)
		if err != nil {
			return nil
		}
		r.Resources = slices.DeleteFunc(r.Resources, func(y *Resource) bool { return y == x })
		dropClaim(s, x)
		return nil
	})
}

func (m *Manager) queryBacking(ctx context.Context, s *cluster.State, node, resID string) (string, error) {
	c, err := m.conn(ctx, *s.Node(node))
	if err != nil {
		return "", err
	}
	v, err := c.Call(ctx, "resource.query_resource_backing", resID)
	if err != nil {
		return "", fmt.Errorf("resmgr: node %s: %w", node, err)
	}
	id, _ := v.(string)
	return id, nil
}

// Sweep removes the resources of reclaimed partitions (their claims in
// State.Released) on the nodes. A claim whose removal fails is put back
// for the next sweep.
func (m *Manager) Sweep(ctx context.Context) error {
	var taken []cluster.ReleasedClaim
	err := m.st.Update(ctx, func(s *cluster.State) error {
		taken = s.TakeReleased(ClaimKind)
		return nil
	})
	if err != nil || len(taken) == 0 {
		return err
	}
	var failed []cluster.ReleasedClaim
	var errs []error
	for _, c := range taken {
		err := m.Remove(ctx, c.ID)
		var nf *NotFoundError
		if err != nil && !errors.As(err, &nf) {
			failed = append(failed, c)
			errs = append(errs, fmt.Errorf("resource %s of partition %s: %w", c.ID, c.Partition, err))
			continue
		}
		m.log.Info("removed resource of a reclaimed partition", "resource", c.ID, "partition", c.Partition, "owner", c.Owner.String(), "reason", c.Reason)
	}
	if len(failed) > 0 {
		if err := m.st.Update(ctx, func(s *cluster.State) error {
			s.Released = append(s.Released, failed...)
			return nil
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
