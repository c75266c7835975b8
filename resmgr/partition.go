package resmgr

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/vtcluster/vtcluster/cluster"
)

// Want is one resource a test declares (the runner's ResourceSpec with
// tags): a volume bound to every tag of On and allocated on Allocate, or
// a tap port on each tag of On.
type Want struct {
	Name     string
	Type     string
	On       []string
	Allocate string
	Params   map[string]string
}

// Use records which test declaration a resource serves.
type Use struct {
	Name string `json:"name"`
	// Tags maps each bound node to its tag in the partition.
	Tags     map[string]string `json:"tags"`
	Allocate string            `json:"allocate,omitempty"`
}

// Got is one acquired resource as a test sees it on one node.
type Got struct {
	Name, Type, Tag, ID string
	// Value is a volume's path on the node or a port's ifname.
	Value string
}

// Reserve returns the cluster.AllocRequest.Reserve hook for wants: inside
// the allocation's locked Update it picks each resource's pool (one that
// every node it is bound to can reach), records the resource and claims
// it for the partition, so nodes and resources are reserved in one step.
func Reserve(wants []Want) func(*cluster.State, *cluster.Partition) error {
	return func(s *cluster.State, p *cluster.Partition) error {
		r, err := loadRecord(s)
		if err != nil {
			return err
		}
		node := func(tag string) (string, error) {
			n, ok := p.NodeFor(tag)
			if !ok {
				return "", fmt.Errorf("resource: no node for tag %q", tag)
			}
			return n, nil
		}
		for _, w := range wants {
			groups := [][]string{w.On}
			if w.Type == TypePort {
				groups = nil
				for _, t := range w.On {
					groups = append(groups, []string{t})
				}
			}
			for _, tags := range groups {
				use := &Use{Name: w.Name, Tags: map[string]string{}}
				var need []string
				for _, t := range tags {
					n, err := node(t)
					if err != nil {
						return err
					}
					need = append(need, n)
					use.Tags[n] = t
				}
				if w.Allocate != "" {
					if use.Allocate, err = node(w.Allocate); err != nil {
						return err
					}
				}
				params := map[string]string{}
				for k, v := range w.Params {
					params[k] = v
				}
				if w.Type == TypeVolume && params["image_name"] == "" {
					// Unique per test: parallel tests share pools.
					params["image_name"] = w.Name + "_" + p.ID[:12]
				}
				sels, err := poolSelectors(w.Type, params)
				if err != nil {
					return fmt.Errorf("resource %s: %w", w.Name, err)
				}
				pool, err := selectPool(r, w.Type, sels, need...)
				if err != nil {
					return fmt.Errorf("resource %s on %v: %w", w.Name, need, err)
				}
				c, err := defineResource(w.Name, w.Type, pool, params)
				if err != nil {
					return fmt.Errorf("resource %s: %w", w.Name, err)
				}
				if err := r.add(&Resource{Config: c, Bindings: []Binding{},
					Partition: p.ID, Job: p.Owner.JobID, Use: use}); err != nil {
					return err
				}
				claimNode := ""
				if len(need) == 1 {
					claimNode = need[0]
				}
				p.Claims = append(p.Claims, cluster.Claim{Kind: ClaimKind, ID: c.Meta.UUID, Node: claimNode})
			}
		}
		return r.store(s)
	}
}

// Acquire binds and allocates the partition's reserved resources on their
// nodes and returns what the test sees. On error, what was made stays
// recorded: Release (or a later Sweep) removes it.
func (m *Manager) Acquire(ctx context.Context, partitionID string) ([]Got, error) {
	_, r, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, x := range r.Resources {
		if x.Partition == partitionID && x.Use != nil {
			ids = append(ids, x.Config.Meta.UUID)
		}
	}
	for _, id := range ids {
		x, _ := r.resource(id)
		nodes := sortedKeys(x.Use.Tags)
		if err := m.BindResource(ctx, id, nodes); err != nil {
			return nil, err
		}
		alloc := x.Use.Allocate
		if x.Config.Meta.Type == TypePort {
			alloc = nodes[0]
		}
		if _, err := m.UpdateResource(ctx, id, "allocate", alloc, nil); err != nil {
			return nil, err
		}
		for _, n := range nodes {
			if n == alloc {
				continue
			}
			// Other nodes see the same file: record their view of it.
			if _, err := m.UpdateResource(ctx, id, "sync", n, nil); err != nil {
				return nil, err
			}
		}
	}
	_, r, err = m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var out []Got
	for _, id := range ids {
		x, err := r.resource(id)
		if err != nil {
			return nil, err
		}
		for _, n := range sortedKeys(x.Use.Tags) {
			g := Got{Name: x.Use.Name, Type: x.Config.Meta.Type, Tag: x.Use.Tags[n], ID: id}
			if x.Config.Meta.Type == TypePort && x.Config.Spec.Ifname != nil {
				g.Value = *x.Config.Spec.Ifname
			} else if u := x.Config.Spec.URI["*"]; u != "" {
				g.Value = u
			} else {
				g.Value = x.Config.Spec.URI[n]
			}
			out = append(out, g)
		}
	}
	return out, nil
}

// ReleasePartition removes every resource of the partition on the nodes
// and drops its claims. What cannot be removed keeps its claim, so the
// partition's release hands it to Sweep.
func (m *Manager) ReleasePartition(ctx context.Context, partitionID string) error {
	_, r, err := m.snapshot(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, x := range slices.Clone(r.Resources) {
		if x.Partition != partitionID {
			continue
		}
		if err := m.Remove(ctx, x.Config.Meta.UUID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
