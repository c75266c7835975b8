package node

import (
	"context"
	"maps"
	"slices"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// The registries: what differs between kinds of pool and types of
// resource lives in one value per kind, filled by the kind's own file;
// the service looks kinds up and never switches over them. A new kind of
// pool (block, iSCSI, Ceph) is one file that registers itself here, and
// one on the controller's side.

// poolKind is one kind of pool on the node.
type poolKind struct {
	// holds is the resource type the pool's backings are.
	holds string
	// open connects c (mount, check the directory or the bridge) and
	// fills its fields; close undoes it.
	open  func(ctx context.Context, s *Service, c *poolConn, spec PoolSpec) error
	close func(ctx context.Context, s *Service, c *poolConn) error
	// reply is create_pool_connection's "out" (nil: none).
	reply func(c *poolConn) any
	// capacity is the pool's size and free bytes, or nil when the kind
	// has none.
	capacity func(c *poolConn) (Capacity, error)
}

var poolKinds = map[string]poolKind{}

func registerPoolKind(name string, k poolKind) { poolKinds[name] = k }

// PoolKinds are the names of the kinds of pool the node knows, sorted.
func PoolKinds() []string { return sortedKeys(poolKinds) }

// resourceKind is one type of resource: the operations on its backings.
// Each runs with the backing's lock held, on a copy of the backing it
// may change and store (Service.putBacking).
type resourceKind struct {
	newBacking func(s *Service, c *poolConn, b *backing, req BackingRequest) error
	allocate   func(ctx context.Context, s *Service, c *poolConn, b *backing, args UpdateArgs) error
	release    func(ctx context.Context, s *Service, c *poolConn, b *backing, args UpdateArgs) error
	// resize and clone are nil when the type has no such command.
	resize func(ctx context.Context, s *Service, c *poolConn, b *backing, args UpdateArgs) error
	clone  func(ctx context.Context, s *Service, c *poolConn, dst *backing, srcPool *poolConn, src *backing) error
	sync   func(s *Service, c *poolConn, b *backing) []xmlrpc.Member
}

var resourceKinds = map[string]resourceKind{
	TypeVolume: volumeKind,
	TypePort:   portKind,
}

// sortedKeys are m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
