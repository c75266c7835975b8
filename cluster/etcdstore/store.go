//go:build !vtcluster_noetcd

package etcdstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vtcluster/vtcluster/cluster"
)

// maxAttempts bounds Update's retries under contention; each attempt only
// fails because another writer committed, so this is reached only by a
// store busier than any lab.
const maxAttempts = 64

// Store is a cluster.Store in etcd. It is safe for concurrent use.
type Store struct {
	cli      *clientv3.Client
	root     string // "<prefix>/<cluster>/", with the trailing slash
	location string // etcd://endpoints/prefix/cluster, for messages
	timeout  time.Duration
	tls      bool
	// beforeTxn, set by tests, runs before each transaction is sent:
	// it freezes etcd at the one moment whose outcome is unknown.
	beforeTxn func()

	nodesMu      sync.Mutex
	nodes        *nodeCache // nodes.go
	nodesSuspect bool
	entMu        sync.Mutex
	ents         map[string]cachedEntity // by key
}

var (
	_ cluster.Store        = (*Store)(nil)
	_ cluster.ChangeWaiter = (*Store)(nil)
)

// Path names the store for messages, like FileStore.Path: an etcd URL
// without credentials.
func (s *Store) Path() string { return s.location }

// Close ends the client's connections. Leases of partitions this process
// holds are not revoked: the owner releases its partitions itself.
func (s *Store) Close() error { return s.cli.Close() }

func (s *Store) docKey() string               { return s.root + "doc" }
func (s *Store) nodeKey(name string) string   { return s.root + "nodes/" + name }
func (s *Store) partKey(id string) string     { return s.root + "partitions/" + id }
func (s *Store) holderKey(node string) string { return s.root + "holders/" + node }
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// failed words an error of a request, naming the store, and the timeout
// when that is what ended it, so "etcd is down" reads as such.
func (s *Store) failed(what string, ctx, octx context.Context, err error) error {
	if status.Code(err) == codes.ResourceExhausted {
		return fmt.Errorf("%s: etcd at %s: the keys under %q hold more than the %d MiB one read may bring; delete the keys there that are not vtcluster's (its own are doc, nodes-changed, nodes/, partitions/ and holders/), or use another prefix or cluster name: %w",
			what, s.location, s.root, MaxReadBytes>>20, err)
	}
	if ctx.Err() == nil && octx.Err() != nil {
		hint := "is it running and reachable?"
		if s.tls {
			// A refused TLS handshake looks the same from here.
			hint += " do its certificate and --etcd-ca, and --etcd-cert/--etcd-key, match?"
		}
		return fmt.Errorf("%s: etcd at %s did not answer within %s (%s): %w", what, s.location, s.timeout, hint, err)
	}
	return fmt.Errorf("%s: etcd at %s: %w", what, s.location, err)
}

// entity is a node or partition record as stored.
type entity struct {
	Seq   int64           `json:"seq"`
	Value json.RawMessage `json:"value"`
}

// snapshot is everything under the root at one revision.
type snapshot struct {
	rev     int64
	doc     *mvccpb.KeyValue
	nodes   *nodeCache
	trusted bool // nodes from the cache on the word of nodes-changed
	parts   map[string]*mvccpb.KeyValue
	holders map[string]*mvccpb.KeyValue
	seqs    map[string]int64 // partition key -> seq
	ttl     map[string]int64 // partition id -> seconds its lease has left
	maxPart int64
}

func (sn *snapshot) modRev(kv *mvccpb.KeyValue) int64 {
	if kv == nil {
		return 0
	}
	return kv.ModRevision
}

// read fetches the cluster at one revision: the doc, the partitions and
// holders, and the nodes through the node cache (nodes.go). ctx is the
// caller's; octx carries the deadline of the whole operation, so a store
// call takes one timeout however many requests it makes.
func (s *Store) read(ctx, octx context.Context) (*snapshot, error) {
	c := s.cachedNodes()
	ops := append([]clientv3.Op{
		clientv3.OpGet(s.docKey()),
		clientv3.OpGet(s.root+"partitions/", clientv3.WithPrefix()),
		clientv3.OpGet(s.root+"holders/", clientv3.WithPrefix()),
	}, s.nodeOps(c)...)
	resp, err := s.cli.Txn(octx).Then(ops...).Commit()
	if err != nil {
		return nil, s.failed("read state", ctx, octx, err)
	}
	gets := make([]*clientv3.GetResponse, len(resp.Responses))
	for i, r := range resp.Responses {
		gets[i] = (*clientv3.GetResponse)(r.GetResponseRange())
	}
	sn := &snapshot{
		rev:   resp.Header.Revision,
		parts: map[string]*mvccpb.KeyValue{}, holders: map[string]*mvccpb.KeyValue{}, seqs: map[string]int64{}, ttl: map[string]int64{},
	}
	if kvs := gets[0].Kvs; len(kvs) > 0 {
		sn.doc = kvs[0]
	}
	for _, g := range []struct {
		kvs  []*mvccpb.KeyValue
		into map[string]*mvccpb.KeyValue
	}{{gets[1].Kvs, sn.parts}, {gets[2].Kvs, sn.holders}} {
		for _, kv := range g.kvs {
			rel := strings.TrimPrefix(string(kv.Key), s.root)
			if _, name, _ := strings.Cut(rel, "/"); name != "" && !strings.Contains(name, "/") {
				g.into[name] = kv
			}
		}
	}
	if sn.nodes, sn.trusted, err = s.applyNodes(ctx, octx, c, sn.rev, gets[3:]); err != nil {
		return nil, err
	}
	s.keepNodes(sn.nodes)
	return sn, nil
}

// state assembles the snapshot, but for its nodes, into one state
// document and decodes it with cluster.UnmarshalStateOn on the cached
// node set, so it gets the file store's checks. A
// partition's Expires is when its lease ends as etcd counts it, seen from
// this host's clock, so no clock but etcd's decides who holds a node.
func (s *Store) state(ctx, octx context.Context, sn *snapshot, fixed bool) (*cluster.State, error) {
	doc := map[string]json.RawMessage{}
	if sn.doc != nil {
		if err := json.Unmarshal(sn.doc.Value, &doc); err != nil {
			return nil, s.corrupt(string(sn.doc.Key), err)
		}
	} else {
		doc["version"] = json.RawMessage(fmt.Sprint(cluster.StateVersion))
	}
	list := func(kvs map[string]*mvccpb.KeyValue, top *int64) (json.RawMessage, error) {
		type item struct {
			name string
			e    entity
		}
		items := make([]item, 0, len(kvs))
		for name, kv := range kvs {
			e, err := s.entity(kv)
			if err != nil {
				return nil, s.corrupt(string(kv.Key), err)
			}
			sn.seqs[string(kv.Key)] = e.Seq
			*top = max(*top, e.Seq)
			items = append(items, item{name, e})
		}
		slices.SortFunc(items, func(a, b item) int { return bySeq(a.e.Seq, b.e.Seq, a.name, b.name) })
		var buf bytes.Buffer
		buf.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(it.e.Value)
		}
		buf.WriteByte(']')
		return buf.Bytes(), nil
	}
	var err error
	doc["nodes"] = json.RawMessage("[]")
	if doc["partitions"], err = list(sn.parts, &sn.maxPart); err != nil {
		return nil, err
	}
	s.pruneEntities(sn)
	data, err := assemble(doc)
	if err != nil {
		return nil, s.corrupt(s.docKey(), err)
	}
	st, err := cluster.UnmarshalStateOn(data, sn.nodes.set, fixed)
	if err != nil {
		return nil, &cluster.StateError{Path: s.location, Err: err}
	}
	now := time.Now().UTC()
	for i := range st.Partitions {
		p := &st.Partitions[i]
		kv := sn.parts[p.ID]
		if kv == nil || kv.Lease == 0 {
			continue
		}
		ttl, err := s.cli.TimeToLive(octx, clientv3.LeaseID(kv.Lease))
		if err != nil {
			return nil, s.failed("read lease of partition "+p.ID, ctx, octx, err)
		}
		p.Expires = now
		if ttl.TTL > 0 {
			p.Expires = now.Add(time.Duration(ttl.TTL) * time.Second)
			sn.ttl[p.ID] = ttl.TTL
		}
	}
	st.Revision = sn.rev
	return st, nil
}

// bySeq orders records by registration (creation) order, as in the state
// file, then by name.
func bySeq(seqA, seqB int64, a, b string) int {
	if seqA != seqB {
		return cmp.Compare(seqA, seqB)
	}
	return strings.Compare(a, b)
}

// cachedEntity is a record as decoded at one mod revision.
type cachedEntity struct {
	mod int64
	e   entity
}

// entity decodes kv's record, once per revision of the key.
func (s *Store) entity(kv *mvccpb.KeyValue) (entity, error) {
	key := string(kv.Key)
	s.entMu.Lock()
	c, ok := s.ents[key]
	s.entMu.Unlock()
	if ok && c.mod == kv.ModRevision {
		return c.e, nil
	}
	var e entity
	if err := json.Unmarshal(kv.Value, &e); err != nil || len(e.Value) == 0 {
		if err == nil {
			err = errors.New(`no "value"`)
		}
		return e, err
	}
	s.entMu.Lock()
	if s.ents == nil {
		s.ents = map[string]cachedEntity{}
	}
	s.ents[key] = cachedEntity{kv.ModRevision, e}
	s.entMu.Unlock()
	return e, nil
}

// pruneEntities forgets records no longer in the store, so the cache
// holds at most what the store does.
func (s *Store) pruneEntities(sn *snapshot) {
	s.entMu.Lock()
	defer s.entMu.Unlock()
	if len(s.ents) <= len(sn.parts) {
		return
	}
	live := make(map[string]bool, len(sn.parts))
	for _, kv := range sn.parts {
		live[string(kv.Key)] = true
	}
	for k := range s.ents {
		if !live[k] {
			delete(s.ents, k)
		}
	}
}

// assemble writes the state document from its parts, which are JSON
// already (UnmarshalState checks them): what json.Marshal of the map would
// write, without compacting every record again.
func assemble(doc map[string]json.RawMessage) ([]byte, error) {
	keys := slices.Sorted(maps.Keys(doc))
	n := 2
	for _, k := range keys {
		n += len(k) + len(doc[k]) + 4
	}
	out := make([]byte, 0, n)
	out = append(out, '{')
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		v := doc[k]
		if len(v) == 0 {
			v = json.RawMessage("null")
		}
		out = append(append(append(out, kb...), ':'), v...)
	}
	return append(out, '}'), nil
}

func (s *Store) corrupt(key string, err error) error {
	return &cluster.StateError{Path: s.location + " key " + key, Err: err}
}

// Load implements cluster.Store.
func (s *Store) Load(ctx context.Context) (*cluster.State, error) {
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	_, st, err := s.readState(ctx, octx, false)
	return st, err
}

// readState reads the state at one revision. A state that does not check
// out with nodes the cache held on the word of nodes-changed alone is
// read again, nodes checked against etcd, before it is called corrupt.
func (s *Store) readState(ctx, octx context.Context, fixed bool) (*snapshot, *cluster.State, error) {
	for {
		sn, err := s.read(ctx, octx)
		if err != nil {
			return nil, nil, err
		}
		st, err := s.state(ctx, octx, sn, fixed)
		var se *cluster.StateError
		if errors.As(err, &se) && sn.trusted {
			s.suspectNodes()
			continue
		}
		return sn, st, err
	}
}

// encoded is a state split into what the keys hold.
type encoded struct {
	doc   []byte
	nodes map[string][]byte // by name; the node cache's own when same
	// same: the nodes are the cache's records, unchanged.
	same   bool
	parts  map[string][]byte
	exp    map[string]time.Time // partition expiry
	pnode  map[string][]string  // partition id -> its nodes
	order  []string             // node names in state order, for new seqs
	porder []string
}

// encode splits st; its nodes are encoded only where they are not the
// records of nc, as read. same is st.NodesAre(nc.set), which the caller
// knows.
func (s *Store) encode(st *cluster.State, nc *nodeCache, same bool) (*encoded, error) {
	e := &encoded{parts: map[string][]byte{}, exp: map[string]time.Time{}, pnode: map[string][]string{}}
	if same {
		e.nodes, e.same = nc.raw, true
	} else {
		e.nodes = map[string][]byte{}
		for i := range st.Nodes {
			n := &st.Nodes[i]
			b, ok := nc.raw[n.Name]
			if !ok || !nc.set.Has(n) {
				var err error
				if b, err = json.Marshal(n); err != nil {
					return nil, fmt.Errorf("encode node %q: %w", n.Name, err)
				}
			}
			e.nodes[n.Name] = b
			e.order = append(e.order, n.Name)
		}
	}
	for _, p := range st.Partitions {
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encode partition %s: %w", p.ID, err)
		}
		e.parts[p.ID] = b
		e.exp[p.ID] = p.Expires
		e.porder = append(e.porder, p.ID)
		for _, a := range p.Nodes {
			e.pnode[p.ID] = append(e.pnode[p.ID], a.Node)
		}
	}
	rest := *st
	rest.Nodes, rest.Partitions = nil, nil
	b, err := json.Marshal(&rest)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "nodes")
	delete(m, "partitions")
	if e.doc, err = json.Marshal(m); err != nil {
		return nil, err
	}
	return e, nil
}

// plan is one transaction: guards, writes, and the leases it needs.
type plan struct {
	cmps   map[string]int64 // key -> mod revision it must still have (0: absent)
	ops    []clientv3.Op
	grant  map[string]int64            // partition id -> TTL seconds of its new lease
	kept   map[string]clientv3.LeaseID // partition id -> the lease it keeps
	revoke []clientv3.LeaseID
	leased []leasedPut // puts that carry a partition's lease
	// partsRev, when set, is the revision after which no partition may
	// have been created or changed: see diff.
	partsRev int64
}

func (pl *plan) guard(key string, rev int64) { pl.cmps[key] = rev }

// leasedPut is a key of partition id, written with the partition's lease.
type leasedPut struct{ id, key, val string }

// leasedOps are the puts of the partitions in leases, each with its lease.
func (pl *plan) leasedOps(leases map[string]clientv3.LeaseID) []clientv3.Op {
	var ops []clientv3.Op
	for _, p := range pl.leased {
		if l, ok := leases[p.id]; ok {
			ops = append(ops, clientv3.OpPut(p.key, p.val, clientv3.WithLease(l)))
		}
	}
	return ops
}

// diff plans the writes that turn before into after.
func (s *Store) diff(sn *snapshot, before, after *encoded) (*plan, error) {
	pl := &plan{cmps: map[string]int64{}, grant: map[string]int64{}, kept: map[string]clientv3.LeaseID{}}
	// The doc is guarded on every write: it holds whatever else the
	// state knows (agent users, pools), which any decision may read.
	pl.guard(s.docKey(), sn.modRev(sn.doc))
	if !bytes.Equal(before.doc, after.doc) {
		pl.ops = append(pl.ops, clientv3.OpPut(s.docKey(), string(after.doc)))
	}
	guardNode := func(n string) {
		pl.guard(s.nodeKey(n), sn.modRev(sn.nodes.kvs[n]))
		pl.guard(s.holderKey(n), sn.modRev(sn.holders[n]))
	}
	nodeOpsFrom := len(pl.ops)
	seq := sn.nodes.maxSeq
	for _, n := range after.order {
		b := after.nodes[n]
		if old, ok := before.nodes[n]; ok && bytes.Equal(old, b) {
			continue
		}
		guardNode(n)
		k := s.nodeKey(n)
		sq, ok := sn.nodes.seqs[n]
		if !ok {
			seq++
			sq = seq
		}
		v, err := json.Marshal(entity{Seq: sq, Value: b})
		if err != nil {
			return nil, err
		}
		pl.ops = append(pl.ops, clientv3.OpPut(k, string(v)))
	}
	for n := range before.nodes {
		if after.same {
			break // the very same records
		}
		if _, ok := after.nodes[n]; !ok {
			guardNode(n)
			pl.ops = append(pl.ops, clientv3.OpDelete(s.nodeKey(n)))
		}
	}
	if len(pl.ops) > nodeOpsFrom {
		// Tell every reader's node cache (nodes.go).
		pl.ops = append(pl.ops, clientv3.OpPut(s.markerKey(), ""))
	}

	// Partitions, with the lease each one's keys will carry.
	now := time.Now()
	pseq := sn.maxPart
	for _, id := range after.porder {
		b := after.parts[id]
		old, existed := before.parts[id]
		kv := sn.parts[id]
		if existed && kv != nil && after.exp[id].Equal(before.exp[id]) {
			pl.kept[id] = clientv3.LeaseID(kv.Lease)
		} else {
			ttl := int64(after.exp[id].Sub(now)+time.Second-1) / int64(time.Second)
			pl.grant[id] = max(ttl, 1)
			if kv != nil && kv.Lease != 0 {
				pl.revoke = append(pl.revoke, clientv3.LeaseID(kv.Lease))
			}
		}
		_, granted := pl.grant[id]
		if existed && bytes.Equal(old, b) && !granted {
			continue
		}
		pl.guard(s.partKey(id), sn.modRev(kv))
		for _, n := range after.pnode[id] {
			guardNode(n)
		}
		// Creating or changing a partition also requires that no
		// other partition was created or changed since the read, so
		// rules across partitions (resource claims that must not
		// overlap, say) hold as under the file store's lock. Deleting
		// one needs no such guard: it only frees things.
		pl.partsRev = sn.rev
		k := s.partKey(id)
		sq, ok := sn.seqs[k]
		if !ok {
			pseq++
			sq = pseq
		}
		v, err := json.Marshal(entity{Seq: sq, Value: b})
		if err != nil {
			return nil, err
		}
		pl.leased = append(pl.leased, leasedPut{id, k, string(v)})
	}
	for id := range before.parts {
		if _, ok := after.parts[id]; ok {
			continue
		}
		kv := sn.parts[id]
		pl.guard(s.partKey(id), sn.modRev(kv))
		for _, n := range before.pnode[id] {
			guardNode(n)
		}
		pl.ops = append(pl.ops, clientv3.OpDelete(s.partKey(id)))
		if kv != nil && kv.Lease != 0 {
			pl.revoke = append(pl.revoke, clientv3.LeaseID(kv.Lease))
		}
	}

	// Holders follow the partitions: a node's holder key names its
	// partition and carries that partition's lease.
	want := map[string]string{}
	for id, nodes := range after.pnode {
		for _, n := range nodes {
			want[n] = id
		}
	}
	for n, id := range want {
		kv := sn.holders[n]
		_, granted := pl.grant[id]
		if kv != nil && string(kv.Value) == id && !granted && clientv3.LeaseID(kv.Lease) == pl.kept[id] {
			continue
		}
		guardNode(n)
		k := s.holderKey(n)
		pl.leased = append(pl.leased, leasedPut{id, k, id})
	}
	for n := range sn.holders {
		if _, ok := want[n]; !ok {
			guardNode(n)
			pl.ops = append(pl.ops, clientv3.OpDelete(s.holderKey(n)))
		}
	}
	return pl, nil
}

func (pl *plan) empty() bool { return len(pl.ops) == 0 && len(pl.leased) == 0 }

// Update implements cluster.Store; see the package comment. Each attempt
// (read, grant, transaction) runs within one timeout, so an unreachable
// etcd fails it within that timeout; another attempt only follows an
// answer from etcd that another writer came first. Errors: fn's error as
// is, *cluster.StateError for records that cannot be used, a validation
// error if fn broke an invariant (nothing is written), etcd and context
// errors.
func (s *Store) Update(ctx context.Context, fn func(*cluster.State) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		done, err := s.updateOnce(ctx, fn)
		if err != nil || done {
			return err
		}
		if attempt+1 >= maxAttempts {
			return fmt.Errorf("update state in etcd at %s: gave up after %d attempts, each overtaken by another writer", s.location, maxAttempts)
		}
		// Someone else committed first: read again. Jitter keeps two
		// writers that collided from colliding again.
		t := time.NewTimer(time.Duration(rand.N(10+5*min(attempt, 20))) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// updateOnce is one attempt of Update; done is false when another writer
// committed first.
func (s *Store) updateOnce(ctx context.Context, fn func(*cluster.State) error) (done bool, err error) {
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	sn, st, err := s.readState(ctx, octx, cluster.FixedNodes(ctx))
	if err != nil {
		return false, err
	}
	before, err := s.encode(st, sn.nodes, true) // as just built on them
	if err != nil {
		return false, err
	}
	if err := fn(st); err != nil {
		return false, err
	}
	if err := st.Validate(); err != nil {
		return false, fmt.Errorf("refusing to save an invalid state: %w", err)
	}
	after, err := s.encode(st, sn.nodes, st.NodesAre(sn.nodes.set))
	if err != nil {
		return false, err
	}
	pl, err := s.diff(sn, before, after)
	if err != nil {
		return false, err
	}
	if pl.empty() {
		return true, nil
	}
	return s.commit(ctx, octx, sn, pl)
}

// provisionalTTL is the TTL, in seconds, of the lease a partition's keys
// are first written with: long enough to outlast the attempt (whose
// deadline is the timeout), short enough that keys written by a
// transaction whose outcome the writer never learnt (etcd stopped
// answering while it was in flight, and applied it later) go soon by
// themselves.
func (s *Store) provisionalTTL() int64 {
	return int64((s.timeout+time.Second-1)/time.Second) + 1
}

// commit grants the plan's leases and runs its transaction, within octx's
// deadline. It reports whether the guards held.
//
// A transaction whose answer does not come may still be applied later,
// when etcd answers again, and the writer, gone by then or holding an
// error, will never release what it wrote. So a partition's keys are
// first written with a provisional lease of at most provisionalTTL (or
// what the partition's old lease had left, for a renewal: no shorter
// than if the renewal had not happened), and moved to a lease of the
// wanted TTL only once the writer knows the transaction committed.
func (s *Store) commit(ctx, octx context.Context, sn *snapshot, pl *plan) (bool, error) {
	leases := maps.Clone(pl.kept)
	provisional := map[string]clientv3.LeaseID{}
	var granted, fresh []clientv3.LeaseID
	for id, ttl := range pl.grant {
		first := min(ttl, max(s.provisionalTTL(), sn.ttl[id]))
		g, err := s.cli.Grant(octx, first)
		if err != nil {
			// Leases granted so far carry nothing; they expire soon.
			s.revoke(octx, granted...)
			return false, s.failed("grant lease for partition "+id, ctx, octx, err)
		}
		leases[id] = g.ID
		granted = append(granted, g.ID)
		if sn.parts[id] == nil {
			fresh = append(fresh, g.ID)
		}
		if first < ttl {
			provisional[id] = g.ID
		}
	}
	cmps := make([]clientv3.Cmp, 0, len(pl.cmps))
	for k, rev := range pl.cmps {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
	}
	if pl.partsRev > 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.root+"partitions/"), "<", pl.partsRev+1).WithPrefix())
	}
	if s.beforeTxn != nil {
		s.beforeTxn()
	}
	resp, err := s.cli.Txn(octx).If(cmps...).Then(append(slices.Clip(pl.ops), pl.leasedOps(leases)...)...).Commit()
	if err != nil {
		// The outcome is unknown. Revoking the leases of new
		// partitions, if etcd still answers within the deadline,
		// removes what they carry; otherwise their provisional leases
		// end it soon. A renewal's lease stays: it lasts as long as
		// the old one would have.
		s.revoke(octx, fresh...)
		return false, s.failed("save state", ctx, octx, err)
	}
	if !resp.Succeeded {
		// Another writer came first, or a node changed behind
		// nodes-changed's back: read the nodes afresh too.
		s.suspectNodes()
		s.revoke(octx, granted...)
		return false, nil
	}
	if len(provisional) > 0 {
		if err := s.extend(ctx, octx, pl, provisional, resp.Header.Revision); err != nil {
			// The caller learns the save failed, so new partitions
			// must go: if etcd answers within the deadline, now;
			// otherwise when their provisional leases end, unless
			// etcd applies the extension after this error (the one
			// case that leaves one until its wanted TTL).
			s.revoke(octx, fresh...)
			return false, err
		}
	}
	s.revoke(octx, pl.revoke...)
	return true, nil
}

// extend moves the keys of the partitions written with a provisional
// lease, at revision rev, to leases of their wanted TTL. If a key changed
// since rev, its partition was renewed or released meanwhile, and that
// write stands.
func (s *Store) extend(ctx, octx context.Context, pl *plan, provisional map[string]clientv3.LeaseID, rev int64) error {
	leases := map[string]clientv3.LeaseID{}
	var granted []clientv3.LeaseID
	for id := range provisional {
		g, err := s.cli.Grant(octx, pl.grant[id])
		if err != nil {
			s.revoke(octx, granted...)
			return s.failed("grant lease for partition "+id, ctx, octx, err)
		}
		leases[id] = g.ID
		granted = append(granted, g.ID)
	}
	ops := pl.leasedOps(leases)
	var cmps []clientv3.Cmp
	for _, p := range pl.leased {
		if _, ok := leases[p.id]; ok {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p.key), "=", rev))
		}
	}
	if s.beforeTxn != nil {
		s.beforeTxn()
	}
	resp, err := s.cli.Txn(octx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		s.revoke(octx, granted...)
		return s.failed("extend the lease of a new partition", ctx, octx, err)
	}
	if !resp.Succeeded {
		s.revoke(octx, granted...)
		return nil
	}
	s.revoke(octx, slices.Collect(maps.Values(provisional))...)
	return nil
}

// revoke ends leases whose keys are gone, were moved to another lease, or
// were never written, within what is left of octx. Failure is harmless:
// such a lease expires with nothing, or only a provisional write, on it.
func (s *Store) revoke(octx context.Context, ls ...clientv3.LeaseID) {
	for _, l := range ls {
		if octx.Err() != nil {
			return
		}
		s.cli.Revoke(octx, l)
	}
}

// WaitChange implements cluster.ChangeWaiter with an etcd watch from the
// revision after rev. Writes that can only make nodes busier (a partition
// created or renewed) do not end the wait; a partition released or
// expired, a node added or changed, or the doc changing do.
func (s *Store) WaitChange(ctx context.Context, rev int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(ctx, s.root, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			// Compacted past rev, or the leader was lost: the caller
			// reads again either way.
			return nil
		}
		for _, ev := range resp.Events {
			rel := strings.TrimPrefix(string(ev.Kv.Key), s.root)
			if ev.Type == clientv3.EventTypePut && (strings.HasPrefix(rel, "partitions/") || strings.HasPrefix(rel, "holders/")) {
				continue
			}
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("watch state in etcd at %s: watch closed", s.location)
}
