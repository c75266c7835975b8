package runner

// The test's synchronisation service: barriers, key/value messages and
// mutexes among the tags of one test, held by the runner for the test's
// whole life. JSON steps (sync_steps.go), the Python body and processes on
// the nodes (sync_wire.go) all use this one hub.
//
// Membership is the test's tags, known before anything waits, so nothing
// is created before use and there is no create race. The runner tells the
// hub what each tag is doing (running, finished, lost); every wait that
// needs a tag which can no longer arrive ends at once with an error naming
// the tag and its node, instead of running into a timeout (LAVA, Beaker
// and openQA only notice through their timeouts).

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
)

// Bounds of what the hub keeps: everything a client names or sends is
// bounded, so a runaway script costs a known amount of memory.
const (
	maxSyncName   = 128
	maxSyncValue  = 64 << 10
	maxSyncKeys   = 1024 // message keys, barrier names and mutex names, each
	maxSyncEvents = 10000
	maxSyncWait   = 24 * time.Hour
)

// memberState is what a tag is doing, as far as synchronisation goes.
type memberState int

const (
	// memberRunning: the tag may still arrive anywhere.
	memberRunning memberState = iota
	// memberFinished: what ran for the tag has ended (or nothing runs
	// there); it will not arrive at a point it has not reached.
	memberFinished
	// memberLost: the node is gone.
	memberLost
)

// SyncEvent is one record of the test's synchronisation, for sync.json
// and debug.log: who arrived where when, who waited how long.
type SyncEvent struct {
	Time time.Time `json:"time"`
	Tag  string    `json:"tag"`
	Node string    `json:"node"`
	// Kind is one of arrive, pass, send, wait, receive, lock, locked,
	// unlock, fail, finish, lost.
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Detail string `json:"detail,omitempty"`
	// Waited is how long the wait lasted, in seconds (pass, receive,
	// locked, fail).
	Waited float64 `json:"waited,omitempty"`
}

// SyncError is a wait that could not complete. Its text names the point,
// and the tag and node that cannot come.
type SyncError struct{ msg string }

func (e *SyncError) Error() string { return e.msg }

func syncErrorf(format string, args ...any) error { return &SyncError{fmt.Sprintf(format, args...)} }

type syncMember struct {
	tag, node string
	state     memberState
	why       string
}

type syncBarrier struct {
	gen     int
	parties []string
	// arrived counts, per tag, the callers waiting in this round: two
	// processes of one tag may wait at once, and one giving up must not
	// take the other's arrival with it.
	arrived map[string]int
}

type syncValue struct {
	value string
	seq   int
}

type syncMutex struct {
	holder string // tag, "" when free
	since  time.Time
}

// syncHub is one test's synchronisation state.
type syncHub struct {
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	members  []*syncMember
	barriers map[string]*syncBarrier
	values   map[string]map[string]syncValue // key -> sender tag -> value
	mutexes  map[string]*syncMutex
	seq      int
	aborted  string // the whole test is over: every wait ends with this
	events   []SyncEvent
	dropped  int
	// onEvent, when set, sees every event as it is recorded (debug.log),
	// under the hub's lock: it must not block.
	onEvent func(SyncEvent)
	now     func() time.Time
}

// newSyncHub makes the hub for the test's tags (in order) and their nodes.
func newSyncHub(tags, nodes []string) *syncHub {
	h := &syncHub{
		changed:  make(chan struct{}),
		barriers: map[string]*syncBarrier{},
		values:   map[string]map[string]syncValue{},
		mutexes:  map[string]*syncMutex{},
		now:      time.Now,
	}
	for i, t := range tags {
		m := &syncMember{tag: t}
		if i < len(nodes) {
			m.node = nodes[i]
		}
		h.members = append(h.members, m)
	}
	return h
}

func (h *syncHub) member(tag string) *syncMember {
	for _, m := range h.members {
		if m.tag == tag {
			return m
		}
	}
	return nil
}

// Tags returns the test's tags in order.
func (h *syncHub) Tags() []string {
	out := make([]string, len(h.members))
	for i, m := range h.members {
		out[i] = m.tag
	}
	return out
}

// NodeOf returns the node name of tag.
func (h *syncHub) NodeOf(tag string) string {
	if m := h.member(tag); m != nil {
		return m.node
	}
	return ""
}

// notify wakes every waiter; h.mu is held.
func (h *syncHub) notify() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// record appends an event; h.mu is held.
func (h *syncHub) record(tag, kind, name, detail string, waited time.Duration) {
	ev := SyncEvent{Time: h.now(), Tag: tag, Node: h.NodeOf(tag), Kind: kind, Name: name, Detail: detail}
	if waited > 0 {
		ev.Waited = waited.Seconds()
	}
	if len(h.events) >= maxSyncEvents {
		h.dropped++
		return
	}
	h.events = append(h.events, ev)
	if h.onEvent != nil {
		// Never blocks: the receiver logs outside the hub's lock.
		h.onEvent(ev)
	}
}

// Events returns a copy of the events so far and how many were dropped
// over the bound.
func (h *syncHub) Events() ([]SyncEvent, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events), h.dropped
}

// describe names a member for errors: `tag "src" (node n1)`.
func (m *syncMember) describe() string {
	if m.node == "" {
		return fmt.Sprintf("tag %s", py.Repr(m.tag))
	}
	return fmt.Sprintf("tag %s (node %s)", py.Repr(m.tag), m.node)
}

// SetRunning marks tags as running: they may arrive anywhere again.
func (h *syncHub) SetRunning(tags ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range tags {
		if m := h.member(t); m != nil && m.state != memberLost {
			m.state, m.why = memberRunning, ""
		}
	}
	h.notify()
}

// SetFinished marks tag as finished for why ("its step ended", "failed:
// ..."); waits that need it end at once.
func (h *syncHub) SetFinished(tag, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.member(tag)
	if m == nil || m.state != memberRunning {
		return
	}
	m.state, m.why = memberFinished, why
	h.record(tag, "finish", "", why, 0)
	h.notify()
}

// SetLost marks tag's node as lost.
func (h *syncHub) SetLost(tag, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.member(tag)
	if m == nil || m.state == memberLost {
		return
	}
	m.state, m.why = memberLost, why
	h.record(tag, "lost", "", why, 0)
	h.notify()
}

// Abort ends every wait, now and later, with why (the test is over).
func (h *syncHub) Abort(why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.aborted == "" {
		h.aborted = why
		h.notify()
	}
}

// gone is why m cannot arrive any more, "" if it still may; h.mu is held.
func (m *syncMember) gone() string {
	switch m.state {
	case memberLost:
		return fmt.Sprintf("%s was lost: %s", m.describe(), m.why)
	case memberFinished:
		return fmt.Sprintf("%s finished without reaching it (%s)", m.describe(), m.why)
	}
	return ""
}

// checkName validates a barrier, key or mutex name.
func checkName(what, name string) error {
	if name == "" || len(name) > maxSyncName {
		return syncErrorf("%s name must be 1 to %d bytes, got %d", what, maxSyncName, len(name))
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f {
			return syncErrorf("%s name %s: no spaces or control characters allowed", what, py.Repr(name))
		}
	}
	return nil
}

// checkTags validates a participant list (nil: every tag).
func (h *syncHub) checkTags(tags []string) ([]string, error) {
	if len(tags) == 0 {
		return h.Tags(), nil
	}
	seen := map[string]bool{}
	for _, t := range tags {
		if h.member(t) == nil {
			return nil, syncErrorf("unknown tag %s (the test's tags: %s)", py.Repr(t), strings.Join(h.Tags(), ", "))
		}
		if seen[t] {
			return nil, syncErrorf("tag %s listed twice", py.Repr(t))
		}
		seen[t] = true
	}
	// In the test's order, so that errors name tags predictably.
	var out []string
	for _, t := range h.Tags() {
		if seen[t] {
			out = append(out, t)
		}
	}
	return out, nil
}

// waitUntil evaluates check under h.mu whenever something changes, until
// it reports done or an error, ctx ends or timeout (0: none) passes.
// what names the point for the timeout error.
func (h *syncHub) waitUntil(ctx context.Context, timeout time.Duration, what string, check func() (bool, error)) error {
	if timeout <= 0 || timeout > maxSyncWait {
		timeout = maxSyncWait
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		h.mu.Lock()
		done, err := check()
		if err == nil && !done && h.aborted != "" {
			err = syncErrorf("%s: %s", what, h.aborted)
		}
		ch := h.changed
		h.mu.Unlock()
		if err != nil || done {
			return err
		}
		select {
		case <-ch:
		case <-timer.C:
			return syncErrorf("%s: timed out after %s s", what, seconds(timeout))
		case <-ctx.Done():
			return syncErrorf("%s: given up: %v", what, context.Cause(ctx))
		}
	}
}

// Barrier returns once every tag of parties (nil: all) has arrived at
// name; tag is the one arriving. A barrier may be passed again by the
// same parties (a new round).
func (h *syncHub) Barrier(ctx context.Context, tag, name string, parties []string, timeout time.Duration) error {
	if err := checkName("barrier", name); err != nil {
		return err
	}
	parties, err := h.checkTags(parties)
	if err != nil {
		return fmt.Errorf("barrier %s: %w", py.Repr(name), err)
	}
	if !slices.Contains(parties, tag) {
		return syncErrorf("barrier %s: tag %s is not one of its parties (%s)", py.Repr(name), py.Repr(tag), strings.Join(parties, ", "))
	}
	start := h.now()
	h.mu.Lock()
	b := h.barriers[name]
	switch {
	case b == nil && len(h.barriers) >= maxSyncKeys:
		h.mu.Unlock()
		return syncErrorf("barrier %s: the test already has %d barriers", py.Repr(name), maxSyncKeys)
	case b == nil:
		b = &syncBarrier{parties: parties, arrived: map[string]int{}}
		h.barriers[name] = b
	case len(b.arrived) == 0:
		b.parties = parties // a new round may name other parties
	case !slices.Equal(b.parties, parties):
		h.mu.Unlock()
		return syncErrorf("barrier %s: this round's parties are %s, not %s", py.Repr(name), strings.Join(b.parties, ", "), strings.Join(parties, ", "))
	}
	gen := b.gen
	b.arrived[tag]++
	h.record(tag, "arrive", name, "parties "+strings.Join(parties, ","), 0)
	if len(b.arrived) == len(b.parties) {
		b.gen++
		b.arrived = map[string]int{}
		h.record(tag, "pass", name, "last to arrive", 0)
		h.notify()
		h.mu.Unlock()
		return nil
	}
	h.notify()
	h.mu.Unlock()
	what := fmt.Sprintf("barrier %s", py.Repr(name))
	err = h.waitUntil(ctx, timeout, what, func() (bool, error) {
		if b.gen != gen {
			return true, nil
		}
		for _, p := range b.parties {
			if _, ok := b.arrived[p]; ok {
				continue
			}
			if why := h.member(p).gone(); why != "" {
				return false, syncErrorf("%s: %s", what, why)
			}
		}
		return false, nil
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		// This caller no longer waits: it must not count as arrived.
		if b.gen == gen {
			if b.arrived[tag]--; b.arrived[tag] <= 0 {
				delete(b.arrived, tag)
			}
		}
		h.record(tag, "fail", name, err.Error(), h.now().Sub(start))
		return err
	}
	h.record(tag, "pass", name, "", h.now().Sub(start))
	return nil
}

// Send stores value under key from tag; it never blocks. Messages last
// the test's life, so a waiter that comes later still gets them; a tag
// sending the same key again replaces its value.
func (h *syncHub) Send(tag, key, value string) error {
	if err := checkName("message", key); err != nil {
		return err
	}
	if len(value) > maxSyncValue {
		return syncErrorf("message %s: value of %d bytes is above the %d allowed", py.Repr(key), len(value), maxSyncValue)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	vs := h.values[key]
	if vs == nil {
		if len(h.values) >= maxSyncKeys {
			return syncErrorf("message %s: the test already has %d message keys", py.Repr(key), maxSyncKeys)
		}
		vs = map[string]syncValue{}
		h.values[key] = vs
	}
	h.seq++
	vs[tag] = syncValue{value: value, seq: h.seq}
	h.record(tag, "send", key, truncateDetail(value), 0)
	h.notify()
	return nil
}

func truncateDetail(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// WaitOptions say what a wait for messages waits for.
type WaitOptions struct {
	// Keys are the message keys any one of which will do (rhts-sync-block
	// takes several states); most waits name one.
	Keys []string
	// From are the tags that may send (nil: every tag but the waiter's
	// own for Others, every tag otherwise).
	From []string
	// All waits until every tag of From has sent; otherwise one will do.
	All bool
	// Others leaves the waiting tag out of From (LAVA's lava-wait).
	Others  bool
	Timeout time.Duration
}

// Wait returns the values (sender tag -> value) once the messages o asks
// for were sent; for a wait for one sender it holds the latest one.
func (h *syncHub) Wait(ctx context.Context, tag string, o WaitOptions) (map[string]string, error) {
	if len(o.Keys) == 0 {
		return nil, syncErrorf("wait: no message key given")
	}
	for _, k := range o.Keys {
		if err := checkName("message", k); err != nil {
			return nil, err
		}
	}
	from, err := h.checkTags(o.From)
	what := fmt.Sprintf("waiting for %s", py.Repr(strings.Join(o.Keys, "|")))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if o.Others {
		from = slices.DeleteFunc(from, func(t string) bool { return t == tag })
		if len(from) == 0 {
			return nil, syncErrorf("%s: no other tag could send it", what)
		}
	}
	start := h.now()
	h.mu.Lock()
	h.record(tag, "wait", strings.Join(o.Keys, "|"), "from "+strings.Join(from, ","), 0)
	h.mu.Unlock()
	// sent is the latest value of sender, if any; h.mu is held.
	sent := func(sender string) (syncValue, bool) {
		var best syncValue
		ok := false
		for _, k := range o.Keys {
			if v, has := h.values[k][sender]; has && (!ok || v.seq > best.seq) {
				best, ok = v, true
			}
		}
		return best, ok
	}
	var got map[string]string
	err = h.waitUntil(ctx, o.Timeout, what, func() (bool, error) {
		got = map[string]string{}
		var latest syncValue
		latestTag := ""
		var missing []string
		for _, f := range from {
			if v, ok := sent(f); ok {
				got[f] = v.value
				if latestTag == "" || v.seq > latest.seq {
					latest, latestTag = v, f
				}
			} else {
				missing = append(missing, f)
			}
		}
		if o.All {
			for _, f := range missing {
				if why := h.member(f).gone(); why != "" {
					return false, syncErrorf("%s: %s", what, why)
				}
			}
			return len(missing) == 0, nil
		}
		if latestTag != "" {
			got = map[string]string{latestTag: latest.value}
			return true, nil
		}
		var whys []string
		for _, f := range missing {
			why := h.member(f).gone()
			if why == "" {
				return false, nil
			}
			whys = append(whys, why)
		}
		return false, syncErrorf("%s: no tag can send it any more: %s", what, strings.Join(whys, "; "))
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.record(tag, "fail", strings.Join(o.Keys, "|"), err.Error(), h.now().Sub(start))
		return nil, err
	}
	senders := slices.Sorted(maps.Keys(got))
	h.record(tag, "receive", strings.Join(o.Keys, "|"), "from "+strings.Join(senders, ","), h.now().Sub(start))
	return got, nil
}
