//lint:file-ignore ST1005 these errors reach users as upstream worded them (callers and tests compare the texts)

package resmgr

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// The node side: the agent's "resource" service, with upstream's RPC
// names, arguments and [code, {"out": ...}] replies (see the README's
// resource manager section), so upstream's own vt_resmgr can drive it.
// What differs on purpose: sizes are int64 (upstream's replies broke at
// 2 GiB), every command is an argv (upstream interpolated sizes and paths
// into shell strings), no path leaves its pool root, a failed mount is an
// error, NFS mount points are per export, nothing is ever removed
// recursively, tap ports are real, and the connections and backings are
// kept as JSON (never pickle) so they survive an agent restart.

// Pool types, as upstream names them in the cluster config.
const (
	PoolFilesystem  = "filesystem"
	PoolNFS         = "nfs"
	PoolLinuxBridge = "linux_bridge"
)

// Resource types.
const (
	TypeVolume = "volume"
	TypePort   = "port"
)

// poolConn is one pool as this node has it open.
type poolConn struct {
	UUID string `json:"uuid"`
	Type string `json:"type"`
	// Root is where volumes go: the directory of a filesystem pool, the
	// mount point of an NFS pool.
	Root string `json:"root,omitempty"`
	// Made says whether we created Root, so closing removes it only then
	// (and only when empty).
	Made bool `json:"made,omitempty"`
	// NFS.
	Server       string `json:"server,omitempty"`
	Export       string `json:"export,omitempty"`
	MountOptions string `json:"mount_options,omitempty"`
	Mounted      bool   `json:"mounted,omitempty"`
	// Bridge is a linux_bridge pool's bridge on this node.
	Bridge string `json:"bridge,omitempty"`
}

// backing is one resource as this node sees it.
type backing struct {
	ID       string `json:"id"`
	Resource string `json:"resource"`
	Type     string `json:"type"`
	Pool     string `json:"pool"`
	// Path is a volume's file.
	Path string `json:"path,omitempty"`
	// Ifname is a port's tap device.
	Ifname string `json:"ifname,omitempty"`
}

// nodeState is what the service persists.
type nodeState struct {
	Pools    map[string]*poolConn `json:"pools"`
	Backings map[string]*backing  `json:"backings"`
}

// NodeConfig configures the resource service of one agent.
type NodeConfig struct {
	// DataDir is the agent's data directory: the default filesystem pool
	// lives in <DataDir>/root_dir, NFS mounts in <DataDir>/nfs_mnt, and
	// the service's record in <DataDir>/resource/backings.json.
	DataDir string
	// Run runs external commands; nil means the real ones.
	Run Commander
	// SysNet is /sys/class/net, where bridges are looked up; empty means
	// the real one.
	SysNet string
	Logger *slog.Logger
}

// NodeService is the agent's "resource" service.
type NodeService struct {
	mu      sync.Mutex
	dataDir string
	file    string
	sysNet  string
	run     Commander
	log     *slog.Logger
	st      nodeState
}

var _ agent.Service = (*NodeService)(nil)

// NewNodeService opens the service's record in cfg.DataDir, so the
// connections and backings of an earlier agent process are known again.
func NewNodeService(cfg NodeConfig) (*NodeService, error) {
	if !filepath.IsAbs(cfg.DataDir) {
		return nil, fmt.Errorf("resmgr: data dir %q must be absolute", cfg.DataDir)
	}
	s := &NodeService{dataDir: cfg.DataDir, file: filepath.Join(cfg.DataDir, "resource", "backings.json"),
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
	s.st = nodeState{Pools: map[string]*poolConn{}, Backings: map[string]*backing{}}
	data, err := os.ReadFile(s.file)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("resmgr: %w", err)
	default:
		if err := json.Unmarshal(data, &s.st); err != nil {
			return nil, fmt.Errorf("resmgr: %s: %w; move it away to start empty (its volumes and taps are then not cleaned up)", s.file, err)
		}
		if s.st.Pools == nil {
			s.st.Pools = map[string]*poolConn{}
		}
		if s.st.Backings == nil {
			s.st.Backings = map[string]*backing{}
		}
	}
	return s, nil
}

// Name implements agent.Service.
func (s *NodeService) Name() string { return "resource" }

// Methods implements agent.Service.
func (s *NodeService) Methods() map[string]agent.Method {
	return map[string]agent.Method{
		"start_resource_backing_service": s.rpcStart,
		"stop_resource_backing_service":  s.rpcStop,
		"create_pool_connection":         s.rpcCreatePool,
		"destroy_pool_connection":        s.rpcDestroyPool,
		"create_resource_backing":        s.rpcCreateBacking,
		"destroy_resource_backing":       s.rpcDestroyBacking,
		"update_resource_by_backing":     s.rpcUpdate,
		"clone_resource_by_backing":      s.rpcClone,
		"query_resource_backing":         s.rpcQuery,
	}
}

// reply builds upstream's [code, {"out": ...}].
func ok(out any) []any {
	if out == nil {
		return []any{0, xmlrpc.Struct{}}
	}
	return []any{0, xmlrpc.Struct{{Key: "out", Value: out}}}
}

func failed(err error) []any {
	return []any{1, xmlrpc.Struct{{Key: "out", Value: err.Error()}}}
}

// save writes the record atomically; callers hold mu.
func (s *NodeService) save() error {
	data, err := json.MarshalIndent(&s.st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.file), 0o700); err != nil {
		return err
	}
	tmp := s.file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, s.file)
}

func (s *NodeService) rpcStart(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(0, 0); err != nil {
		return nil, err
	}
	return nil, nil
}

// rpcStop releases every backing (volumes deleted, taps removed), closes
// every pool connection and forgets them; upstream kept the backings.
func (s *NodeService) rpcStop(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(0, 0); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, id := range sortedKeys(s.st.Backings) {
		b := s.st.Backings[id]
		if err := s.release(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("backing %s: %w", id, err))
			continue
		}
		delete(s.st.Backings, id)
	}
	for _, id := range sortedKeys(s.st.Pools) {
		if hasBackings(&s.st, id) {
			continue
		}
		if err := s.closePool(ctx, s.st.Pools[id]); err != nil {
			errs = append(errs, fmt.Errorf("pool %s: %w", id, err))
			continue
		}
		delete(s.st.Pools, id)
	}
	if err := s.save(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, xmlrpc.Faultf("RuntimeError", "%v", err)
	}
	return nil, nil
}

func hasBackings(st *nodeState, pool string) bool {
	for _, b := range st.Backings {
		if b.Pool == pool {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

// uuidRE-like check for the ids the controller sends.
func checkID(kind, id string) error {
	if !nameRE.MatchString(id) || len(id) > 64 {
		return fmt.Errorf("%s id %q must be 1-64 letters, digits, '_', '.', '+' or '-'", kind, id)
	}
	return nil
}

func (s *NodeService) rpcCreatePool(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	cfg, err := args.Struct(0, "pool_config")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := s.createPool(ctx, cfg)
	if err != nil {
		return failed(err), nil
	}
	return ok(out), nil
}

func (s *NodeService) createPool(ctx context.Context, cfg map[string]any) (any, error) {
	meta, _ := cfg["meta"].(map[string]any)
	spec, _ := cfg["spec"].(map[string]any)
	id, _ := meta["uuid"].(string)
	typ, _ := meta["type"].(string)
	if err := checkID("pool", id); err != nil {
		return nil, err
	}
	if old, ok := s.st.Pools[id]; ok {
		// Attaching twice (a second job's startup) keeps the connection.
		return poolReply(old), nil
	}
	c := &poolConn{UUID: id, Type: typ}
	switch typ {
	case PoolFilesystem:
		p, _ := spec["path"].(string)
		root, err := s.poolDir(p, "root_dir")
		if err != nil {
			return nil, err
		}
		c.Root = root
		if c.Made, err = mkdirNew(root); err != nil {
			return nil, err
		}
	case PoolNFS:
		if err := s.openNFS(ctx, c, spec); err != nil {
			return nil, err
		}
	case PoolLinuxBridge:
		br := pickString(spec["switch"])
		if br == "" {
			br = pickString(spec["export"])
		}
		if err := checkIfname(br); err != nil {
			return nil, fmt.Errorf("linux_bridge pool %s: %w", id, err)
		}
		if _, err := os.Stat(filepath.Join(s.sysNet, br, "bridge")); err != nil {
			return nil, fmt.Errorf("linux_bridge pool %s: %s is not a bridge on this node", id, br)
		}
		c.Bridge = br
	default:
		return nil, fmt.Errorf("Unknown pool type %s", typ)
	}
	s.st.Pools[id] = c
	if err := s.save(); err != nil {
		delete(s.st.Pools, id)
		return nil, err
	}
	s.log.Info("pool connected", "pool", id, "type", typ, "root", c.Root, "bridge", c.Bridge)
	return poolReply(c), nil
}

// pickString reads a value that is a string, or {"ifname": string} as
// upstream's linux_bridge config has it.
func pickString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		s, _ := x["ifname"].(string)
		return s
	}
	return ""
}

func poolReply(c *poolConn) any {
	switch c.Type {
	case PoolFilesystem:
		return xmlrpc.Struct{{Key: "spec", Value: xmlrpc.Struct{{Key: "path", Value: c.Root}}}}
	case PoolNFS:
		var opts any
		if c.MountOptions != "" {
			opts = c.MountOptions
		}
		return xmlrpc.Struct{{Key: "spec", Value: xmlrpc.Struct{{Key: "mount", Value: c.Root}, {Key: "mount-options", Value: opts}}}}
	}
	return nil
}

// poolDir resolves a pool path as upstream does: "" is <data>/<def>, a
// relative path is under the data dir, an absolute one is itself.
func (s *NodeService) poolDir(p, def string) (string, error) {
	switch {
	case p == "":
		return filepath.Join(s.dataDir, def), nil
	case filepath.IsAbs(p):
		return p, checkAbsPath(p)
	default:
		if err := checkFilename(p); err != nil {
			return "", err
		}
		return filepath.Join(s.dataDir, p), nil
	}
}

// mkdirNew creates dir (and parents) and reports whether dir itself was
// created by us.
func mkdirNew(dir string) (bool, error) {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return false, fmt.Errorf("%s exists and is not a directory", dir)
		}
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	return true, nil
}

// openNFS mounts server:export on a mount point of its own: the given one,
// or <data>/nfs_mnt/<server>/<export with '/' as '_'>, so two exports of
// one server never share a mount point (upstream's did).
func (s *NodeService) openNFS(ctx context.Context, c *poolConn, spec map[string]any) error {
	c.Server, _ = spec["server"].(string)
	c.Export, _ = spec["export"].(string)
	mnt, _ := spec["mount"].(string)
	c.MountOptions, _ = spec["mount-options"].(string)
	if !hostRE.MatchString(c.Server) {
		return fmt.Errorf("nfs pool %s: server %q is not a host name or address", c.UUID, c.Server)
	}
	if err := checkAbsPath(c.Export); err != nil {
		return fmt.Errorf("nfs pool %s: export: %w", c.UUID, err)
	}
	if c.MountOptions != "" && !mountOptionsRE.MatchString(c.MountOptions) {
		return fmt.Errorf("nfs pool %s: mount options %q must be comma-separated name[=value] items", c.UUID, c.MountOptions)
	}
	def := filepath.Join("nfs_mnt", strings.Trim(c.Server, "[]"), strings.ReplaceAll(strings.Trim(c.Export, "/"), "/", "_"))
	root, err := s.poolDir(mnt, def)
	if err != nil {
		return fmt.Errorf("nfs pool %s: mount point: %w", c.UUID, err)
	}
	c.Root = root
	if c.Made, err = mkdirNew(root); err != nil {
		return err
	}
	if err := s.run(ctx, nfsMountArgv(c)); err != nil {
		if c.Made {
			os.Remove(root)
		}
		return fmt.Errorf("nfs pool %s: mount failed: %w", c.UUID, err)
	}
	c.Mounted = true
	return nil
}

// nfsMountArgv is mount(8)'s argv for c; every value is its own item.
func nfsMountArgv(c *poolConn) []string {
	argv := []string{"mount", "-t", "nfs"}
	if c.MountOptions != "" {
		argv = append(argv, "-o", c.MountOptions)
	}
	return append(argv, "--", c.Server+":"+c.Export, c.Root)
}

// closePool undoes createPool: umount, then remove the root only if we
// made it and it is empty (never recursively: it may be, or hold, a share).
func (s *NodeService) closePool(ctx context.Context, c *poolConn) error {
	if c.Mounted {
		if err := s.run(ctx, []string{"umount", "--", c.Root}); err != nil {
			return err
		}
		c.Mounted = false
	}
	if c.Made && c.Root != "" {
		if err := os.Remove(c.Root); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Info("pool root kept", "root", c.Root, "err", err)
		}
	}
	return nil
}

func (s *NodeService) rpcDestroyPool(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	id, err := args.String(0, "pool_id")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, found := s.st.Pools[id]
	if !found {
		return failed(fmt.Errorf("'%s'", id)), nil
	}
	if hasBackings(&s.st, id) {
		return failed(errors.New("The pool is still in use")), nil
	}
	if err := s.closePool(ctx, c); err != nil {
		return failed(err), nil
	}
	delete(s.st.Pools, id)
	if err := s.save(); err != nil {
		return failed(err), nil
	}
	return ok(nil), nil
}

func (s *NodeService) rpcCreateBacking(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	cfg, err := args.Struct(0, "backing_config")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.newBacking(cfg)
	if err != nil {
		return failed(err), nil
	}
	s.st.Backings[b.ID] = b
	if err := s.save(); err != nil {
		delete(s.st.Backings, b.ID)
		return failed(err), nil
	}
	info := s.sync(b)
	return ok(xmlrpc.Struct{{Key: "backing", Value: b.ID}, info[0], info[1]}), nil
}

func (s *NodeService) newBacking(cfg map[string]any) (*backing, error) {
	meta, _ := cfg["meta"].(map[string]any)
	spec, _ := cfg["spec"].(map[string]any)
	res, _ := meta["uuid"].(string)
	typ, _ := meta["type"].(string)
	pool, _ := meta["pool"].(string)
	if err := checkID("resource", res); err != nil {
		return nil, err
	}
	c, found := s.st.Pools[pool]
	if !found {
		return nil, fmt.Errorf("pool %q is not connected on this node", pool)
	}
	b := &backing{ID: strings.ToLower(crand.Text()[:26]), Resource: res, Type: typ, Pool: pool}
	switch {
	case typ == TypeVolume && (c.Type == PoolFilesystem || c.Type == PoolNFS):
		p, err := volumePath(c.Root, spec)
		if err != nil {
			return nil, err
		}
		b.Path = p
	case typ == TypePort && c.Type == PoolLinuxBridge:
		name, _ := spec["ifname"].(string)
		if name == "" {
			// upstream's tap_<8 alnum>
			name = "tap_" + strings.ToLower(crand.Text()[:8])
		}
		if err := checkIfname(name); err != nil {
			return nil, err
		}
		b.Ifname = name
	default:
		return nil, fmt.Errorf("Unsupported resource type %q on a %s pool", typ, c.Type)
	}
	return b, nil
}

// volumePath is spec.uri when set (it must resolve inside root), else
// <root>/<spec.filename>. upstream: ValueError("Cannot find <uri> in <root>").
func volumePath(root string, spec map[string]any) (string, error) {
	uri, _ := spec["uri"].(string)
	if uri == "" {
		name, _ := spec["filename"].(string)
		if err := checkFilename(name); err != nil {
			return "", err
		}
		uri = filepath.Join(root, name)
	}
	if err := checkAbsPath(uri); err != nil {
		return "", err
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	// The file may not exist yet: resolve its deepest existing parent.
	dir := filepath.Dir(uri)
	rest := filepath.Base(uri)
	for {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			uri = filepath.Join(r, rest)
			break
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = filepath.Dir(dir)
	}
	if !within(realRoot, uri) || uri == realRoot {
		return "", fmt.Errorf("Cannot find %s in %s", uri, realRoot)
	}
	if fi, err := os.Lstat(uri); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return "", fmt.Errorf("Cannot find %s in %s: it is a symlink", uri, realRoot)
	}
	return uri, nil
}

func (s *NodeService) rpcDestroyBacking(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	id, err := args.String(0, "backing_id")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, found := s.st.Backings[id]
	if !found {
		return failed(fmt.Errorf("'%s'", id)), nil
	}
	// A tap exists only through its backing, so it goes with it; a volume
	// file is the resource's data and is removed by release.
	if b.Type == TypePort {
		if err := s.release(ctx, b); err != nil {
			return failed(err), nil
		}
	}
	delete(s.st.Backings, id)
	if err := s.save(); err != nil {
		return failed(err), nil
	}
	return ok(nil), nil
}

func (s *NodeService) rpcQuery(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	res, err := args.String(0, "resource_id")
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

func (s *NodeService) rpcUpdate(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(2, 3); err != nil {
		return nil, err
	}
	id, err := args.String(0, "backing_id")
	if err != nil {
		return nil, err
	}
	cmd, err := args.String(1, "command")
	if err != nil {
		return nil, err
	}
	arguments, err := args.Struct(2, "arguments")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, found := s.st.Backings[id]
	if !found {
		return failed(fmt.Errorf("'%s'", id)), nil
	}
	switch cmd {
	case "allocate":
		err = s.allocate(ctx, b, arguments)
	case "release":
		if err := s.release(ctx, b); err != nil {
			return failed(err), nil
		}
		return ok(nil), nil
	case "sync":
	case "resize":
		if b.Type != TypeVolume {
			return failed(fmt.Errorf("Unsupported command %s for a %s resource", cmd, b.Type)), nil
		}
		err = s.resize(ctx, b, arguments)
	default:
		return failed(fmt.Errorf("Unsupported command %s for a %s resource", cmd, b.Type)), nil
	}
	if err != nil {
		return failed(err), nil
	}
	info := s.sync(b)
	return ok(xmlrpc.Struct(info)), nil
}

func (s *NodeService) rpcClone(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(2, 2); err != nil {
		return nil, err
	}
	id, err := args.String(0, "backing_id")
	if err != nil {
		return nil, err
	}
	arguments, err := args.Struct(1, "arguments")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, found := s.st.Backings[id]
	if !found {
		return failed(fmt.Errorf("'%s'", id)), nil
	}
	srcID, _ := arguments["source"].(string)
	src, found := s.st.Backings[srcID]
	if !found {
		return failed(fmt.Errorf("'%s'", srcID)), nil
	}
	if b.Type != TypeVolume || src.Type != TypeVolume {
		return failed(fmt.Errorf("Unsupported command clone for a %s resource", b.Type)), nil
	}
	if _, err := os.Lstat(b.Path); err == nil {
		return failed(fmt.Errorf("%s exists already", b.Path)), nil
	}
	if err := os.MkdirAll(filepath.Dir(b.Path), 0o755); err != nil {
		return failed(err), nil
	}
	// cp keeps holes (a 20G sparse source stays sparse) and modes.
	if err := s.run(ctx, []string{"cp", "--sparse=always", "--preserve=mode,timestamps", "--", src.Path, b.Path}); err != nil {
		os.Remove(b.Path)
		return failed(err), nil
	}
	return ok(xmlrpc.Struct(s.sync(b))), nil
}
