package resmgr

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/vtcluster/vtcluster/cluster"
)

// The persisted model: pools and resources as cluster.State.Resources
// keeps them, and the claims that tie resources to partitions.

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

// dropClaim removes x's claim from its partition: it was given back.
func dropClaim(s *cluster.State, x *Resource) {
	if x.Partition == "" {
		return
	}
	if p := s.Partition(x.Partition); p != nil {
		p.Claims = slices.DeleteFunc(p.Claims, func(c cluster.Claim) bool { return c.Kind == ClaimKind && c.ID == x.Config.Meta.UUID })
	}
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
