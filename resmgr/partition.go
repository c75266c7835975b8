package resmgr

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"slices"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/resmgr/node"
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
	// MAC is a port's guest NIC address, chosen at reservation.
	MAC string `json:"mac,omitempty"`
}

// Acquired is one acquired resource as a test sees it on one node; the
// runner hands it to the test (environment, partition.json) and to the
// VM service (a guest's disks and NICs).
type Acquired struct {
	// Name is the test's name of the resource, Tag the node's tag in the
	// partition, Node its registration name; ID is the resource's uuid.
	Name, Type, Tag, Node, ID string
	// Value is what the test sees: a volume's path or a port's ifname.
	Value string
	// Path and Format are a volume's file on Node and its image format
	// (qcow2 or raw).
	Path, Format string
	// Ifname is a port's tap device on Node and MAC the address for the
	// guest NIC on it (unique per port, locally administered).
	Ifname, MAC string
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
				if w.Type == TypePort {
					use.MAC = newMAC()
				}
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
// nodes and returns what the test sees. It reads the state once and
// writes it twice: after the bindings (so a crash still leaves them
// recorded for Remove) and after the allocations. On error, what was made
// stays recorded: Release (or a later Sweep) removes it.
func (m *Manager) Acquire(ctx context.Context, partitionID string) (_ []Acquired, err error) {
	defer wrapErr(&err)
	s, r, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var xs []*Resource
	for _, x := range r.Resources {
		if x.Partition == partitionID && x.Use != nil {
			xs = append(xs, x)
		}
	}
	var errs []error
	var att []attachment
	for _, x := range xs {
		a, err := m.bind(ctx, s, r, x, sortedKeys(x.Use.Tags))
		att, errs = append(att, a...), append(errs, err)
	}
	if err := errors.Join(append(errs, m.commit(ctx, att, xs...))...); err != nil {
		return nil, err
	}
	for _, x := range xs {
		nodes := sortedKeys(x.Use.Tags)
		alloc := x.Use.Allocate
		if x.Config.Meta.Type == TypePort {
			alloc = nodes[0]
		}
		err = m.runCommand(ctx, s, x, "allocate", alloc, nil)
		for _, n := range nodes {
			if err != nil {
				break
			}
			if n != alloc {
				// Other nodes see the same file: record their view of it.
				err = m.runCommand(ctx, s, x, "sync", n, nil)
			}
		}
		if err != nil {
			break
		}
	}
	if err := errors.Join(err, m.commit(ctx, nil, xs...)); err != nil {
		return nil, err
	}
	var out []Acquired
	for _, x := range xs {
		for _, n := range sortedKeys(x.Use.Tags) {
			out = append(out, acquired(x, n))
		}
	}
	return out, nil
}

// acquired is x as the test sees it on node n.
func acquired(x *Resource, n string) Acquired {
	a := Acquired{Name: x.Use.Name, Type: x.Config.Meta.Type, Tag: x.Use.Tags[n], Node: n, ID: x.Config.Meta.UUID}
	if x.Config.Meta.Type == TypePort {
		if x.Config.Spec.Ifname != nil {
			a.Ifname = *x.Config.Spec.Ifname
		}
		a.Value, a.MAC = a.Ifname, x.Use.MAC
		return a
	}
	a.Path = x.Config.Spec.URI["*"]
	if a.Path == "" {
		a.Path = x.Config.Spec.URI[n]
	}
	a.Value, a.Format = a.Path, node.VolumeFormat(x.Config.Spec.Filename)
	return a
}

// newMAC is a random locally administered unicast address in QEMU's
// 52:54:00 range.
func newMAC() string {
	var b [3]byte
	crand.Read(b[:])
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}

// ReleasePartition removes every resource of the partition on the nodes
// and drops its claims. What cannot be removed keeps its claim, so the
// partition's release hands it to Sweep.
func (m *Manager) ReleasePartition(ctx context.Context, partitionID string) (err error) {
	defer wrapErr(&err)
	_, r, err := m.snapshot(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, x := range slices.Clone(r.Resources) {
		if x.Partition != partitionID {
			continue
		}
		if err := m.remove(ctx, x.Config.Meta.UUID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Sweep removes the resources of reclaimed partitions (their claims in
// State.Released) on the nodes. A claim whose removal fails is put back
// for the next sweep.
func (m *Manager) Sweep(ctx context.Context) (err error) {
	defer wrapErr(&err)
	return m.sweep(ctx)
}

func (m *Manager) sweep(ctx context.Context) (err error) {
	var taken []cluster.ReleasedClaim
	err = m.st.Update(ctx, func(s *cluster.State) error {
		taken = s.TakeReleased(ClaimKind)
		return nil
	})
	if err != nil || len(taken) == 0 {
		return err
	}
	var failed []cluster.ReleasedClaim
	var errs []error
	for _, c := range taken {
		err := m.remove(ctx, c.ID)
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
