//go:build !vtcluster_noetcd

package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vtcluster/vtcluster/cluster"
)

// The node cache: an operation reads the nodes modified since the
// revision the cache is current at (WithMinModRev) and their count, in the
// same read as the partitions, so an allocation in a lab whose nodes did
// not change brings no node record over the wire and decodes none, and the
// State it works on is built on the same cluster.NodeSet as the last one.
// A count that does not add up means nodes were deleted: then all node
// keys are read again, at the same revision.

// nodeCache is the node records at one revision; never changed once made.
type nodeCache struct {
	rev    int64
	kvs    map[string]*mvccpb.KeyValue // by node name
	seqs   map[string]int64            // by node name: registration order
	raw    map[string][]byte           // by node name: the record's JSON
	maxSeq int64
	set    *cluster.NodeSet
}

var emptyNodes = &nodeCache{kvs: map[string]*mvccpb.KeyValue{}, seqs: map[string]int64{}, raw: map[string][]byte{}}

func (s *Store) nodesPrefix() string { return s.root + "nodes/" }

func (s *Store) cachedNodes() *nodeCache {
	s.nodesMu.Lock()
	defer s.nodesMu.Unlock()
	return s.nodes
}

// nodeOps are the reads of the nodes that go with the read of the rest:
// what changed after c's revision, and how many there are.
func (s *Store) nodeOps(c *nodeCache) []clientv3.Op {
	if c == nil {
		return []clientv3.Op{clientv3.OpGet(s.nodesPrefix(), clientv3.WithPrefix())}
	}
	return []clientv3.Op{
		clientv3.OpGet(s.nodesPrefix(), clientv3.WithPrefix(), clientv3.WithMinModRev(c.rev+1)),
		clientv3.OpGet(s.nodesPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly()),
	}
}

// applyNodes returns the nodes at revision rev from c (nil: none cached)
// and the answers to nodeOps(c).
func (s *Store) applyNodes(ctx, octx context.Context, c *nodeCache, rev int64, resps []*clientv3.GetResponse) (*nodeCache, error) {
	if c == nil {
		return s.buildNodes(emptyNodes, rev, resps[0].Kvs, true)
	}
	changed, count := resps[0].Kvs, resps[1].Count
	known := int64(len(c.kvs))
	for _, kv := range changed {
		if _, ok := c.kvs[s.nodeName(kv)]; !ok {
			known++
		}
	}
	if known != count {
		// Some were deleted: read them all, at the same revision.
		resp, err := s.cli.Get(octx, s.nodesPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev))
		if err != nil {
			return nil, s.failed("read nodes", ctx, octx, err)
		}
		return s.buildNodes(emptyNodes, rev, resp.Kvs, true)
	}
	if len(changed) == 0 {
		if rev == c.rev {
			return c, nil
		}
		next := *c
		next.rev = rev
		return &next, nil
	}
	return s.buildNodes(c, rev, changed, false)
}

func (s *Store) nodeName(kv *mvccpb.KeyValue) string {
	return strings.TrimPrefix(string(kv.Key), s.nodesPrefix())
}

// buildNodes is c with kvs put in (all of them when whole), at rev.
func (s *Store) buildNodes(c *nodeCache, rev int64, kvs []*mvccpb.KeyValue, whole bool) (*nodeCache, error) {
	next := &nodeCache{rev: rev, kvs: maps.Clone(c.kvs), seqs: maps.Clone(c.seqs), raw: maps.Clone(c.raw), maxSeq: c.maxSeq}
	if whole {
		next.kvs, next.seqs, next.raw, next.maxSeq = map[string]*mvccpb.KeyValue{}, map[string]int64{}, map[string][]byte{}, 0
	}
	nodes := map[string]cluster.Node{}
	if !whole {
		for _, n := range c.set.Nodes() {
			nodes[n.Name] = n
		}
	}
	for _, kv := range kvs {
		name := s.nodeName(kv)
		if name == "" || strings.Contains(name, "/") {
			continue // not a node record of ours
		}
		var e entity
		if err := json.Unmarshal(kv.Value, &e); err != nil || len(e.Value) == 0 {
			if err == nil {
				err = errors.New(`no "value"`)
			}
			return nil, s.corrupt(string(kv.Key), err)
		}
		n, err := cluster.DecodeNode(e.Value)
		if err != nil {
			return nil, s.corrupt(string(kv.Key), err)
		}
		if n.Name != name {
			return nil, s.corrupt(string(kv.Key), fmt.Errorf("holds node %q", n.Name))
		}
		next.kvs[name], next.seqs[name], next.raw[name] = kv, e.Seq, e.Value
		next.maxSeq = max(next.maxSeq, e.Seq)
		nodes[name] = n
	}
	// Registration (creation) order, as in the state file.
	names := slices.Collect(maps.Keys(nodes))
	slices.SortFunc(names, func(a, b string) int {
		if next.seqs[a] != next.seqs[b] {
			return int(next.seqs[a] - next.seqs[b])
		}
		return strings.Compare(a, b)
	})
	list := make([]cluster.Node, len(names))
	for i, name := range names {
		list[i] = nodes[name]
	}
	set, err := cluster.NewNodeSet(list)
	if err != nil {
		return nil, &cluster.StateError{Path: s.location, Err: err}
	}
	next.set = set
	return next, nil
}

// keepNodes makes c the cache, unless a newer one is there already.
func (s *Store) keepNodes(c *nodeCache) {
	s.nodesMu.Lock()
	defer s.nodesMu.Unlock()
	if s.nodes == nil || c.rev > s.nodes.rev {
		s.nodes = c
	}
}
