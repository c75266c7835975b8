package resmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/resmgr/node"
)

// The pool operations, and the job hooks (setup, startup, teardown) that
// attach and detach pools. Each reads the state once, calls the nodes, and
// writes once.

// Setup registers the configured pools (upstream's setup): the "pools"
// section of the cluster config, then a default filesystem pool
// def_fs_pool_<node> for every node no configured filesystem pool
// reaches. It replaces earlier pools, but refuses while resources exist or
// pools are attached, since forgetting them would leak them on the nodes.
func (m *Manager) Setup(ctx context.Context, pools json.RawMessage) (err error) {
	defer wrapErr(&err)
	params, err := parsePools(pools)
	if err != nil {
		return err
	}
	return m.update(ctx, func(s *cluster.State, r *record) error {
		if len(r.Resources) > 0 {
			return fmt.Errorf("setup: %d resources still exist; remove them first (vtcluster resource list, vtcluster resource destroy --force)", len(r.Resources))
		}
		for _, p := range r.Pools {
			if len(p.Connected) > 0 {
				return fmt.Errorf("setup: pool %s is attached to %s (vtcluster pool detach %s): %w",
					p.Config.Meta.Name, strings.Join(p.Connected, ", "), p.Config.Meta.Name, ErrPoolBusy)
			}
		}
		names := make([]string, len(s.Nodes))
		for i, n := range s.Nodes {
			names[i] = n.Name
		}
		if err := ValidatePools(pools, names); err != nil {
			return err
		}
		r.Pools = nil
		covered := map[string]bool{}
		for _, np := range params {
			c, err := poolFromParams(np.Name, np.Params, names)
			if err != nil {
				return err
			}
			for _, n := range c.Meta.Access.Nodes {
				if s.Node(n) == nil {
					return fmt.Errorf("pool %s: access node %q is not registered", np.Name, n)
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
func (m *Manager) Cleanup(ctx context.Context) (err error) {
	defer wrapErr(&err)
	return m.update(ctx, func(s *cluster.State, r *record) error {
		if len(r.Resources) > 0 {
			return fmt.Errorf("cleanup: %d resources still exist; destroy them first", len(r.Resources))
		}
		for _, p := range r.Pools {
			if len(p.Connected) > 0 {
				return fmt.Errorf("cleanup: pool %s: %w", p.Config.Meta.Name, ErrPoolBusy)
			}
		}
		r.Pools = nil
		return nil
	})
}

// Startup starts the backing service on every node and attaches every
// pool (upstream's startup, run by the job's pre hook).
func (m *Manager) Startup(ctx context.Context) (err error) {
	defer wrapErr(&err)
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
		if err := m.attachPool(ctx, p.Config.Meta.UUID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RemoveJob removes on the nodes every resource the job jobID still holds
// (all resources when jobID is empty), and what reclaimed partitions left.
func (m *Manager) RemoveJob(ctx context.Context, jobID string) (err error) {
	defer wrapErr(&err)
	return m.removeJob(ctx, jobID)
}

func (m *Manager) removeJob(ctx context.Context, jobID string) (err error) {
	_, r, err := m.snapshot(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, x := range r.Resources {
		if jobID == "" || x.Job == jobID {
			if err := m.remove(ctx, x.Config.Meta.UUID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := m.sweep(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Teardown is upstream's teardown, run by the last job's post hook: it
// removes what the job jobID still holds (upstream left it behind), then
// detaches the pools no resource uses and, when no resource is left at
// all, stops the nodes' backing services.
func (m *Manager) Teardown(ctx context.Context, jobID string) (err error) {
	defer wrapErr(&err)
	var errs []error
	if err := m.removeJob(ctx, jobID); err != nil {
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
		if err := m.detachPool(ctx, p.Config.Meta.UUID); err != nil {
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
func (m *Manager) CreatePoolFromParams(ctx context.Context, name string, params json.RawMessage) (_ string, err error) {
	defer wrapErr(&err)
	if !gjson.ValidBytes(params) || !gjson.ParseBytes(params).IsObject() {
		return "", fmt.Errorf("pool %s: parameters must be a JSON object", name)
	}
	var id string
	err = m.update(ctx, func(s *cluster.State, r *record) error {
		if _, err := r.pool(name); err == nil {
			return fmt.Errorf("pool %q exists already", name)
		}
		c, err := poolFromParams(name, gjson.ParseBytes(params), s.SortedNames())
		if err != nil {
			return err
		}
		for _, n := range c.Meta.Access.Nodes {
			if s.Node(n) == nil {
				return fmt.Errorf("pool %s: access node %q is not registered", name, n)
			}
		}
		r.Pools = append(r.Pools, &Pool{Config: c})
		id = c.Meta.UUID
		return nil
	})
	return id, err
}

// DestroyPool forgets a pool; ErrPoolBusy while attached or used.
func (m *Manager) DestroyPool(ctx context.Context, id string) (err error) {
	defer wrapErr(&err)
	return m.update(ctx, func(s *cluster.State, r *record) error {
		p, err := r.pool(id)
		if err != nil {
			return err
		}
		if len(p.Connected) > 0 || slices.ContainsFunc(r.Resources, func(x *Resource) bool { return x.Config.Meta.Pool == p.Config.Meta.UUID }) {
			return fmt.Errorf("destroy pool %s: %w", p.Config.Meta.Name, ErrPoolBusy)
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
func (m *Manager) AttachPool(ctx context.Context, id string) (err error) {
	defer wrapErr(&err)
	return m.attachPool(ctx, id)
}

func (m *Manager) attachPool(ctx context.Context, id string) (err error) {
	s, _, p, err := m.viewPool(ctx, id)
	if err != nil {
		return err
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
			recordAttach(p, d.node, d.out)
		}
		return nil
	})
	return errors.Join(append(errs, uerr)...)
}

// DetachPool disconnects the pool from every node it is attached to.
func (m *Manager) DetachPool(ctx context.Context, id string) (err error) {
	defer wrapErr(&err)
	return m.detachPool(ctx, id)
}

func (m *Manager) detachPool(ctx context.Context, id string) (err error) {
	s, _, p, err := m.viewPool(ctx, id)
	if err != nil {
		return err
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

// PoolInfo is the pool's config, or the request path's slice of it.
func (m *Manager) PoolInfo(ctx context.Context, id, request string) (_ json.RawMessage, err error) {
	defer wrapErr(&err)
	_, _, p, err := m.viewPool(ctx, id)
	if err != nil {
		return nil, err
	}
	out, err := requestPath(p.Config, request, "Unknown key ")
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", p.Config.Meta.Name, err)
	}
	return out, nil
}

// Pools returns the pool records in selection order.
func (m *Manager) Pools(ctx context.Context) (_ []Pool, _ []Resource, err error) {
	defer wrapErr(&err)
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
func (m *Manager) SelectPool(ctx context.Context, resType string, params map[string]string) (_ string, err error) {
	defer wrapErr(&err)
	_, r, err := m.snapshot(ctx)
	if err != nil {
		return "", err
	}
	sels, err := poolSelectors(resType, params)
	if err != nil {
		return "", err
	}
	p, err := selectPool(r, resType, sels)
	if err != nil {
		return "", err
	}
	return p.Config.Meta.UUID, nil
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
	s, _, p, err := m.viewPool(ctx, id)
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
