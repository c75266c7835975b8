package cluster

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vtcluster/vtcluster/agent/pgroup"
)

// DefaultLease is the lease a partition gets when AllocRequest.Lease or
// Renew's lease is zero. The owner renews well before it ends; the lease
// only matters when the owner vanished somewhere we cannot check, such as
// on another host.
const DefaultLease = 15 * time.Minute

var (
	// ErrPartitionNotFound: no partition has that id (never created, or
	// already released or reclaimed). Release callers may ignore it.
	ErrPartitionNotFound = errors.New("partition not found")
	// ErrBusy: nodes that could serve the request exist but are held by
	// other partitions; the error also wraps a *LeaseHeldError per node.
	ErrBusy = errors.New("the matching nodes are busy")
	// ErrUnsatisfiable: no registered node, busy or idle, can satisfy the
	// request, so waiting is pointless; the error also wraps the
	// chooser's *NoMatchError.
	ErrUnsatisfiable = errors.New("no registered nodes can ever satisfy the request")
)

var (
	partitionIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	// Tags become parts of environment variable names and directory
	// names in test results.
	partitionTagRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// Owner says who holds a partition, precisely enough to tell later whether
// the holder is still alive.
type Owner struct {
	JobID  string `json:"job_id,omitempty"`
	TestID string `json:"test_id,omitempty"`
	// Host is the owner's hostname; owners on other hosts are only
	// reclaimed when their lease expires.
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// PIDStart is the process start time from /proc/<pid>/stat, so a
	// recycled pid is not taken for the owner. Zero means unknown.
	PIDStart uint64 `json:"pid_start,omitempty"`
	// BootID is the owner host's boot id; an owner from an earlier boot is
	// gone whatever its pid says now. Empty means unknown.
	BootID string `json:"boot_id,omitempty"`
}

// CurrentOwner describes the calling process as an Owner.
func CurrentOwner(jobID, testID string) (Owner, error) {
	return ProcessOwner(os.Getpid(), jobID, testID)
}

// ProcessOwner describes process pid of this host as an Owner, with its
// start time so that a recycled pid is not mistaken for it. Short-lived
// commands (job hooks, `partition create`) use it to name the long-lived
// process they act for.
func ProcessOwner(pid int, jobID, testID string) (Owner, error) {
	_, start, err := procStat(pid)
	if err != nil {
		return Owner{}, fmt.Errorf("cluster: read start time of process %d: %w", pid, err)
	}
	host := ownHostname()
	if host == "" {
		return Owner{}, errors.New("cluster: cannot determine this host's name")
	}
	return Owner{JobID: jobID, TestID: testID, Host: host, PID: pid, PIDStart: start, BootID: hostBootID()}, nil
}

// IsAncestorOf reports whether the owner is process pid of this host or
// one of its ancestors: a partition created from a script's shell belongs
// to every command that shell runs, through whatever wrappers (timeout,
// nice, env, sudo) it runs them, which a parent pid match would miss.
func (o Owner) IsAncestorOf(pid int) bool {
	if o.Host != ownHostname() || o.PID <= 0 {
		return false
	}
	// Bounded: a pid chain is short, and a cycle cannot happen, but a
	// malformed /proc must not loop.
	for range 128 {
		if pid <= 1 {
			return false
		}
		st, err := pgroup.ReadStat(pid)
		if err != nil {
			return false
		}
		if pid == o.PID && (o.PIDStart == 0 || o.PIDStart == st.StartTick) {
			return true
		}
		pid = st.Ppid
	}
	return false
}

func (o Owner) String() string {
	s := fmt.Sprintf("pid %d on %s", o.PID, o.Host)
	var ctx []string
	if o.JobID != "" {
		ctx = append(ctx, fmt.Sprintf("job %q", o.JobID))
	}
	if o.TestID != "" {
		ctx = append(ctx, fmt.Sprintf("test %q", o.TestID))
	}
	if len(ctx) > 0 {
		s += " (" + strings.Join(ctx, ", ") + ")"
	}
	return s
}

// Gone reports whether the owner has surely ended, and why. Only owners on
// this host can be checked; others are never reported gone.
func (o Owner) Gone() (bool, string) { return o.gone() }

// gone reports whether the owner has surely ended, and why. Only owners on
// this host can be checked.
func (o Owner) gone() (bool, string) {
	if o.Host == "" || o.Host != ownHostname() {
		return false, ""
	}
	if o.BootID != "" && hostBootID() != "" && o.BootID != hostBootID() {
		return true, "owner host has rebooted"
	}
	return processGone(o.PID, o.PIDStart)
}

// Assignment gives a node to one of a partition's tags.
type Assignment struct {
	Tag  string `json:"tag"`
	Node string `json:"node"`
}

// Partition is a set of nodes reserved for one owner, each under the tag
// the test knows it by (e.g. "src", "dst").
type Partition struct {
	// ID is 32 lowercase hex digits, like upstream's uuid4().hex.
	ID      string       `json:"id"`
	Owner   Owner        `json:"owner"`
	Nodes   []Assignment `json:"nodes"`
	Created time.Time    `json:"created"`
	Renewed time.Time    `json:"renewed"`
	Expires time.Time    `json:"expires"`
	// Claims are what else the owner holds with the nodes (volumes, tap
	// ports, ...). They are recorded in the same Update as the nodes, so a
	// crash can never leave one reserved without the other, and when the
	// partition is reclaimed they move to State.Released for their owner
	// package to remove on the nodes.
	Claims []Claim `json:"claims,omitempty"`
	// Hold is set while the partition is kept for debugging after its
	// test failed (hold.go); its owner is then no longer checked.
	Hold *Hold `json:"hold,omitempty"`
}

// Claim is one thing a partition holds besides its nodes. cluster does not
// interpret it: Kind names the package that does (e.g. "resource"), ID
// that package's identifier, Node the node it lives on (empty when it
// spans nodes) and Spec whatever that package needs to remove it. Spec
// must be a JSON value; cluster stores it as is.
type Claim struct {
	Kind string          `json:"kind"`
	ID   string          `json:"id"`
	Node string          `json:"node,omitempty"`
	Spec json.RawMessage `json:"spec,omitempty"`
}

// ReleasedClaim is a claim whose partition was reclaimed (its owner died or
// its lease ran out) but whose owner package has not removed it yet.
type ReleasedClaim struct {
	Claim
	Partition string    `json:"partition"`
	Owner     Owner     `json:"owner"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
}

// Live reports whether the lease still runs at now.
func (p *Partition) Live(now time.Time) bool { return now.Before(p.Expires) }

// NodeFor returns the node assigned to tag.
func (p *Partition) NodeFor(tag string) (string, bool) {
	for _, a := range p.Nodes {
		if a.Tag == tag {
			return a.Node, true
		}
	}
	return "", false
}

func (p *Partition) nodeTag(node string) (string, bool) {
	for _, a := range p.Nodes {
		if a.Node == node {
			return a.Tag, true
		}
	}
	return "", false
}

// LeaseHeldError says that a node is held by someone else's partition.
type LeaseHeldError struct {
	Node      string
	Partition string
	Owner     Owner
	Expires   time.Time
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("node %q is held by partition %s of %s until %s",
		e.Node, e.Partition, e.Owner, e.Expires.UTC().Format(time.RFC3339))
}

// AllocRequest asks for one node per tag.
type AllocRequest struct {
	// Owner is recorded in the partition; Host and PID are required.
	Owner Owner
	// Tags name the roles, e.g. ["src", "dst"]; one distinct node each.
	Tags []string
	// Choose maps each tag to one of the idle nodes it is given, or
	// returns a *NoMatchError (see Assign). Other errors are final. It
	// must depend only on its argument: it is also called with every
	// registered node to find out whether waiting can help. Nil takes idle
	// nodes in registration order.
	Choose func(idle []Node) (map[string]string, error)
	// Lease is how long the partition is held without renewal; zero means
	// DefaultLease.
	Lease time.Duration
	// Wait is how long to wait for busy nodes to become idle; zero fails
	// at once with ErrBusy.
	Wait time.Duration
	// Logger receives "waiting for idle nodes" and reclaim messages; nil
	// discards them.
	Logger *slog.Logger
	// Reserve, when set, runs inside the same Update as the node choice,
	// after the nodes are chosen and before the partition is recorded. It
	// may add Claims to p and change s (e.g. the resource records under
	// State.Resources); an error aborts the whole allocation and nothing
	// is saved. Like Choose it may run several times (once per attempt),
	// each time on a fresh state, so it must not act outside s and p.
	Reserve func(s *State, p *Partition) error

	// Want are the tags' selectors as Choose applies them, recorded in
	// the queue while the request waits, so that every process can tell
	// which nodes it needs (queue.go); nil means any node for each tag.
	Want []TagRequest
	// Priority ranks the request in the queue: higher is served first.
	Priority int
	// OnWait, when set, is told why the request waits: once when it
	// starts waiting, then every ReportEvery (default one minute).
	OnWait      func(Waiting)
	ReportEvery time.Duration

	ticket *queueTicket
}

// Allocate reserves nodes for req.Tags. Within one Store.Update it first
// reclaims partitions whose lease has expired or whose owner is gone, then
// lets req.Choose pick among the idle nodes and records the partition, so
// no two callers, in any process, can get the same node.
//
// When the chooser finds no match it is asked again with every registered
// node: if that fails too, Allocate returns at once an error wrapping
// ErrUnsatisfiable and the chooser's *NoMatchError; otherwise it waits
// (for a change, on a store that is a ChangeWaiter; polling with backoff
// otherwise) and tries again until req.Wait has passed or ctx ends, then
// returns an error
// wrapping ErrBusy and a *LeaseHeldError for each node it would have taken.
// Other errors: invalid requests, a chooser error or invalid choice,
// store errors (*StateError), ctx errors.
func Allocate(ctx context.Context, st Store, req AllocRequest) (*Partition, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	log := req.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	deadline := time.Now().Add(req.Wait)
	backoff := 20 * time.Millisecond
	req.ticket = newQueueTicket(&req)
	defer leaveQueue(ctx, st, req.ticket)
	var reported time.Time
	var lastBusy error
	for attempt := 0; ; attempt++ {
		p, busy, rev, err := tryAllocate(ctx, st, &req, log)
		if err != nil && ctx.Err() != nil && lastBusy != nil {
			return nil, waitEnded(ctx, req.Tags, lastBusy)
		}
		if err != nil || p != nil {
			return p, err
		}
		lastBusy = busy
		reported = req.reportWait(ctx, st, busy, reported)
		left := time.Until(deadline)
		if left <= 0 {
			waited := ""
			if req.Wait > 0 {
				waited = fmt.Sprintf(" after waiting %s", req.Wait)
			}
			// The held nodes name themselves; the tags are the caller's.
			return nil, fmt.Errorf("cluster: %w%s: %w", ErrBusy, waited, busy)
		}
		if attempt == 0 {
			log.Info("waiting for idle nodes", "tags", req.Tags, "wait_seconds", req.Wait.Seconds(), "err", busy)
		}
		if w, ok := st.(ChangeWaiter); ok && rev > 0 {
			// Sleep until something changed instead of polling; the
			// deadline check above ends the wait.
			wctx, cancel := context.WithTimeout(ctx, min(left, queueRefresh))
			werr := w.WaitChange(wctx, rev)
			cancel()
			if ctx.Err() != nil {
				return nil, waitEnded(ctx, req.Tags, busy)
			}
			if werr == nil || errors.Is(werr, context.DeadlineExceeded) {
				continue
			}
			log.Warn("watching the state failed; polling instead", "err", werr)
		}
		// Jitter keeps processes that gave up together from retrying
		// together.
		sleep := min(backoff+rand.N(backoff/2+1), left)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, waitEnded(ctx, req.Tags, busy)
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (req *AllocRequest) validate() error {
	switch {
	case len(req.Tags) == 0:
		return errors.New("cluster: allocate: no tags")
	case req.Owner.Host == "" || req.Owner.PID <= 0:
		return errors.New("cluster: allocate: owner needs a host and a pid (see CurrentOwner)")
	case req.Lease < 0 || req.Wait < 0:
		return errors.New("cluster: allocate: negative lease or wait")
	}
	seen := make(map[string]bool, len(req.Tags))
	for _, t := range req.Tags {
		if !partitionTagRE.MatchString(t) {
			return fmt.Errorf("cluster: allocate: tag %q must be made of letters, digits, '.', '_' and '-'", t)
		}
		if seen[t] {
			return fmt.Errorf("cluster: allocate: tag %q given twice", t)
		}
		seen[t] = true
	}
	return nil
}

// tryAllocate makes one attempt. It returns the partition, or the reason
// to wait (busy), or a final error.
func tryAllocate(ctx context.Context, st Store, req *AllocRequest, log *slog.Logger) (p *Partition, busy error, rev int64, err error) {
	var final error
	choose := req.Choose
	if choose == nil {
		choose = firstIdle(req.Tags)
	}
	lease := req.Lease
	if lease == 0 {
		lease = DefaultLease
	}
	err = st.Update(WithFixedNodes(ctx), func(s *State) error {
		p, busy, final = nil, nil, nil // never keep a result from an earlier call
		rev = s.Revision
		now := time.Now().UTC()
		for _, r := range reclaimDead(s, now) {
			log.Info("reclaimed partition", "partition", r.part.ID, "owner", r.part.Owner.String(), "reason", r.reason)
		}
		idle := s.IdleNodes(now)
		// Nodes out of rotation, or kept for requests queued ahead of
		// this one, are not on offer (quarantine.go, queue.go).
		s.pruneQueue(now)
		s.tidyHealth(now)
		idle = s.servable(idle, now)
		var kept map[string]string
		if req.ticket != nil {
			kept = s.keptForQueue(req.ticket, idle, now)
			idle = slices.DeleteFunc(idle, func(n Node) bool { return kept[n.Name] != "" })
		}
		// The chooser may reorder or cut its slice: the choice is
		// checked against the state, not against it.
		choice, cerr := choose(idle)
		var nm *NoMatchError
		if errors.As(cerr, &nm) {
			// Returning nil keeps what reclaim did, even though nothing
			// is allocated this time.
			busy, final = whyBusy(s, now, req.Tags, choose, kept)
			if final == nil && req.ticket != nil {
				s.enqueue(req.ticket, now)
			}
			return nil
		}
		if cerr != nil {
			return fmt.Errorf("cluster: allocate %s: choose nodes: %w", strings.Join(req.Tags, " "), cerr)
		}
		offered := func(name string) bool {
			p := s.partitionOf(name)
			return s.Node(name) != nil && (p == nil || !p.Live(now)) && s.unservable(name, now) == "" && kept[name] == ""
		}
		if err := checkChoice(req.Tags, choice, offered); err != nil {
			return err
		}
		part := Partition{ID: newPartitionID(), Owner: req.Owner, Created: now, Renewed: now, Expires: now.Add(lease)}
		for _, tag := range req.Tags {
			part.Nodes = append(part.Nodes, Assignment{Tag: tag, Node: choice[tag]})
		}
		if req.Reserve != nil {
			if err := req.Reserve(s, &part); err != nil {
				return fmt.Errorf("cluster: allocate %s: reserve: %w", strings.Join(req.Tags, " "), err)
			}
		}
		s.Partitions = append(s.Partitions, part)
		if req.ticket != nil {
			s.dequeue(req.ticket.id)
		}
		p = &part
		return nil
	})
	if err == nil {
		err = final
	}
	if err != nil {
		return nil, nil, 0, err
	}
	if p == nil && busy == nil {
		return nil, nil, 0, errors.New("cluster: allocate: store did not run the update")
	}
	return p, busy, rev, nil
}

// whyBusy asks the chooser again with every node. A match means the
// shortage is only the busy nodes, reported per node; no match means no
// amount of waiting helps, which is a final error.
func whyBusy(s *State, now time.Time, tags []string, choose func([]Node) (map[string]string, error), kept map[string]string) (busy, final error) {
	all, err := choose(slices.Clone(s.Nodes))
	var nm *NoMatchError
	if errors.As(err, &nm) {
		return nil, fmt.Errorf("cluster: %w: %w", ErrUnsatisfiable, err) // err names the tag
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: allocate %s: choose nodes: %w", strings.Join(tags, " "), err)
	}
	var held []error
	names := make([]string, 0, len(all))
	for _, n := range all {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if p := s.partitionOf(n); p != nil && p.Live(now) {
			held = append(held, &LeaseHeldError{Node: n, Partition: p.ID, Owner: p.Owner, Expires: p.Expires})
		} else if why := cmp.Or(s.unservable(n, now), kept[n]); why != "" {
			held = append(held, &UnavailableError{Node: n, Reason: why})
		}
	}
	if len(held) == 0 {
		// The chooser matched all nodes but not the idle ones, although
		// the nodes it wants are idle: it is not a pure function.
		// Waiting is the harmless answer.
		return errors.New("chooser found no match among idle nodes"), nil
	}
	return errors.Join(held...), nil
}

// checkChoice guards against a chooser that returns something other than
// one distinct idle node per requested tag.
func checkChoice(tags []string, choice map[string]string, offered func(node string) bool) error {
	if len(choice) != len(tags) {
		return fmt.Errorf("cluster: allocate: chooser returned %d assignments for %d tags", len(choice), len(tags))
	}
	used := make(map[string]string, len(tags))
	for _, tag := range tags {
		n, ok := choice[tag]
		if !ok {
			return fmt.Errorf("cluster: allocate: chooser gave no node for tag %q", tag)
		}
		if !offered(n) {
			return fmt.Errorf("cluster: allocate: chooser gave tag %q node %q, which is not idle", tag, n)
		}
		if other, dup := used[n]; dup {
			return fmt.Errorf("cluster: allocate: chooser gave node %q to both %q and %q", n, other, tag)
		}
		used[n] = tag
	}
	return nil
}

// firstIdle is the default chooser: idle nodes in registration order.
func firstIdle(tags []string) func([]Node) (map[string]string, error) {
	return func(idle []Node) (map[string]string, error) {
		if len(idle) < len(tags) {
			e := &NoMatchError{Tag: tags[len(idle)], Selectors: FormatSelectors(nil), Reason: ReasonNoNode}
			if len(idle) > 0 {
				e.Reason, e.Rivals = ReasonTaken, slices.Clone(tags[:len(idle)])
				for _, n := range idle {
					e.CouldMatch = append(e.CouldMatch, n.Name)
				}
			}
			return nil, e
		}
		m := make(map[string]string, len(tags))
		for i, t := range tags {
			m[t] = idle[i].Name
		}
		return m, nil
	}
}

func newPartitionID() string {
	var b [16]byte
	crand.Read(b[:]) // never fails since Go 1.24
	return hex.EncodeToString(b[:])
}

type reclaimed struct {
	part   Partition
	reason string
}

// reclaim removes from s the partitions whose lease expired at now or whose
// owner is gone, and moves their claims to s.Released, where the package
// that made them finds them (see SweepReleased).
func reclaimDead(s *State, now time.Time) []reclaimed {
	var out []reclaimed
	s.Partitions = slices.DeleteFunc(s.Partitions, func(p Partition) bool {
		if !p.Live(now) {
			why := "lease expired"
			if p.Hold != nil {
				why = "hold for debugging ended"
			}
			out = append(out, reclaimed{p, why})
			return true
		}
		if gone, why := p.Owner.gone(); gone && p.Hold == nil {
			out = append(out, reclaimed{p, why})
			return true
		}
		return false
	})
	for _, r := range out {
		s.releaseClaims(&r.part, r.reason, now)
	}
	return out
}

// releaseClaims moves p's claims to s.Released.
func (s *State) releaseClaims(p *Partition, reason string, now time.Time) {
	for _, c := range p.Claims {
		s.Released = append(s.Released, ReleasedClaim{Claim: c, Partition: p.ID, Owner: p.Owner, Reason: reason, At: now})
	}
	p.Claims = nil
}

// TakeReleased removes from s and returns the released claims of kind, for
// the package that owns them to remove on the nodes. A caller that fails
// to remove one puts it back with s.Released = append(s.Released, c).
func (s *State) TakeReleased(kind string) []ReleasedClaim {
	var out []ReleasedClaim
	s.Released = slices.DeleteFunc(s.Released, func(c ReleasedClaim) bool {
		if c.Kind == kind {
			out = append(out, c)
			return true
		}
		return false
	})
	return out
}

// Reclaim removes the partitions whose lease expired at now or whose owner
// process on this host is gone, and returns them.
func Reclaim(ctx context.Context, st Store, now time.Time) ([]Partition, error) {
	var out []Partition
	err := st.Update(WithFixedNodes(ctx), func(s *State) error {
		out = nil
		for _, r := range reclaimDead(s, now) {
			out = append(out, r.part)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Renew extends partition id's lease to lease from now (DefaultLease if
// zero). A partition whose lease ran out but that nobody reclaimed yet can
// still be renewed: its nodes were never given to anyone else. Errors:
// ErrPartitionNotFound, store and ctx errors.
func Renew(ctx context.Context, st Store, id string, lease time.Duration) (*Partition, error) {
	if lease < 0 {
		return nil, errors.New("cluster: renew: negative lease")
	}
	if lease == 0 {
		lease = DefaultLease
	}
	return changePartition(ctx, st, "renew", id, func(p *Partition, now time.Time) {
		// A hold is only ever lengthened: a renewal that was on its way
		// when the test's runner held the partition must not cut it.
		if p.Hold == nil || now.Add(lease).After(p.Expires) {
			p.Renewed, p.Expires = now, now.Add(lease)
		}
	})
}

// Release frees partition id's nodes. Releasing twice is harmless: the
// second call returns an error wrapping ErrPartitionNotFound, which callers
// that only want the nodes free may ignore.
func Release(ctx context.Context, st Store, id string) error {
	return st.Update(WithFixedNodes(ctx), func(s *State) error {
		i := slices.IndexFunc(s.Partitions, func(p Partition) bool { return p.ID == id })
		if i < 0 {
			return fmt.Errorf("cluster: release partition %s: %w", id, ErrPartitionNotFound)
		}
		// Claims the owner did not give back itself are not forgotten:
		// they are swept like a dead owner's.
		s.releaseClaims(&s.Partitions[i], "released with claims", time.Now().UTC())
		s.Partitions = slices.Delete(s.Partitions, i, i+1)
		return nil
	})
}

// ListPartitions returns the recorded partitions, expired ones included
// until something reclaims them.
func ListPartitions(ctx context.Context, st Store) ([]Partition, error) {
	s, err := st.Load(ctx)
	if err != nil {
		return nil, err
	}
	return s.Partitions, nil
}
