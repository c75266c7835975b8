//lint:file-ignore ST1005 these errors reach users as upstream worded them (callers and tests compare the texts)

package node

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// Config configures the resource service of one agent.
type Config struct {
	// DataDir is the agent's data directory: the default filesystem pool
	// lives in <DataDir>/root_dir, NFS mounts in <DataDir>/nfs_mnt, and
	// the service's record in <DataDir>/resource/backings.json.
	DataDir string
	// Run runs external commands; nil means the real ones.
	Run Commander
	// SysNet is /sys/class/net, where interfaces are looked up; empty
	// means the real one.
	SysNet string
	Logger *slog.Logger
}

// Service is the agent's "resource" service.
//
// Locking: mu guards st and the writing of the record, and is never held
// across a command or a file operation in a pool; those run under the
// per-name lock of the pool or backing they work on (locks), on copies of
// its record, which putBacking and putPool store.
type Service struct {
	dataDir string
	file    string
	sysNet  string
	run     Commander
	log     *slog.Logger
	// disabled is why the service answers nothing (an unreadable
	// record); the agent's other services run on.
	disabled error

	locks keyedLocks
	mu    sync.Mutex
	st    state
}

var _ agent.Service = (*Service)(nil)

// New opens the service's record in cfg.DataDir, so the connections and
// backings of an earlier agent process are known again. A record that
// cannot be read gives a service that refuses every call naming the file
// (see Disabled), not an error: the agent must still start.
func New(cfg Config) (*Service, error) {
	if !filepath.IsAbs(cfg.DataDir) {
		return nil, fmt.Errorf("data dir %q must be absolute", cfg.DataDir)
	}
	s := &Service{dataDir: cfg.DataDir, file: filepath.Join(cfg.DataDir, "resource", "backings.json"),
		sysNet: cfg.SysNet, run: cfg.Run, log: cfg.Logger}
	if s.run == nil {
		s.run = runCommand
	}
	if s.sysNet == "" {
		s.sysNet = "/sys/class/net"
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	st, err := loadState(s.file)
	if err != nil {
		s.disabled = &DisabledError{File: s.file, Err: err}
		s.log.Error("resource service disabled", "err", s.disabled)
	}
	s.st = st
	return s, nil
}

// Disabled is why the service refuses every call, or nil.
func (s *Service) Disabled() error { return s.disabled }

// Name implements agent.Service.
func (s *Service) Name() string { return "resource" }

// Methods implements agent.Service.
func (s *Service) Methods() map[string]agent.Method {
	m := map[string]agent.Method{
		MethodStart:          s.rpcStart,
		MethodStop:           s.rpcStop,
		MethodCreatePool:     s.rpcCreatePool,
		MethodDestroyPool:    byID("pool_id", s.destroyPool),
		MethodCreateBacking:  s.rpcCreateBacking,
		MethodDestroyBacking: byID("backing_id", func(ctx context.Context, id string) error { return s.destroyBacking(ctx, id, false) }),
		MethodUpdate:         s.rpcUpdate,
		MethodClone:          s.rpcClone,
		MethodQuery:          s.rpcQuery,
		MethodPoolCapacity:   s.rpcPoolCapacity,
	}
	if s.disabled != nil {
		for name := range m {
			m[name] = func(context.Context, agent.Args) (any, error) {
				return nil, xmlrpc.Faultf("RuntimeError", "%v", s.disabled)
			}
		}
	}
	return m
}

// commit changes st under mu and writes the record; on a failed write
// the change is undone.
func (s *Service) commit(change func(st *state) (undo func(), err error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	undo, err := change(&s.st)
	if err != nil {
		return err
	}
	data, err := s.st.encode()
	if err == nil {
		err = writeState(s.file, data)
	}
	if err != nil && undo != nil {
		undo()
	}
	return err
}

// putBacking stores b (a copy: the caller keeps working on its own).
func (s *Service) putBacking(b *backing) error {
	c := *b
	return s.commit(func(st *state) (func(), error) {
		return put(st.Backings, c.ID, &c), nil
	})
}

// put sets m[id] to v, remove deletes it; each returns its undo, for
// commit.
func put[T any](m map[string]*T, id string, v *T) (undo func()) {
	old, had := m[id]
	m[id] = v
	return func() {
		if had {
			m[id] = old
		} else {
			delete(m, id)
		}
	}
}

func remove[T any](m map[string]*T, id string) (undo func()) {
	old, had := m[id]
	delete(m, id)
	return func() {
		if had {
			m[id] = old
		}
	}
}

// pool and backingOf return copies of the records, or a KeyError.
func (s *Service) pool(id string) (*poolConn, error) {
	return lookup(s, func(st *state) map[string]*poolConn { return st.Pools }, id)
}

func (s *Service) backingOf(id string) (*backing, error) {
	return lookup(s, func(st *state) map[string]*backing { return st.Backings }, id)
}

// lookup copies record id out of the table of st that in picks, under mu:
// callers work on the copy without the lock.
func lookup[T any](s *Service, in func(*state) map[string]*T, id string) (*T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, found := in(&s.st)[id]
	if !found {
		return nil, &KeyError{Key: id}
	}
	cp := *r
	return &cp, nil
}

// lockRecord takes the per-name lock of record kind/id ("pool" or
// "backing") and reads a copy of it with get; the caller defers unlock.
func lockRecord[T any](ctx context.Context, s *Service, kind, id string, get func(string) (*T, error)) (r *T, unlock func(), err error) {
	if unlock, err = s.locks.lock(ctx, kind+"/"+id); err != nil {
		return nil, nil, err
	}
	if r, err = get(id); err != nil {
		unlock()
		return nil, nil, err
	}
	return r, unlock, nil
}

// lockBackings takes the locks of backing id and of others (clone's
// source; distinct from id), then reads copies of backing id and of its
// pool; the caller defers unlock.
func (s *Service) lockBackings(ctx context.Context, id string, others ...string) (b *backing, c *poolConn, unlock func(), err error) {
	keys := []string{"backing/" + id}
	for _, o := range others {
		keys = append(keys, "backing/"+o)
	}
	slices.Sort(keys) // lockAll wants them sorted
	if unlock, err = s.locks.lockAll(ctx, keys...); err != nil {
		return nil, nil, nil, err
	}
	if b, c, err = s.backingAndPool(id); err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return b, c, unlock, nil
}

// backingAndPool returns copies of backing id and of its pool.
func (s *Service) backingAndPool(id string) (*backing, *poolConn, error) {
	b, err := s.backingOf(id)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.pool(b.Pool)
	if err != nil {
		return nil, nil, fmt.Errorf("pool %s of backing %s is not connected on this node", b.Pool, id)
	}
	return b, c, nil
}

// newBackingID is upstream's backing id: uuid4().hex.
func newBackingID() string {
	var b [16]byte
	crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:])
}

// checkID accepts the ids the controller sends.
func checkID(kind, id string) error {
	if !nameRE.MatchString(id) || len(id) > 64 {
		return fmt.Errorf("%s id %q must be 1-64 letters, digits, '_', '.', '+' or '-'", kind, id)
	}
	return nil
}

func (s *Service) rpcStart(ctx context.Context, args agent.Args) (any, error) {
	return nil, args.Want(0, 0)
}

// rpcStop releases every backing (volumes this agent made deleted, taps
// removed), closes every pool connection and forgets them; upstream kept
// the backings.
func (s *Service) rpcStop(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(0, 0); err != nil {
		return nil, err
	}
	s.mu.Lock()
	backings, pools := sortedKeys(s.st.Backings), sortedKeys(s.st.Pools)
	s.mu.Unlock()
	var errs []error
	for _, id := range backings {
		if err := s.destroyBacking(ctx, id, true); err != nil && !errors.As(err, new(*KeyError)) {
			errs = append(errs, fmt.Errorf("backing %s: %w", id, err))
		}
	}
	for _, id := range pools {
		if err := s.destroyPool(ctx, id); err != nil && !errors.As(err, new(*KeyError)) && !errors.Is(err, ErrPoolInUse) {
			errs = append(errs, fmt.Errorf("pool %s: %w", id, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, xmlrpc.Faultf("RuntimeError", "%v", err)
	}
	return nil, nil
}

func (s *Service) rpcCreatePool(ctx context.Context, args agent.Args) (any, error) {
	var req PoolRequest
	if err := requestArg(args, "pool_config", &req); err != nil {
		return nil, err
	}
	out, err := s.createPool(ctx, req)
	if err != nil {
		return failed(err), nil
	}
	return ok(out), nil
}

func (s *Service) createPool(ctx context.Context, req PoolRequest) (any, error) {
	id := req.Meta.UUID
	if err := checkID("pool", id); err != nil {
		return nil, err
	}
	kind, known := poolKinds[req.Meta.Type]
	if !known {
		return nil, fmt.Errorf("Unknown pool type %s", req.Meta.Type)
	}
	unlock, err := s.locks.lock(ctx, "pool/"+id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if old, err := s.pool(id); err == nil {
		// Attaching twice (a second job's startup) keeps the connection.
		return poolKinds[old.Type].reply(old), nil
	}
	c := &poolConn{UUID: id, Type: req.Meta.Type, AllowOtherWriters: req.Spec.AllowOtherWriters, Overcommit: req.Spec.Overcommit}
	if err := kind.open(ctx, s, c, req.Spec); err != nil {
		return nil, err
	}
	err = s.commit(func(st *state) (func(), error) {
		return put(st.Pools, id, c), nil
	})
	if err != nil {
		return nil, errors.Join(err, kind.close(context.WithoutCancel(ctx), s, c))
	}
	s.log.Info("pool connected", "pool", id, "type", c.Type, "root", c.Root, "bridge", c.Bridge)
	return kind.reply(c), nil
}

// destroyPool closes a pool without backings; one that has some is
// refused (upstream closed it under them).
func (s *Service) destroyPool(ctx context.Context, id string) error {
	c, unlock, err := lockRecord(ctx, s, "pool", id, s.pool)
	if err != nil {
		return err
	}
	defer unlock()
	s.mu.Lock()
	busy := hasBackings(&s.st, id)
	s.mu.Unlock()
	if busy {
		return ErrPoolInUse
	}
	if err := poolKinds[c.Type].close(ctx, s, c); err != nil {
		return err
	}
	return s.commit(func(st *state) (func(), error) {
		return remove(st.Pools, id), nil
	})
}

func hasBackings(st *state, pool string) bool {
	for _, b := range st.Backings {
		if b.Pool == pool {
			return true
		}
	}
	return false
}

func (s *Service) rpcCreateBacking(ctx context.Context, args agent.Args) (any, error) {
	var req BackingRequest
	if err := requestArg(args, "backing_config", &req); err != nil {
		return nil, err
	}
	b, c, err := s.createBacking(ctx, req)
	if err != nil {
		return failed(err), nil
	}
	info := resourceKinds[b.Type].sync(s, c, b)
	return ok(xmlrpc.Struct{{Key: "backing", Value: b.ID}, info[0], info[1]}), nil
}

func (s *Service) createBacking(ctx context.Context, req BackingRequest) (*backing, *poolConn, error) {
	if err := checkID("resource", req.Meta.UUID); err != nil {
		return nil, nil, err
	}
	// The pool's lock: it cannot be closed while a backing joins it.
	unlock, err := s.locks.lock(ctx, "pool/"+req.Meta.Pool)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	c, err := s.pool(req.Meta.Pool)
	if err != nil {
		return nil, nil, fmt.Errorf("pool %q is not connected on this node", req.Meta.Pool)
	}
	rk, known := resourceKinds[req.Meta.Type]
	if !known || poolKinds[c.Type].holds != req.Meta.Type {
		return nil, nil, fmt.Errorf("Unsupported resource type %q on a %s pool", req.Meta.Type, c.Type)
	}
	b := &backing{ID: newBackingID(), Resource: req.Meta.UUID, Type: req.Meta.Type, Pool: c.UUID}
	if err := rk.newBacking(s, c, b, req); err != nil {
		return nil, nil, err
	}
	err = s.commit(func(st *state) (func(), error) {
		// Two resources never share a file or a tap: releasing one would
		// remove the other's.
		for _, id := range sortedKeys(st.Backings) {
			o := st.Backings[id]
			if o.Pool == b.Pool && o.Resource != b.Resource && o.Path == b.Path && o.Ifname == b.Ifname {
				return nil, refusedf("%s%s is already used by resource %s (backing %s) of this pool; two resources never share it", b.Path, b.Ifname, o.Resource, o.ID)
			}
		}
		return put(st.Backings, b.ID, b), nil
	})
	if err != nil {
		return nil, nil, err
	}
	return b, c, nil
}

// destroyBacking forgets a backing. A tap exists only through its
// backing, so it goes with it; a volume's file is the resource's data and
// is removed by release (or here when releaseAll, for stop).
func (s *Service) destroyBacking(ctx context.Context, id string, releaseAll bool) error {
	b, unlock, err := lockRecord(ctx, s, "backing", id, s.backingOf)
	if err != nil {
		return err
	}
	defer unlock()
	if b.Type == TypePort || releaseAll {
		c, err := s.pool(b.Pool)
		if err != nil {
			return fmt.Errorf("pool %s of backing %s: %w", b.Pool, id, err)
		}
		if err := resourceKinds[b.Type].release(ctx, s, c, b, UpdateArgs{}); err != nil {
			return err
		}
	}
	return s.commit(func(st *state) (func(), error) {
		return remove(st.Backings, id), nil
	})
}

func (s *Service) rpcQuery(ctx context.Context, args agent.Args) (any, error) {
	res, err := idArg(args, "resource_id")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range sortedKeys(s.st.Backings) {
		if s.st.Backings[id].Resource == res {
			return id, nil
		}
	}
	return nil, nil
}

// The handlers' arguments, one helper per shape of request: a malformed
// argument is a TypeError fault, as Python's would be.

// idArg reads the one id argument of destroy_pool_connection,
// destroy_resource_backing, query_resource_backing and pool_capacity.
func idArg(args agent.Args, name string) (string, error) {
	if err := args.Want(1, 1); err != nil {
		return "", err
	}
	return args.String(0, name)
}

// byID is the method of a call that takes one id and answers upstream's
// [0, {}] when do succeeds, [1, {"out": message}] when it fails.
func byID(name string, do func(ctx context.Context, id string) error) agent.Method {
	return func(ctx context.Context, args agent.Args) (any, error) {
		id, err := idArg(args, name)
		if err != nil {
			return nil, err
		}
		if err := do(ctx, id); err != nil {
			return failed(err), nil
		}
		return ok(nil), nil
	}
}

// requestArg reads the one struct argument of create_pool_connection and
// create_resource_backing into v.
func requestArg(args agent.Args, name string, v any) error {
	if err := args.Want(1, 1); err != nil {
		return err
	}
	return structArg(args, 0, name, v)
}

// backingArgs reads update's and clone's backing id (argument 0) and
// their arguments struct (argument i, the last; update's command lies
// between them).
func backingArgs(args agent.Args, i int) (id string, ua UpdateArgs, err error) {
	if err := args.Want(2, i+1); err != nil {
		return "", ua, err
	}
	if id, err = args.String(0, "backing_id"); err != nil {
		return "", ua, err
	}
	if err := structArg(args, i, "arguments", &ua); err != nil {
		return "", ua, err
	}
	return id, ua, nil
}

// structArg decodes struct argument i, called name, into v.
func structArg(args agent.Args, i int, name string, v any) error {
	raw, err := args.Struct(i, name)
	if err != nil {
		return err
	}
	if err := decode(raw, v); err != nil {
		return xmlrpc.Faultf("TypeError", "%s: %v", name, err)
	}
	return nil
}

func (s *Service) rpcUpdate(ctx context.Context, args agent.Args) (any, error) {
	id, ua, err := backingArgs(args, 2)
	if err != nil {
		return nil, err
	}
	cmd, err := args.String(1, "command")
	if err != nil {
		return nil, err
	}
	b, c, unlock, err := s.lockBackings(ctx, id)
	if err != nil {
		return failed(err), nil
	}
	defer unlock()
	rk := resourceKinds[b.Type]
	op := map[string]func(context.Context, *Service, *poolConn, *backing, UpdateArgs) error{
		"allocate": rk.allocate, "release": rk.release, "resize": rk.resize,
		"sync": func(context.Context, *Service, *poolConn, *backing, UpdateArgs) error { return nil },
	}[cmd]
	if op == nil {
		return failed(fmt.Errorf("Unsupported command %s for a %s resource", cmd, b.Type)), nil
	}
	if err := op(ctx, s, c, b, ua); err != nil {
		return failed(err), nil
	}
	if cmd == "release" {
		return ok(nil), nil
	}
	return ok(xmlrpc.Struct(rk.sync(s, c, b))), nil
}

func (s *Service) rpcClone(ctx context.Context, args agent.Args) (any, error) {
	id, ua, err := backingArgs(args, 1)
	if err != nil {
		return nil, err
	}
	if ua.Source == id {
		return failed(fmt.Errorf("cannot clone backing %s onto itself", id)), nil
	}
	b, c, unlock, err := s.lockBackings(ctx, id, ua.Source)
	if err != nil {
		return failed(err), nil
	}
	defer unlock()
	src, sc, err := s.backingAndPool(ua.Source)
	if err != nil {
		return failed(err), nil
	}
	rk := resourceKinds[b.Type]
	if rk.clone == nil || src.Type != b.Type {
		return failed(fmt.Errorf("Unsupported command clone for a %s resource", b.Type)), nil
	}
	if err := rk.clone(ctx, s, c, b, sc, src); err != nil {
		return failed(err), nil
	}
	return ok(xmlrpc.Struct(rk.sync(s, c, b))), nil
}

// rpcPoolCapacity answers {"size", "free"} in bytes for a pool with a
// filesystem (statfs on the node), [1, ...] for one without.
func (s *Service) rpcPoolCapacity(ctx context.Context, args agent.Args) (any, error) {
	id, err := idArg(args, "pool_id")
	if err != nil {
		return nil, err
	}
	c, err := s.pool(id)
	if err != nil {
		return failed(err), nil
	}
	capf := poolKinds[c.Type].capacity
	if capf == nil {
		return failed(fmt.Errorf("a %s pool has no capacity", c.Type)), nil
	}
	cp, err := capf(c)
	if err != nil {
		return failed(err), nil
	}
	return ok(xmlrpc.Struct{{Key: "size", Value: cp.Size}, {Key: "free", Value: cp.Free}}), nil
}
