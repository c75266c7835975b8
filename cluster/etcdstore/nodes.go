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

// The node cache: an allocation in a lab of a thousand nodes should not
// bring a thousand node records over the wire, nor make etcd read them
// (a read filtered by revision still reads every value on the server).
// So every write that changes node keys also puts the key nodes-changed,
// and an operation reads, with the partitions and at the same revision,
// only that key and the number of node keys (which etcd counts from its
// index). While both are what the cache saw, the cache holds the nodes at
// that revision; otherwise the nodes modified since the cache's revision
// are read (WithMinModRev), and all of them if the count does not add up
// (some were deleted). A writer that does not put nodes-changed (an older
// vtcluster, a hand edit with etcdctl) is caught by the guards: a
// transaction that touches a node compares its record's revision with the
// one the cache holds, and a failed transaction, or a state that does not
// check out, makes the next read ask for the nodes modified since.

// nodeCache is the node records at one revision; never changed once made.
type nodeCache struct {
	rev    int64                       // read at, or last checked against etcd at
	marker int64                       // mod revision of nodes-changed; 0: absent
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

func (s *Store) markerKey() string { return s.root + "nodes-changed" }

// nodeOps are the reads of the nodes that go with the read of the rest.
func (s *Store) nodeOps(c *nodeCache) []clientv3.Op {
	ops := []clientv3.Op{
		clientv3.OpGet(s.markerKey()),
		clientv3.OpGet(s.nodesPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly()),
	}
	if c == nil {
		ops = append(ops, clientv3.OpGet(s.nodesPrefix(), clientv3.WithPrefix()))
	}
	return ops
}

// suspectNodes makes the next read check the nodes against etcd whatever
// nodes-changed says.
func (s *Store) suspectNodes() {
	s.nodesMu.Lock()
	s.nodesSuspect = true
	s.nodesMu.Unlock()
}

// applyNodes returns the nodes at revision rev from c (nil: none cached)
// and the answers to nodeOps(c); trusted says they came from the cache
// on the word of nodes-changed alone.
func (s *Store) applyNodes(ctx, octx context.Context, c *nodeCache, rev int64, resps []*clientv3.GetResponse) (nc *nodeCache, trusted bool, err error) {
	var marker int64
	if kvs := resps[0].Kvs; len(kvs) > 0 {
		marker = kvs[0].ModRevision
	}
	count := resps[1].Count
	if c == nil {
		nc, err = s.buildNodes(emptyNodes, rev, resps[2].Kvs, true)
		if nc != nil {
			nc.marker = marker
		}
		return nc, false, err
	}
	s.nodesMu.Lock()
	suspect := s.nodesSuspect
	s.nodesSuspect = false
	s.nodesMu.Unlock()
	if !suspect && marker != 0 && marker == c.marker && count == int64(len(c.kvs)) {
		// c.rev stays the revision c was last checked at, so that a
		// check after a suspicion reads every change since.
		return c, true, nil
	}
	nc, err = s.changedNodes(ctx, octx, c, rev, count)
	if nc != nil {
		nc.marker = marker
	}
	return nc, false, err
}

// changedNodes reads the nodes modified after c's revision, at rev, and
// all of them if that does not account for count.
func (s *Store) changedNodes(ctx, octx context.Context, c *nodeCache, rev, count int64) (*nodeCache, error) {
	resp, err := s.cli.Get(octx, s.nodesPrefix(), clientv3.WithPrefix(), clientv3.WithMinModRev(c.rev+1), clientv3.WithRev(rev))
	if err != nil {
		return nil, s.failed("read nodes", ctx, octx, err)
	}
	changed := resp.Kvs
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
	names := slices.Collect(maps.Keys(nodes))
	slices.SortFunc(names, func(a, b string) int { return bySeq(next.seqs[a], next.seqs[b], a, b) })
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
