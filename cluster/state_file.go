package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vtcluster/vtcluster/internal/atomicfile"
)

// The file store keeps a cluster in two files (layout version 2):
//
//   - <cluster>.json, the main file: the partitions, the queue, node
//     health, agent users, released claims and the resource record, and
//     the name of the nodes file they go with ("nodes_file");
//   - <cluster>.nodes+<generation>.json: the node records. A new set of
//     nodes is written to a new file, never over the one in use.
//
// An allocation or a release rewrites only the main file, whose size does
// not depend on the number of nodes, and reads the nodes through a cache
// checked against the nodes file's identity (device, inode, size, mtime,
// ctime). An Update that changes nodes writes the new nodes file first,
// then the main file naming it: the main file's rename is the one moment
// the change happens, so a crash (kill -9, power loss) between the two
// leaves the old main file naming the old, untouched nodes file, and the
// new nodes file an orphan that the next Update removes. Nothing is lost
// and no node is handed out twice.
//
// A state file of layout 1 (everything in <cluster>.json, written before
// this layout) is read as it is, and rewritten in layout 2 by the first
// Update that changes something.

// fileLayout is the version the main file of layout 2 carries; the state
// document itself (MarshalState, etcd) stays StateVersion.
const fileLayout = 2

// mainDoc is the main file: the state without its nodes, and where they are.
type mainDoc struct {
	Version   int    `json:"version"`
	NodesFile string `json:"nodes_file"`
	*State
	// Nodes hides State.Nodes: they are in NodesFile.
	Nodes json.RawMessage `json:"nodes,omitempty"`
}

// nodesDoc is a nodes file.
type nodesDoc struct {
	Version int    `json:"version"`
	Nodes   []Node `json:"nodes"`
}

// FileStore is a Store in files under one directory, shared by every
// process on this host (layout above). Writers lock <cluster>.json.lock,
// never a data file, because data files are replaced by rename and a lock
// on a replaced inode protects nothing.
type FileStore struct {
	dir, path, lockPath, cluster string

	cacheMu sync.Mutex
	cache   struct {
		name string
		id   fileID
		set  *NodeSet
	}
}

var _ Store = (*FileStore)(nil)

// OpenFileStore returns the store of cluster in dir, creating dir (mode
// 0700) if needed. An existing dir keeps its mode: it may be shared, and
// chmod-ing someone's directory is not ours to do. The files themselves
// are only read by Load and Update.
func OpenFileStore(dir, cluster string) (*FileStore, error) {
	if err := ValidClusterName(cluster); err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("cluster: empty state directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster: state directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: create state directory: %w", err)
	}
	p := filepath.Join(abs, cluster+".json")
	return &FileStore{dir: abs, path: p, lockPath: p + ".lock", cluster: cluster}, nil
}

// Path is the main state file.
func (s *FileStore) Path() string { return s.path }

// Load reads the state under a shared lock, so it never sees a half-done
// Update. Errors: *StateError for a file that cannot be used, or a context
// error while waiting for the lock.
func (s *FileStore) Load(ctx context.Context) (*State, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	unlock, err := flockFile(ctx, s.lockPath, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, _, err := s.read(false)
	if err != nil {
		return nil, err
	}
	// A snapshot: its maps are copies, and nothing ties it to the store.
	st.base, st.fixed = nil, false
	return st, nil
}

// readInfo is what Update needs to know of the files it read.
type readInfo struct {
	legacy    bool   // layout 1
	nodesFile string // "" when there is none
	gen       uint64
}

// Update implements Store. Each file is written to a temporary file in the
// same directory, synced, renamed over the old one and the directory
// synced (atomicfile), in the order the layout's comment explains, so a
// crash leaves either the old or the new state, never a mix. An Update
// that changes nothing writes nothing. Errors: fn's error as is,
// *StateError, a validation error if fn broke an invariant (nothing is
// written), I/O and context errors.
func (s *FileStore) Update(ctx context.Context, fn func(*State) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock, err := flockFile(ctx, s.lockPath, true)
	if err != nil {
		return err
	}
	defer unlock()
	st, info, err := s.read(FixedNodes(ctx))
	if err != nil {
		return err
	}
	s.removeStale(info.nodesFile)
	built := st.base
	before, err := encodeMain(st, info.nodesFile)
	if err != nil {
		return fmt.Errorf("cluster: encode state: %w", err)
	}
	if err := fn(st); err != nil {
		return err
	}
	unchanged := st.NodesAre(built)
	if err := st.validateKnown(unchanged); err != nil {
		return fmt.Errorf("cluster: refusing to save an invalid state: %w", err)
	}
	if unchanged && !info.legacy && info.nodesFile != "" {
		main, err := encodeMain(st, info.nodesFile)
		if err != nil {
			return fmt.Errorf("cluster: encode state: %w", err)
		}
		if bytes.Equal(main, before) {
			return nil
		}
		return s.write(s.path, main)
	}
	if unchanged && info.legacy {
		if main, err := encodeMain(st, info.nodesFile); err == nil && bytes.Equal(main, before) {
			return nil // a layout 1 file stays as it is until something changes
		}
	}
	return s.writeBoth(st, info)
}

// writeBoth writes a new nodes file, then the main file naming it, then
// removes the nodes file the old main file named.
func (s *FileStore) writeBoth(st *State, info readInfo) error {
	set, err := st.NodeSet()
	if err != nil {
		return fmt.Errorf("cluster: refusing to save an invalid state: %w", err)
	}
	name := s.nodesFileName(info.gen + 1)
	nodes, err := marshalIndented(&nodesDoc{Version: fileLayout, Nodes: nonNil(set.nodes)})
	if err != nil {
		return fmt.Errorf("cluster: encode nodes: %w", err)
	}
	main, err := encodeMain(st, name)
	if err != nil {
		return fmt.Errorf("cluster: encode state: %w", err)
	}
	path := filepath.Join(s.dir, name)
	if err := s.write(path, nodes); err != nil {
		return err
	}
	if afterNodesWrite != nil {
		afterNodesWrite()
	}
	if err := s.write(s.path, main); err != nil {
		// The new nodes file stays: the error may come after the
		// rename (a failed directory sync), when the main file names
		// it. If it does not, the next Update removes it.
		return err
	}
	if info.nodesFile != "" && info.nodesFile != name {
		os.Remove(filepath.Join(s.dir, info.nodesFile))
	}
	if fi, err := os.Lstat(path); err == nil {
		s.remember(name, idOf(fi), set)
	}
	return nil
}

// afterNodesWrite, set by tests, runs between the two writes of writeBoth:
// the moment a crash must not lose or double anything.
var afterNodesWrite func()

func nonNil(nodes []Node) []Node {
	if nodes == nil {
		return []Node{}
	}
	return nodes
}

// write replaces a state file durably: they are the only record of who
// holds which node.
func (s *FileStore) write(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("cluster: write state: %w", err)
	}
	return nil
}

// nodesFileName names the nodes file of generation gen; '+' cannot appear
// in a cluster name, so no other cluster's file can have this name.
func (s *FileStore) nodesFileName(gen uint64) string {
	return s.cluster + ".nodes+" + strconv.FormatUint(gen, 10) + ".json"
}

// nodesFileGen parses a nodes file name of this cluster; ok is false for
// anything else (a path, another cluster's file).
func (s *FileStore) nodesFileGen(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, s.cluster+".nodes+")
	if !ok {
		return 0, false
	}
	digits, ok = strings.CutSuffix(digits, ".json")
	if !ok || digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	gen, err := strconv.ParseUint(digits, 10, 64)
	return gen, err == nil && s.nodesFileName(gen) == name
}

// removeStale deletes what writers that died left: temporary files, and
// nodes files no main file names (written just before a crash, or not yet
// removed after one). Only called under the exclusive lock, when no writer
// can be using them and no reader can be about to read them.
func (s *FileStore) removeStale(current string) {
	temps := []string{filepath.Base(atomicfile.TempGlob(s.path)), filepath.Base(atomicfile.TempGlob(filepath.Join(s.dir, s.cluster+".nodes+*.json")))}
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		name := e.Name()
		stale := false
		for _, pat := range temps {
			if ok, _ := filepath.Match(pat, name); ok {
				stale = true
			}
		}
		if _, ok := s.nodesFileGen(name); ok && name != current {
			stale = true
		}
		if stale {
			os.Remove(filepath.Join(s.dir, name))
		}
	}
}

// read returns the state; its nodes are the cached set's (their maps
// shared when fixed, see WithFixedNodes).
func (s *FileStore) read(fixed bool) (*State, readInfo, error) {
	var info readInfo
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		st := NewState()
		StateOn(st, emptyNodeSet, fixed)
		return st, info, nil
	}
	if err != nil {
		return nil, info, &StateError{Path: s.path, Err: err}
	}
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, info, &StateError{Path: s.path, Err: describeJSONError(data, err)}
	}
	if head.Version != nil && *head.Version == StateVersion {
		// Layout 1: everything in this file.
		st, err := decodeState(data)
		if err != nil {
			return nil, info, &StateError{Path: s.path, Err: err}
		}
		set, err := newNodeSet(st.Nodes)
		if err != nil {
			return nil, info, &StateError{Path: s.path, Err: err}
		}
		StateOn(st, set, fixed)
		info.legacy = true
		return st, info, nil
	}
	st, name, err := s.decodeMain(data, head.Version)
	if err != nil {
		return nil, info, &StateError{Path: s.path, Err: err}
	}
	info.nodesFile = name
	info.gen, _ = s.nodesFileGen(name)
	set, err := s.loadNodes(name)
	if err != nil {
		return nil, info, err
	}
	StateOn(st, set, fixed)
	if err := st.validateKnown(true); err != nil {
		return nil, info, &StateError{Path: s.path, Err: err}
	}
	return st, info, nil
}

// decodeMain decodes a main file of layout 2; the caller validates it
// once it has its nodes.
func (s *FileStore) decodeMain(data []byte, version *int) (*State, string, error) {
	switch {
	case version == nil:
		return nil, "", errors.New("no \"version\": not a vtcluster state file")
	case *version != fileLayout:
		return nil, "", fmt.Errorf("%w %d (this vtcluster reads versions %d and %d; was it written by a newer one?)", ErrStateVersion, *version, StateVersion, fileLayout)
	}
	doc := mainDoc{State: new(State)}
	if err := decodeStrict(data, &doc, "state"); err != nil {
		return nil, "", err
	}
	if doc.Nodes != nil {
		return nil, "", fmt.Errorf("\"nodes\" in a version %d file: the nodes belong in the file \"nodes_file\" names", fileLayout)
	}
	if _, ok := s.nodesFileGen(doc.NodesFile); !ok {
		return nil, "", fmt.Errorf("\"nodes_file\" is %q, expected %s", doc.NodesFile, s.nodesFileName(1)+" (any generation number)")
	}
	st := doc.State
	st.Version = StateVersion
	if st.Partitions == nil {
		st.Partitions = []Partition{}
	}
	compactOpaque(st)
	return st, doc.NodesFile, nil
}

// encodeMain writes the main file of st, whose nodes are in nodesFile.
func encodeMain(st *State, nodesFile string) ([]byte, error) {
	rest := *st
	if rest.Partitions == nil {
		rest.Partitions = []Partition{}
	}
	return marshalIndented(&mainDoc{Version: fileLayout, NodesFile: nodesFile, State: &rest})
}

func marshalIndented(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// fileID tells whether a file may have changed since it was read.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

func idOf(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

func (s *FileStore) remember(name string, id fileID, set *NodeSet) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	s.cache.name, s.cache.id, s.cache.set = name, id, set
}

// loadNodes returns the nodes of the nodes file name, from the cache while
// the file is the one it was read from.
func (s *FileStore) loadNodes(name string) (*NodeSet, error) {
	path := filepath.Join(s.dir, name)
	fail := func(err error) (*NodeSet, error) { return nil, &StateError{Path: path, Err: err} }
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	id := idOf(fi)
	s.cacheMu.Lock()
	c := s.cache
	s.cacheMu.Unlock()
	if c.set != nil && c.name == name && c.id == id && id != (fileID{}) {
		return c.set, nil
	}
	// Never through a symlink: the nodes file is ours, in our directory.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(errors.New("not a regular file"))
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fail(err)
	}
	set, err := decodeNodes(data)
	if err != nil {
		return fail(err)
	}
	s.remember(name, idOf(fi), set)
	return set, nil
}

// decodeNodes decodes and checks a nodes file.
func decodeNodes(data []byte) (*NodeSet, error) {
	var doc nodesDoc
	if err := decodeStrict(data, &doc, "nodes"); err != nil {
		return nil, err
	}
	if doc.Version != fileLayout {
		return nil, fmt.Errorf("%w %d in a nodes file (this vtcluster writes %d)", ErrStateVersion, doc.Version, fileLayout)
	}
	for i := range doc.Nodes {
		if err := restoreNodeNumbers(&doc.Nodes[i]); err != nil {
			return nil, err
		}
	}
	return NewNodeSet(doc.Nodes)
}
