package resmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/resmgr/node"
)

// The resource operations (upstream's vt_resmgr API): define, bind,
// run a command, clone, remove. Each reads the state once, calls the
// nodes, and writes once (clone twice).

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
		return nil, err
	}
	p, err := selectPool(r, resType, sels)
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", name, err)
	}
	c, err := defineResource(name, resType, p, params)
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", name, err)
	}
	x := &Resource{Config: c, Bindings: []Binding{}}
	if err := r.add(x); err != nil {
		return nil, err
	}
	return x, nil
}

// CreateResourceFromSource defines a copy of a volume (upstream's
// define_config_by_self): new uuid, filename <filename>_<8 alnum>, not
// allocated, in targetPool or the source's pool.
func (m *Manager) CreateResourceFromSource(ctx context.Context, sourceID, targetPool string) (_ string, err error) {
	defer wrapErr(&err)
	var id string
	err = m.update(ctx, func(s *cluster.State, r *record) error {
		src, err := r.resource(sourceID)
		if err != nil {
			return err
		}
		c := src.Config
		c.Meta.UUID, c.Meta.Allocated = newUUID(), false
		if targetPool != "" {
			p, err := r.pool(targetPool)
			if err != nil {
				return err
			}
			if !supports(p.Config.Meta.Type, c.Meta.Type) {
				return fmt.Errorf("pool %s cannot hold a %s", p.Config.Meta.Name, c.Meta.Type)
			}
			c.Meta.Pool = p.Config.Meta.UUID
		}
		if c.Meta.Type == TypeVolume {
			c.Spec.Filename += "_" + alnum8()
			c.Spec.URI = nil
			c.Spec.Allocation = nil
		}
		if err := r.add(&Resource{Config: c, Bindings: []Binding{}, Partition: src.Partition, Job: src.Job}); err != nil {
			return err
		}
		id = c.Meta.UUID
		return nil
	})
	return id, err
}

// DestroyResource forgets an unbound, unallocated resource.
func (m *Manager) DestroyResource(ctx context.Context, id string) (err error) {
	defer wrapErr(&err)
	return m.update(ctx, func(s *cluster.State, r *record) error {
		x, err := r.resource(id)
		if err != nil {
			return err
		}
		if x.Config.Meta.Allocated {
			return fmt.Errorf("resource %s: %w", x.Config.Meta.Name, ErrAllocated)
		}
		if len(x.Bindings) > 0 {
			return fmt.Errorf("resource %s: %w", x.Config.Meta.Name, ErrBound)
		}
		r.Resources = slices.DeleteFunc(r.Resources, func(y *Resource) bool { return y == x })
		dropClaim(s, x)
		return nil
	})
}

// BindResource makes a backing of the resource on each node (registration
// names; all the pool's nodes when none are given). Nodes already bound
// are skipped.
func (m *Manager) BindResource(ctx context.Context, id string, nodes []string) (err error) {
	defer wrapErr(&err)
	s, r, x, err := m.viewResource(ctx, id)
	if err != nil {
		return err
	}
	// The backings made are recorded even when another node failed.
	att, err := m.bind(ctx, s, r, x, nodes)
	return errors.Join(err, m.commit(ctx, att, x))
}

// bind makes x's backings on nodes (all the pool's nodes when none are
// given; bound ones are skipped), changing x, a snapshot's copy, which the
// caller commits with the pools it attached on the way: a node of the
// pool's access list where the pool is not attached yet gets it attached
// first (binding there is the caller's right to use the pool).
func (m *Manager) bind(ctx context.Context, s *cluster.State, r *record, x *Resource, nodes []string) (att []attachment, err error) {
	p, err := r.pool(x.Config.Meta.Pool)
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("Pool %s cannot be accessed from {%s}", p.Config.Meta.Name, strings.Join(denied, ", "))
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
			return nil, fmt.Errorf("port %s: a tap port lives on one node", x.Config.Meta.Name)
		}
	}
	var errs []error
	for _, n := range nodes {
		if slices.ContainsFunc(x.Bindings, func(b Binding) bool { return b.Node == n }) {
			continue
		}
		if !slices.Contains(p.Connected, n) {
			var out node.PoolReply
			if err := m.callInto(ctx, s, n, &out, node.MethodCreatePool, customize(p.Config, n)); err != nil {
				errs = append(errs, &NotConnectedError{Pool: p.Config.Meta.Name, Node: n, Err: err})
				continue
			}
			att = append(att, attachment{pool: p.Config.Meta.UUID, node: n, out: out})
			recordAttach(p, n, out) // in the snapshot too: attached once per call
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
	return att, errors.Join(errs...)
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

// UnbindResource destroys the backings on nodes (all when none given).
// The backings that went are recorded in one write, also when another
// node failed.
func (m *Manager) UnbindResource(ctx context.Context, id string, nodes []string) (err error) {
	defer wrapErr(&err)
	s, _, x, err := m.viewResource(ctx, id)
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
	return errors.Join(append(errs, m.commit(ctx, nil, x))...)
}

// BindingNodes returns the nodes the resource is bound to.
func (m *Manager) BindingNodes(ctx context.Context, id string) (_ []string, err error) {
	defer wrapErr(&err)
	_, _, x, err := m.viewResource(ctx, id)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, b := range x.Bindings {
		out = append(out, b.Node)
	}
	return out, nil
}

// ResourceInfo is the resource's config, or the request path's slice.
func (m *Manager) ResourceInfo(ctx context.Context, id, request string) (_ json.RawMessage, err error) {
	defer wrapErr(&err)
	_, _, x, err := m.viewResource(ctx, id)
	if err != nil {
		return nil, err
	}
	out, err := requestPath(x.Config, request, "Cannot find the requested options ")
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", x.Config.Meta.Name, err)
	}
	return out, nil
}

// UpdateResource runs command (allocate, release, sync, resize, clone) on
// node's backing (the first binding's node when empty). arguments are
// the command's: resize takes {"size": ...}. clone returns the new uuid.
func (m *Manager) UpdateResource(ctx context.Context, id, command, onNode string, arguments map[string]any) (_ string, err error) {
	defer wrapErr(&err)
	if command == "clone" {
		return m.cloneResource(ctx, id, onNode)
	}
	defer wrapErr(&err)
	s, _, x, err := m.viewResource(ctx, id)
	if err != nil {
		return "", err
	}
	if err := m.runCommand(ctx, s, x, command, onNode, arguments); err != nil {
		return "", err
	}
	return "", m.commit(ctx, nil, x)
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

// CloneResource makes an allocated copy of a volume named
// <name>_clone_<8 alnum>, bound to the same nodes, copied on node.
func (m *Manager) CloneResource(ctx context.Context, id, onNode string) (_ string, err error) {
	defer wrapErr(&err)
	return m.cloneResource(ctx, id, onNode)
}

func (m *Manager) cloneResource(ctx context.Context, id, onNode string) (_ string, err error) {
	s, r, src, err := m.viewResource(ctx, id)
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
	att, err := m.bind(ctx, s, r, dst, nodes)
	if err == nil {
		var db Binding
		if db, err = dst.binding(sb.Node); err == nil {
			var o node.SyncReply
			if err = m.callInto(ctx, s, sb.Node, &o, node.MethodClone, db.Backing, map[string]any{"source": sb.Backing}); err == nil {
				applySync(dst, sb.Node, o)
			}
		}
	}
	return newID, errors.Join(err, m.commit(ctx, att, dst))
}

// Remove releases, unbinds and destroys a resource whatever its state,
// also finding backings a crash left unrecorded (query_resource_backing
// on each node of its pool).
func (m *Manager) Remove(ctx context.Context, id string) (err error) {
	defer wrapErr(&err)
	return m.remove(ctx, id)
}

func (m *Manager) remove(ctx context.Context, id string) (err error) {
	s, r, x, err := m.viewResource(ctx, id)
	if err != nil {
		return err
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
		return "", fmt.Errorf("node %s: %w", node, err)
	}
	id, _ := v.(string)
	return id, nil
}
