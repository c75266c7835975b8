package cluster

// The allocation queue: waiting requests are served in order, so a large
// request is not starved by a stream of small ones that each find enough
// idle nodes first (LAVA-1285's complaint). Every Allocate that has to wait
// records itself in State.Queue, in the same locked Update that found the
// nodes busy; every attempt, by any process or controller sharing the
// store, then lets the requests ranked ahead of it keep the nodes they
// need:
//
//   - a request that fits in the idle nodes now keeps those nodes (its
//     owner takes them at its next attempt, woken by the change);
//   - a request that does not fit keeps the idle nodes it could use, up to
//     one per tag, so that they add up for it as partitions end instead of
//     going to later, smaller requests.
//
// Rank is priority first (AllocRequest.Priority, higher first), then
// arrival; each QueueAgeing waited adds one to the priority, so a
// low-priority request is served in the end however many high-priority
// ones arrive. An entry whose owner is gone (this host) or that its owner
// stopped refreshing (queueEntryTTL, any host) is dropped.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

const (
	// QueueAgeing is how long a request waits to gain one priority level.
	QueueAgeing = time.Minute
	// queueEntryTTL is how long an entry outlives its owner's last
	// refresh; owners on other hosts cannot be checked otherwise.
	queueEntryTTL = time.Minute
	// queueRefresh is how often a waiting Allocate refreshes its entry
	// and, on a store that tells of changes, looks again even if nothing
	// changed (a node that another controller held may be free).
	queueRefresh = 15 * time.Second
)

// QueueEntry is one waiting allocation.
type QueueEntry struct {
	ID       string     `json:"id"`
	Owner    Owner      `json:"owner"`
	Tags     []QueueTag `json:"tags"`
	Priority int        `json:"priority,omitempty"`
	// Since is when the request started waiting; Expires when the entry
	// is dropped unless its owner refreshes it.
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"`
}

// QueueTag is one tag of a waiting request and its selectors, written as
// FormatSelectors writes them ("" for any node).
type QueueTag struct {
	Tag       string `json:"tag"`
	Selectors string `json:"selectors,omitempty"`
}

// Rank is the entry's priority at now, ageing included.
func (e *QueueEntry) Rank(now time.Time) int {
	return e.Priority + int(max(now.Sub(e.Since), 0)/QueueAgeing)
}

// ahead reports whether a is served before b at now.
func queueAhead(a, b *QueueEntry, now time.Time) bool {
	ra, rb := a.Rank(now), b.Rank(now)
	if ra != rb {
		return ra > rb
	}
	if !a.Since.Equal(b.Since) {
		return a.Since.Before(b.Since)
	}
	return a.ID < b.ID
}

// tagRequests turns the entry back into what Assign takes.
func (e *QueueEntry) tagRequests() ([]TagRequest, error) {
	out := make([]TagRequest, len(e.Tags))
	for i, t := range e.Tags {
		out[i].Tag = t.Tag
		if strings.TrimSpace(t.Selectors) == "" || t.Selectors == FormatSelectors(nil) {
			continue
		}
		sels, err := ParseSelectors(t.Selectors)
		if err != nil {
			return nil, fmt.Errorf("queued request %s tag %q: %w", e.ID, t.Tag, err)
		}
		out[i].Selectors = sels
	}
	return out, nil
}

// SelectorProps are the properties selectors see for n: what its agent
// reported, and its config labels where the agent said nothing.
func (n *Node) SelectorProps() map[string]any {
	props := make(map[string]any, len(n.Properties)+len(n.Labels))
	for k, v := range n.Properties {
		props[k] = v
	}
	for k, v := range n.Labels {
		if _, ok := props[k]; !ok {
			props[k] = v
		}
	}
	return props
}

func candidatesOf(nodes []Node) []Candidate {
	out := make([]Candidate, len(nodes))
	for i := range nodes {
		out[i] = Candidate{Name: nodes[i].Name, Props: nodes[i].SelectorProps()}
	}
	return out
}

// queueTicket is an Allocate call's place in the queue.
type queueTicket struct {
	id       string
	priority int
	tags     []QueueTag
	owner    Owner
	// queued is set once an Update recorded the entry, so that an
	// allocation served at once costs no extra write to leave the queue.
	queued bool
}

func newQueueTicket(req *AllocRequest) *queueTicket {
	t := &queueTicket{id: newPartitionID(), priority: req.Priority, owner: req.Owner}
	for _, tag := range req.Tags {
		qt := QueueTag{Tag: tag}
		for _, w := range req.Want {
			if w.Tag == tag && len(w.Selectors) > 0 {
				qt.Selectors = FormatSelectors(w.Selectors)
			}
		}
		t.tags = append(t.tags, qt)
	}
	return t
}

// entry returns the ticket's entry in s (nil if not queued yet).
func (s *State) queueEntry(id string) *QueueEntry {
	for i := range s.Queue {
		if s.Queue[i].ID == id {
			return &s.Queue[i]
		}
	}
	return nil
}

// pruneQueue drops entries whose owner is gone or that were not refreshed.
func (s *State) pruneQueue(now time.Time) {
	s.Queue = slices.DeleteFunc(s.Queue, func(e QueueEntry) bool {
		if !now.Before(e.Expires) {
			return true
		}
		gone, _ := e.Owner.gone()
		return gone
	})
}

// enqueue records t as waiting (or refreshes its entry when due).
func (s *State) enqueue(t *queueTicket, now time.Time) {
	t.queued = true
	if e := s.queueEntry(t.id); e != nil {
		if e.Expires.Sub(now) < queueEntryTTL-queueRefresh {
			e.Expires = now.Add(queueEntryTTL)
		}
		return
	}
	s.Queue = append(s.Queue, QueueEntry{ID: t.id, Owner: t.owner, Tags: t.tags, Priority: t.priority, Since: now, Expires: now.Add(queueEntryTTL)})
}

func (s *State) dequeue(id string) {
	s.Queue = slices.DeleteFunc(s.Queue, func(e QueueEntry) bool { return e.ID == id })
}

// sortedQueue returns the live entries, first served first.
func (s *State) sortedQueue(now time.Time) []QueueEntry {
	q := slices.Clone(s.Queue)
	slices.SortStableFunc(q, func(a, b QueueEntry) int {
		switch {
		case queueAhead(&a, &b, now):
			return -1
		case queueAhead(&b, &a, now):
			return 1
		}
		return 0
	})
	return q
}

// keptForQueue returns the nodes of idle that the requests ranked ahead of
// t keep, each with the reason (naming the request and its owner).
func (s *State) keptForQueue(t *queueTicket, idle []Node, now time.Time) map[string]string {
	me := QueueEntry{ID: t.id, Priority: t.priority, Since: now}
	if e := s.queueEntry(t.id); e != nil {
		me = *e
	}
	kept := map[string]string{}
	var avail []Node // a copy of idle, made once a request is ahead
	for _, e := range s.sortedQueue(now) {
		if e.ID == t.id || !queueAhead(&e, &me, now) {
			break
		}
		if avail == nil {
			avail = slices.Clone(idle)
		}
		reqs, err := e.tagRequests()
		if err != nil {
			continue
		}
		why := fmt.Sprintf("kept for request %s of %s, waiting since %s", e.ID[:8], e.Owner, e.Since.UTC().Format(time.RFC3339))
		take := func(name string) {
			kept[name] = why
			avail = slices.DeleteFunc(avail, func(n Node) bool { return n.Name == name })
		}
		cands := candidatesOf(avail)
		if choice, err := Assign(reqs, cands); err == nil {
			for _, n := range choice {
				take(n)
			}
			continue
		}
		// It does not fit yet: it keeps what it could use, so the nodes
		// add up for it as partitions end.
		n := 0
		for _, c := range cands {
			if n == len(reqs) {
				break
			}
			if usable(reqs, c) {
				take(c.Name)
				n++
			}
		}
	}
	return kept
}

func usable(reqs []TagRequest, c Candidate) bool {
	for _, r := range reqs {
		if ok, err := MatchAll(r.Selectors, c.Props); err == nil && ok {
			return true
		}
	}
	return false
}

// Waiting is what a waiting Allocate reports (AllocRequest.OnWait).
type Waiting struct {
	// Position is 1 for the first request to be served.
	Position, Queued int
	Since            time.Time
	// Why names every node the request would take and who holds it.
	Why error
}

// QueueView is one waiting request as `vtcluster queue` shows it.
type QueueView struct {
	QueueEntry
	Position int `json:"position"`
	Rank     int `json:"rank"`
	// Fit lists, per tag, the registered nodes its selectors match.
	Fit map[string][]string `json:"fit"`
	// Holders says, for every node in Fit that is not idle, who has it.
	Holders map[string]string `json:"holders"`
}

// Queue returns the waiting requests in the order they will be served,
// each with the nodes that would fit it and who holds those nodes.
func Queue(ctx context.Context, st Store) ([]QueueView, error) {
	s, err := st.Load(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	s.pruneQueue(now)
	cands := candidatesOf(s.Nodes)
	var out []QueueView
	for i, e := range s.sortedQueue(now) {
		v := QueueView{QueueEntry: e, Position: i + 1, Rank: e.Rank(now), Fit: map[string][]string{}, Holders: map[string]string{}}
		reqs, err := e.tagRequests()
		if err != nil {
			return nil, err
		}
		for _, r := range reqs {
			fit := []string{}
			for _, c := range cands {
				if ok, err := MatchAll(r.Selectors, c.Props); err == nil && ok {
					fit = append(fit, c.Name)
					if why := s.heldBy(c.Name, now); why != "" {
						v.Holders[c.Name] = why
					}
				}
			}
			v.Fit[r.Tag] = fit
		}
		out = append(out, v)
	}
	return out, nil
}

// heldBy says who keeps node from being given out at now, "" if nobody.
func (s *State) heldBy(node string, now time.Time) string {
	if p := s.partitionOf(node); p != nil && p.Live(now) {
		return fmt.Sprintf("partition %s of %s", p.ID, p.Owner)
	}
	if why := s.unservable(node, now); why != "" {
		return why
	}
	return ""
}

// position returns t's place in the queue (1-based) and the queue length.
func (s *State) position(t *queueTicket, now time.Time) (int, int) {
	q := s.sortedQueue(now)
	for i, e := range q {
		if e.ID == t.id {
			return i + 1, len(q)
		}
	}
	return len(q) + 1, len(q) + 1
}

// leaveQueue removes t's entry when Allocate ends without a partition
// (timeout, cancel, a final error). It runs after ctx may have ended.
func leaveQueue(ctx context.Context, st Store, t *queueTicket) {
	if !t.queued {
		return
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = st.Update(WithFixedNodes(lctx), func(s *State) error {
		s.dequeue(t.id)
		return nil
	})
}

// reportWait tells req.OnWait why the request waits, when the last report
// (at reported) is ReportEvery old or there was none; it returns the time
// of the last report.
func (req *AllocRequest) reportWait(ctx context.Context, st Store, busy error, reported time.Time) time.Time {
	every := req.ReportEvery
	if every <= 0 {
		every = time.Minute
	}
	if req.OnWait == nil || (!reported.IsZero() && time.Since(reported) < every) {
		return reported
	}
	w := Waiting{Why: busy, Since: time.Now().UTC()}
	if s, err := st.Load(ctx); err == nil {
		now := time.Now().UTC()
		s.pruneQueue(now)
		w.Position, w.Queued = s.position(req.ticket, now)
		if e := s.queueEntry(req.ticket.id); e != nil {
			w.Since = e.Since
		}
	}
	req.OnWait(w)
	return time.Now()
}

// waitEnded is Allocate's error when ctx ends while it waits: a deadline
// (the caller's allocation timeout) says which nodes were busy and why,
// as ErrBusy does, so the caller can tell a lab too busy from a cancel.
func waitEnded(ctx context.Context, tags []string, busy error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && busy != nil {
		return fmt.Errorf("cluster: %w (allocation %w): %w", ErrBusy, ctx.Err(), busy)
	}
	return fmt.Errorf("cluster: allocate %s: %w", strings.Join(tags, " "), ctx.Err())
}
