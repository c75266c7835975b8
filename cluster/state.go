package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
)

// StateVersion is the version of the state document (MarshalState, the
// etcd store's doc, and the file store's layout 1, which it still reads;
// the file store now writes layout 2, state_file.go).
const StateVersion = 1

var (
	// ErrNodeNotFound: no node is registered under that name.
	ErrNodeNotFound = errors.New("node not found")
	// ErrNodeExists: RegisterNode without replace on a name already taken.
	ErrNodeExists = errors.New("node already registered")
	// ErrStateVersion: the state file was written in a format this build
	// does not know; wrapped in a *StateError.
	ErrStateVersion = errors.New("unknown state file version")
)

var clusterNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// State is everything vtcluster remembers about a cluster between
// processes: the registered nodes and who holds which of them.
type State struct {
	// Version is StateVersion.
	Version int `json:"version"`
	// Nodes are the registered nodes in registration order.
	Nodes []Node `json:"nodes"`
	// Partitions are the current reservations; a node is in at most one.
	Partitions []Partition `json:"partitions"`
	// AgentUsers are the Avocado jobs (by their avocado process) whose
	// pre-tests hook started or reused the agents; the last one to finish
	// stops them, so one job's end never pulls the agents from under
	// another job still running.
	AgentUsers []Owner `json:"agent_users,omitempty"`
	// Released are the claims of partitions that ended without giving
	// them back (see Partition.Claims); the package of each claim's Kind
	// removes them on the nodes and drops them from here.
	Released []ReleasedClaim `json:"released,omitempty"`
	// Resources is the resource manager's record (pools, resources,
	// bindings), kept here so that it shares the store, lock and atomic
	// writes of the partitions it is reserved with. cluster treats it as
	// an opaque JSON value; package resmgr owns its shape.
	Resources json.RawMessage `json:"resources,omitempty"`
	// Queue are the allocations waiting for nodes, served in rank order
	// (queue.go).
	Queue []QueueEntry `json:"queue,omitempty"`
	// NodeHealth are the nodes out of rotation or failing (quarantine.go).
	NodeHealth []NodeHealth `json:"node_health,omitempty"`

	// Revision is the store's version of this snapshot, for stores that
	// version their data (etcd's revision); zero for FileStore. It is
	// never saved.
	Revision int64 `json:"-"`

	// base is the node set the store built this state on, fixed whether
	// its maps are the set's own (state_nodes.go).
	base  *NodeSet
	fixed bool
}

// AddAgentUser records o as using the agents, forgetting users that are
// gone, and returns the other users still alive.
func (s *State) AddAgentUser(o Owner) []Owner {
	s.pruneAgentUsers(o.JobID)
	others := append([]Owner(nil), s.AgentUsers...)
	s.AgentUsers = append(s.AgentUsers, o)
	return others
}

// RemoveAgentUser forgets the job jobID (and users that are gone) and
// returns the users still alive.
func (s *State) RemoveAgentUser(jobID string) []Owner {
	s.pruneAgentUsers(jobID)
	return append([]Owner(nil), s.AgentUsers...)
}

func (s *State) pruneAgentUsers(jobID string) {
	kept := s.AgentUsers[:0]
	for _, u := range s.AgentUsers {
		if gone, _ := u.gone(); gone || u.JobID == jobID {
			continue
		}
		kept = append(kept, u)
	}
	s.AgentUsers = kept
}

// NewState returns the state of a cluster with nothing registered.
func NewState() *State {
	return &State{Version: StateVersion, Nodes: []Node{}, Partitions: []Partition{}}
}

// Node is a registered node. Inside an Update marked WithFixedNodes its
// Labels and Properties maps are shared with the store: replace them,
// never change them in place. It deliberately has no password field: state
// files are not a place for secrets.
type Node struct {
	Name         string `json:"name"`
	Address      string `json:"address,omitempty"`
	Hostname     string `json:"hostname,omitempty"`
	User         string `json:"user"`
	ShellPort    int    `json:"shell_port"`
	ProxyPort    int    `json:"proxy_port"`
	AgentBaseDir string `json:"agent_base_dir"`
	KeyFile      string `json:"key_file,omitempty"`
	KnownHosts   string `json:"known_hosts,omitempty"`
	AgentBind    string `json:"agent_bind"`
	TokenFile    string `json:"token_file,omitempty"`
	Arch         string `json:"arch,omitempty"`
	// Labels are the static properties from the cluster config.
	Labels map[string]any `json:"labels,omitempty"`
	// Properties were collected from the node's agent at PropertiesAt.
	Properties   map[string]any `json:"properties,omitempty"`
	PropertiesAt time.Time      `json:"properties_at,omitzero"`
	// Agent describes the agent started on the node; zero if none.
	Agent AgentInfo `json:"agent,omitzero"`
}

// AgentInfo records the agent process vtcluster started on a node.
type AgentInfo struct {
	PID       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	Version   string    `json:"version,omitempty"`
	SHA256    string    `json:"sha256,omitempty"` // of the agent binary deployed
}

// Host returns the connection target: Address, or Hostname if Address is empty.
func (n *Node) Host() string {
	if n.Address != "" {
		return n.Address
	}
	return n.Hostname
}

// AgentDir is the node's agent directory, <AgentBaseDir>/<Name>, as upstream.
func (n *Node) AgentDir() string { return path.Join(n.AgentBaseDir, n.Name) }

// Unauthenticated reports a direct agent without a token: see
// HostConfig.Unauthenticated.
func (n *Node) Unauthenticated() bool {
	return n.AgentBind == AgentBindDirect && n.TokenFile == ""
}

// Node returns the node called name, or nil. The pointer is into s, so
// changes made inside Store.Update are saved.
func (s *State) Node(name string) *Node {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

// RegisterNode adds n. A name already registered is ErrNodeExists unless
// replace is set; replacing overwrites the whole record, including Agent
// and Properties, and keeps the node's place in registration order.
func (s *State) RegisterNode(n Node, replace bool) error {
	if err := validateNode(&n); err != nil {
		return fmt.Errorf("cluster: register node: %w", err)
	}
	if old := s.Node(n.Name); old != nil {
		if !replace {
			return fmt.Errorf("cluster: register node %q: %w", n.Name, ErrNodeExists)
		}
		*old = n
		return nil
	}
	s.Nodes = append(s.Nodes, n)
	return nil
}

// UnregisterNode removes the node called name. A node in a live partition
// (one whose lease has not expired at now) is refused with a
// *LeaseHeldError unless force is set; forcing, or a node in an expired
// partition, also removes it from that partition, and a partition left
// without nodes goes too. An unknown name is ErrNodeNotFound.
func (s *State) UnregisterNode(name string, now time.Time, force bool) error {
	i := slices.IndexFunc(s.Nodes, func(n Node) bool { return n.Name == name })
	if i < 0 {
		return fmt.Errorf("cluster: unregister node %q: %w", name, ErrNodeNotFound)
	}
	if p := s.partitionOf(name); p != nil {
		if p.Live(now) && !force {
			return &LeaseHeldError{Node: name, Partition: p.ID, Owner: p.Owner, Expires: p.Expires}
		}
		p.Nodes = slices.DeleteFunc(p.Nodes, func(a Assignment) bool { return a.Node == name })
		s.Partitions = slices.DeleteFunc(s.Partitions, func(p Partition) bool { return len(p.Nodes) == 0 })
	}
	s.Nodes = slices.Delete(s.Nodes, i, i+1)
	return nil
}

// Partition returns the partition with that id, or nil. The pointer is into s.
func (s *State) Partition(id string) *Partition {
	for i := range s.Partitions {
		if s.Partitions[i].ID == id {
			return &s.Partitions[i]
		}
	}
	return nil
}

// NodeByTag returns the node that partition partitionID assigned to tag.
// Errors: ErrPartitionNotFound, ErrNodeNotFound (no such tag, or the node
// was unregistered by force).
func (s *State) NodeByTag(partitionID, tag string) (*Node, error) {
	p := s.Partition(partitionID)
	if p == nil {
		return nil, fmt.Errorf("cluster: partition %s: %w", partitionID, ErrPartitionNotFound)
	}
	name, ok := p.NodeFor(tag)
	if !ok {
		return nil, fmt.Errorf("cluster: partition %s has no tag %q: %w", partitionID, tag, ErrNodeNotFound)
	}
	n := s.Node(name)
	if n == nil {
		return nil, fmt.Errorf("cluster: partition %s tag %q: node %q: %w", partitionID, tag, name, ErrNodeNotFound)
	}
	return n, nil
}

// IdleNodes returns copies of the nodes that are in no live partition at
// now, in registration order. It does not look at owner processes: only
// Reclaim and Allocate decide that an owner is gone.
func (s *State) IdleNodes(now time.Time) []Node {
	// One pass over the partitions, not one per node: a lab has far more
	// nodes than partitions.
	held := map[string]bool{}
	for i := range s.Partitions {
		if p := &s.Partitions[i]; p.Live(now) {
			for _, a := range p.Nodes {
				held[a.Node] = true
			}
		}
	}
	idle := make([]Node, 0, len(s.Nodes)-min(len(held), len(s.Nodes)))
	for i := range s.Nodes {
		if !held[s.Nodes[i].Name] {
			idle = append(idle, s.Nodes[i])
		}
	}
	return idle
}

// SortedNames returns the registered node names in lexical order.
func (s *State) SortedNames() []string {
	names := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		names[i] = n.Name
	}
	slices.Sort(names)
	return names
}

func (s *State) partitionOf(node string) *Partition {
	for i := range s.Partitions {
		if _, ok := s.Partitions[i].nodeTag(node); ok {
			return &s.Partitions[i]
		}
	}
	return nil
}

// validateNode applies the rules every source of a node shares
// (ValidateHost), so a hand-edited state cannot hold what the config
// loader or "node add" would have refused.
func validateNode(n *Node) error {
	h := HostConfig{
		Name: n.Name, Address: n.Address, Hostname: n.Hostname, Username: n.User,
		ShellPort: n.ShellPort, ProxyPort: n.ProxyPort, AgentBaseDir: n.AgentBaseDir,
		KeyFile: n.KeyFile, KnownHosts: n.KnownHosts, AgentBind: n.AgentBind,
		TokenFile: n.TokenFile, Arch: n.Arch, Labels: n.Labels,
	}
	errs := ValidateHost(h)
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}

// validate checks the invariants every saved state keeps, so that neither
// a bug nor a hand edit can make two partitions share a node. Nodes that
// are still the records of the set the state was built on passed already.
func (s *State) validate() error { return s.validateKnown(s.NodesUnchanged()) }

// validateKnown is validate for a caller that knows NodesUnchanged.
func (s *State) validateKnown(unchanged bool) error {
	if s.Version != StateVersion {
		return fmt.Errorf("version is %d, expected %d", s.Version, StateVersion)
	}
	registered := func(name string) bool { _, ok := s.base.index[name]; return ok }
	if !unchanged || s.base == nil {
		names := make(map[string]bool, len(s.Nodes))
		for i := range s.Nodes {
			n := &s.Nodes[i]
			if err := validateNode(n); err != nil {
				return err
			}
			if names[n.Name] {
				return fmt.Errorf("node %q is registered twice", n.Name)
			}
			names[n.Name] = true
		}
		registered = func(name string) bool { return names[name] }
	}
	ids := make(map[string]bool, len(s.Partitions))
	holder := make(map[string]string)
	for _, p := range s.Partitions {
		if !partitionIDRE.MatchString(p.ID) {
			return fmt.Errorf("partition id %q is not 32 lowercase hex digits", p.ID)
		}
		if ids[p.ID] {
			return fmt.Errorf("partition %s is recorded twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Nodes) == 0 {
			return fmt.Errorf("partition %s has no nodes", p.ID)
		}
		if p.Expires.IsZero() {
			return fmt.Errorf("partition %s has no expiry", p.ID)
		}
		tags := make(map[string]bool, len(p.Nodes))
		for _, a := range p.Nodes {
			if !partitionTagRE.MatchString(a.Tag) || tags[a.Tag] {
				return fmt.Errorf("partition %s: tag %q is invalid or repeated", p.ID, a.Tag)
			}
			tags[a.Tag] = true
			if !registered(a.Node) {
				return fmt.Errorf("partition %s: tag %q names unregistered node %q", p.ID, a.Tag, a.Node)
			}
			if other, ok := holder[a.Node]; ok {
				return fmt.Errorf("node %q is in partitions %s and %s", a.Node, other, p.ID)
			}
			holder[a.Node] = p.ID
		}
		for _, c := range p.Claims {
			if err := validateClaim(c); err != nil {
				return fmt.Errorf("partition %s: %w", p.ID, err)
			}
		}
	}
	for _, c := range s.Released {
		if err := validateClaim(c.Claim); err != nil {
			return fmt.Errorf("released claims: %w", err)
		}
	}
	if len(s.Resources) > 0 && !json.Valid(s.Resources) {
		return errors.New("resources is not valid JSON")
	}
	return nil
}

func validateClaim(c Claim) error {
	if c.Kind == "" || c.ID == "" {
		return fmt.Errorf("claim %q of kind %q: kind and id are required", c.ID, c.Kind)
	}
	if len(c.Spec) > 0 && !json.Valid(c.Spec) {
		return fmt.Errorf("claim %s %s: spec is not valid JSON", c.Kind, c.ID)
	}
	return nil
}

// Store keeps a cluster's State between processes.
type Store interface {
	// Load returns a snapshot of the state, the empty state if none was
	// saved yet. Changing the snapshot changes nothing stored.
	Load(ctx context.Context) (*State, error)
	// Update runs fn on the current state and saves the result if fn
	// returns nil, as if every other Update of the same store were
	// excluded. If fn returns an error, nothing is saved and Update
	// returns that error. A store may run fn more than once (an
	// optimistic store retries when someone else saved in between), so fn
	// must set its results afresh on every call.
	Update(ctx context.Context, fn func(*State) error) error
}

// ChangeWaiter is a Store that can tell when its state changes, so that a
// waiting Allocate sleeps until nodes may have come free instead of
// polling.
type ChangeWaiter interface {
	// WaitChange returns nil once the state may have changed after the
	// snapshot whose Revision is rev, or ctx's error.
	WaitChange(ctx context.Context, rev int64) error
}

// Validate checks the invariants every saved state keeps (version, node
// records, one partition per node); stores call it before saving.
func (s *State) Validate() error { return s.validate() }

// MarshalState encodes st as the state file does; UnmarshalState is its
// inverse. Stores that keep the state elsewhere use them so every store
// reads and writes the same format, with the same checks.
func MarshalState(st *State) ([]byte, error) { return encodeStateFull(st) }

// UnmarshalState decodes and validates a state document written by
// MarshalState (or by hand), restoring the numbers in labels and
// properties to the types they had.
func UnmarshalState(data []byte) (*State, error) { return decodeState(data) }

// StateError is a state file that cannot be used as it is: unreadable,
// not JSON, of an unknown version, or breaking an invariant. vtcluster
// never replaces such a file by an empty state, since that would forget
// which nodes are in use; a person has to look at it.
type StateError struct {
	Path string
	Err  error
}

func (e *StateError) Error() string {
	return fmt.Sprintf("cluster: state file %s: %v; restore it or move it away (vtcluster never resets state)", e.Path, e.Err)
}

func (e *StateError) Unwrap() error { return e.Err }

// ValidClusterName checks a cluster name, which every store turns into a
// file name or a key.
func ValidClusterName(name string) error {
	if !clusterNameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("cluster: cluster name %q must be made of letters, digits, '.', '_' and '-'", name)
	}
	return nil
}

// decodeState decodes and checks a whole state document.
func decodeState(data []byte) (*State, error) {
	st, err := decodeDoc(data)
	if err != nil {
		return nil, err
	}
	if err := st.validate(); err != nil {
		return nil, err
	}
	return st, nil
}

func encodeStateFull(st *State) ([]byte, error) {
	// Empty lists are written as [] so the file reads the same to every tool.
	if st.Nodes == nil {
		st.Nodes = []Node{}
	}
	if st.Partitions == nil {
		st.Partitions = []Partition{}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// decodeDoc decodes a state document; the caller validates it.
func decodeDoc(data []byte) (*State, error) {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, describeJSONError(data, err)
	}
	if head.Version == nil {
		return nil, errors.New("no \"version\": not a vtcluster state file")
	}
	if *head.Version != StateVersion {
		return nil, fmt.Errorf("%w %d (this vtcluster reads version %d; was it written by a newer one?)", ErrStateVersion, *head.Version, StateVersion)
	}
	st := new(State)
	if err := decodeStrict(data, st, "state"); err != nil {
		return nil, err
	}
	for i := range st.Nodes {
		if err := restoreNodeNumbers(&st.Nodes[i]); err != nil {
			return nil, err
		}
	}
	compactOpaque(st)
	return st, nil
}

// compactOpaque hands the opaque values back compact, as their owners
// wrote them: the file is indented.
func compactOpaque(st *State) {
	st.Resources = compactJSON(st.Resources)
	for i := range st.Partitions {
		for j := range st.Partitions[i].Claims {
			c := &st.Partitions[i].Claims[j]
			c.Spec = compactJSON(c.Spec)
		}
	}
	for i := range st.Released {
		st.Released[i].Spec = compactJSON(st.Released[i].Spec)
	}
}

// decodeStrict decodes data, one JSON value of what (a "state", a "node
// record"), into v as every state record is read: no unknown field, no
// data after it, numbers kept as json.Number for restoreStateNumbers.
func decodeStrict(data []byte, v any, what string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("unexpected data after the %s object", what)
	}
	return nil
}

// compactJSON returns raw without insignificant space; invalid input is
// returned as is for validate to report.
func compactJSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

func describeJSONError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := py.LineCol(data, int(se.Offset))
		return fmt.Errorf("not valid JSON at line %d, column %d: %w", line, col, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		line, col := py.LineCol(data, int(te.Offset))
		return fmt.Errorf("wrong type at line %d, column %d: %w", line, col, err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("truncated JSON: %w", err)
	}
	return err
}

// restoreStateNumbers turns json.Number values back into the model's
// int64 or float64.
func restoreStateNumbers(m map[string]any) (map[string]any, error) {
	for k, v := range m {
		nv, err := py.FromJSON(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", k, err)
		}
		m[k] = nv
	}
	return m, nil
}
