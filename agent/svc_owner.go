package agent

// The owner service: the node defends its own exclusivity. Controllers
// keep who holds which node in their state (a file or etcd), and two
// controllers with separate states, or a state restored from a backup,
// would each hand the same node to a test; the second hand-over would
// then stop the first test's processes (process.stop_others). So the
// agent keeps its own record of the one owner that holds it, under a
// lease that the owner's liveness probes renew (owner.renew), and refuses
// to hand the node to anyone else while that lease runs: acquire and
// stop_others fail with a NodeHeldError fault naming the holder. An owner
// that dies stops renewing, its lease ends, and the next hand-over
// proceeds as before. The record is a file in the data dir, so an agent
// restart keeps it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
	"github.com/vtcluster/vtcluster/internal/atomicfile"
)

// OwnerRecordName is the owner record's file name in the data dir.
const OwnerRecordName = "owner.json"

// NodeHeldFault is the exception type of a hand-over refused because
// another owner's lease runs.
const NodeHeldFault = "NodeHeldError"

// NodeReleasedFault is the exception type of a renewal of a hold that its
// owner has released: the renewal came late, and the hold stays ended.
const NodeReleasedFault = "NodeReleasedError"

// releasedKept is how many released hold ids the agent remembers, so that
// a renewal sent before the release but served after it (a slow or
// CPU-starved agent serves the two calls on separate connections, in
// either order) cannot bring the hold back. Holds end one test at a time;
// a few suffice.
const releasedKept = 16

// maxOwnerLease bounds the lease a caller may ask for: a longer one would
// let a dead controller keep a node from everyone for that long.
const maxOwnerLease = time.Hour

// Holder is the owner that holds the node: a partition id and the
// controller process that allocated it.
type Holder struct {
	ID       string    `json:"id"`
	Host     string    `json:"host,omitempty"`
	PID      int       `json:"pid,omitempty"`
	PIDStart uint64    `json:"pid_start,omitempty"`
	BootID   string    `json:"boot_id,omitempty"`
	JobID    string    `json:"job_id,omitempty"`
	TestID   string    `json:"test_id,omitempty"`
	State    string    `json:"state,omitempty"` // the controller's state, for people
	Acquired time.Time `json:"acquired"`
	Renewed  time.Time `json:"renewed"`
	Expires  time.Time `json:"expires"`
}

// describe names the holder for a fault message and a log line.
func (h *Holder) describe() string {
	s := fmt.Sprintf("owner %s", py.Repr(h.ID))
	if h.Host != "" {
		s += fmt.Sprintf(" of controller host %s (pid %d", h.Host, h.PID)
		if h.JobID != "" {
			s += ", job " + py.Repr(h.JobID)
		}
		if h.TestID != "" {
			s += ", test " + py.Repr(h.TestID)
		}
		s += ")"
	}
	return s
}

// OwnerService is the agent's "owner" service.
type OwnerService struct {
	path string
	log  *slog.Logger
	now  func() time.Time

	mu    sync.Mutex
	cur   *Holder   // nil when nobody holds the node
	saved time.Time // the expiry last written to the file
	// released are the ids of the last holds ended by release, newest
	// last (releasedKept of them).
	released []string
}

var _ Service = (*OwnerService)(nil)

// NewOwnerService reads the record at path (none yet is fine). A record
// that cannot be read is an error rather than a free node: starting up as
// free would let a second controller in while the first one's test runs.
func NewOwnerService(path string, logger *slog.Logger) (*OwnerService, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &OwnerService{path: path, log: logger, now: time.Now}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: owner record: %w", err)
	}
	defer f.Close()
	b, err := readAllLimited(f, 64<<10)
	if err == nil && len(b) > 0 {
		var h Holder
		if err = json.Unmarshal(b, &h); err == nil && h.ID != "" {
			s.cur, s.saved = &h, h.Expires
		}
	}
	if err != nil {
		return nil, fmt.Errorf("agent: owner record %s: %w (remove it if no test holds this node)", path, err)
	}
	return s, nil
}

// Name is the service prefix: "owner.acquire", ...
func (s *OwnerService) Name() string { return "owner" }

// Methods returns the XML-RPC methods.
func (s *OwnerService) Methods() map[string]Method {
	return map[string]Method{
		"acquire": s.acquire,
		"renew":   s.renew,
		"release": s.release,
		"show":    s.show,
	}
}

// CheckHandOver is process.stop_others' guard: handing the node to id is
// refused while another owner's lease runs.
func (s *OwnerService) CheckHandOver(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heldLocked(id, "")
}

// heldLocked returns the NodeHeldError fault if an owner other than id
// (and other than replace, one the caller proved dead) holds a live lease.
func (s *OwnerService) heldLocked(id, replace string) error {
	h := s.cur
	if h == nil || h.ID == id || !s.now().Before(h.Expires) || (replace != "" && h.ID == replace) {
		return nil
	}
	return xmlrpc.Faultf(NodeHeldFault, "this node is held by %s until %s (its lease is renewed while its test runs); refusing to hand it to owner %s",
		h.describe(), h.Expires.UTC().Format(time.RFC3339), py.Repr(id))
}

// acquire(id, holder, lease_seconds[, replace]) makes id the node's owner
// for lease_seconds. holder is a struct describing the controller (host,
// pid, pid_start as a string, boot_id, job_id, test_id, state). replace
// names a holder the caller found dead (on its own host): its lease no
// longer protects it. Returns the record.
func (s *OwnerService) acquire(_ context.Context, args Args) (any, error) {
	if err := args.Want(3, 4); err != nil {
		return nil, err
	}
	id, err := args.String(0, "id")
	if err != nil {
		return nil, err
	}
	info, err := args.Struct(1, "holder")
	if err != nil {
		return nil, err
	}
	lease, err := leaseArg(args, 2)
	if err != nil {
		return nil, err
	}
	replace, err := args.OptString(3, "replace", "")
	if err != nil {
		return nil, err
	}
	if id == "" {
		return nil, xmlrpc.Faultf("ValueError", "owner id is empty")
	}
	h := Holder{ID: id}
	str := func(k string) string { v, _ := info[k].(string); return v }
	h.Host, h.BootID, h.JobID, h.TestID, h.State = str("host"), str("boot_id"), str("job_id"), str("test_id"), str("state")
	if pid, ok := py.Int(info["pid"]); ok {
		h.PID = int(pid)
	}
	h.PIDStart, _ = strconv.ParseUint(str("pid_start"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.heldLocked(id, replace); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	if prev := s.cur; prev != nil && prev.ID != id {
		why := "its lease ended " + prev.Expires.UTC().Format(time.RFC3339)
		if prev.ID == replace && now.Before(prev.Expires) {
			why = "the new owner found it dead"
		}
		s.log.Warn(fmt.Sprintf("node handed from %s to %s: %s", prev.describe(), h.describe(), why))
	}
	h.Acquired = now
	if s.cur != nil && s.cur.ID == id {
		h.Acquired = s.cur.Acquired
	}
	h.Renewed, h.Expires = now, now.Add(lease)
	s.cur = &h
	if err := s.saveLocked(); err != nil {
		s.cur = nil
		return nil, err
	}
	return holderStruct(&h), nil
}

// renew(id, lease_seconds) extends id's lease. The liveness probes of the
// owning runner call it every second. A node that another owner holds
// meanwhile (this owner's lease ran out and someone took it) is a
// NodeHeldError: the caller has lost the node and must end its test.
// Returns the new expiry as an RFC 3339 string.
func (s *OwnerService) renew(_ context.Context, args Args) (any, error) {
	if err := args.Want(2, 2); err != nil {
		return nil, err
	}
	id, err := args.String(0, "id")
	if err != nil {
		return nil, err
	}
	lease, err := leaseArg(args, 1)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.heldLocked(id, ""); err != nil {
		return nil, err
	}
	if slices.Contains(s.released, id) {
		// Seen under a 0.2-CPU limit: the runner's last probe arrived
		// after its release, held the node again for a lease with no
		// owner named, and the job's agents stop then left this agent
		// running as held by another controller.
		return nil, xmlrpc.Faultf(NodeReleasedFault, "owner %s released this node; a renewal that arrives after the release does not hold it again", py.Repr(id))
	}
	now := s.now().UTC()
	if s.cur == nil || s.cur.ID != id {
		// Free (released, or another owner's lease ended): the renewing
		// owner still runs its test here, so it holds the node again.
		s.cur = &Holder{ID: id, Acquired: now}
	}
	s.cur.Renewed, s.cur.Expires = now, now.Add(lease)
	// Written once per third of a lease, not every second: a restarted
	// agent then keeps at least two thirds of it.
	if s.cur.Expires.Sub(s.saved) > lease/3 {
		if err := s.saveLocked(); err != nil {
			return nil, err
		}
	}
	return s.cur.Expires.Format(time.RFC3339Nano), nil
}

// release(id) ends id's hold; true if it held the node. Releasing a node
// that someone else holds changes nothing.
func (s *OwnerService) release(_ context.Context, args Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	id, err := args.String(0, "id")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || s.cur.ID != id {
		return false, nil
	}
	prev := s.cur
	s.cur = nil
	if err := s.saveLocked(); err != nil {
		s.cur = prev
		return nil, err
	}
	s.released = append(s.released, id)
	if len(s.released) > releasedKept {
		s.released = s.released[1:]
	}
	return true, nil
}

// show() returns the holder's record, or an empty struct when the node is
// free (an expired lease is still shown, with its expiry).
func (s *OwnerService) show(_ context.Context, args Args) (any, error) {
	if err := args.Want(0, 0); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return xmlrpc.Struct{}, nil
	}
	return holderStruct(s.cur), nil
}

func holderStruct(h *Holder) xmlrpc.Struct {
	return xmlrpc.Struct{
		{Key: "id", Value: h.ID},
		{Key: "host", Value: h.Host},
		{Key: "pid", Value: h.PID},
		{Key: "pid_start", Value: strconv.FormatUint(h.PIDStart, 10)},
		{Key: "boot_id", Value: h.BootID},
		{Key: "job_id", Value: h.JobID},
		{Key: "test_id", Value: h.TestID},
		{Key: "state", Value: h.State},
		{Key: "acquired", Value: h.Acquired.Format(time.RFC3339Nano)},
		{Key: "renewed", Value: h.Renewed.Format(time.RFC3339Nano)},
		{Key: "expires", Value: h.Expires.Format(time.RFC3339Nano)},
	}
}

func leaseArg(args Args, i int) (time.Duration, error) {
	var secs float64
	switch v := args.Value(i).(type) {
	case int64:
		secs = float64(v)
	case float64:
		secs = v
	default:
		return 0, xmlrpc.Faultf("TypeError", "argument 'lease_seconds' must be int or float, not %s", py.TypeName(v))
	}
	d := time.Duration(secs * float64(time.Second))
	if !(secs > 0) || d > maxOwnerLease {
		return 0, xmlrpc.Faultf("ValueError", "lease_seconds must be within (0, %d], got %v", int(maxOwnerLease.Seconds()), secs)
	}
	return d, nil
}

// saveLocked writes the record atomically (the file is removed when
// nobody holds the node), so a crash leaves the old or the new one.
func (s *OwnerService) saveLocked() error {
	if s.path == "" {
		return nil
	}
	if s.cur == nil {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("agent: owner record: %w", err)
		}
		s.saved = time.Time{}
		return nil
	}
	b, err := json.MarshalIndent(s.cur, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("agent: owner record: %w", err)
	}
	s.saved = s.cur.Expires
	return nil
}
