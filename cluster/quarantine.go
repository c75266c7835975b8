package cluster

// Node health: nodes that keep failing to serve are taken out of
// rotation, and nodes another controller holds are skipped until their
// hold may have ended. Both live in State.Health, one entry per node that
// has something to say, so every process and controller sharing the store
// sees them.
//
// A failure to serve is an infrastructure failure that the node caused:
// its agent would not start, it was lost during a test, or its hand-over
// failed. FailuresInARow counts them; a test that ran on the node without
// one resets it (RecordServed). At the configured count the node is
// quarantined with the last reason: Allocate gives it to no test until
// `vtcluster node resume NAME` (ResumeNode).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// DefaultQuarantineAfter is how many failures in a row quarantine a node
// when the caller does not say.
const DefaultQuarantineAfter = 3

// NodeHealth is the health record of one node.
type NodeHealth struct {
	Node string `json:"node"`
	// FailuresInARow counts infrastructure failures since the node last
	// served a test; LastFailure and LastFailureAt describe the last one.
	FailuresInARow int       `json:"failures_in_a_row,omitempty"`
	LastFailure    string    `json:"last_failure,omitempty"`
	LastFailureAt  time.Time `json:"last_failure_at,omitzero"`
	// Quarantined nodes are given to no test until resumed.
	Quarantined      bool      `json:"quarantined,omitempty"`
	QuarantineReason string    `json:"quarantine_reason,omitempty"`
	QuarantinedAt    time.Time `json:"quarantined_at,omitzero"`
	// TakenBy is another controller's test that the node's agent said
	// holds it, seen at a refused hand-over; the node is skipped until
	// TakenUntil, then tried again.
	TakenBy    *NodeHolder `json:"taken_by,omitempty"`
	TakenUntil time.Time   `json:"taken_until,omitzero"`
}

// UnavailableError says why a node that could serve a request is not
// given to it although no partition of this state holds it.
type UnavailableError struct {
	Node, Reason string
}

func (e *UnavailableError) Error() string { return fmt.Sprintf("node %q is %s", e.Node, e.Reason) }

// Health returns the health record of node, nil if it has none.
func (s *State) Health(node string) *NodeHealth {
	for i := range s.NodeHealth {
		if s.NodeHealth[i].Node == node {
			return &s.NodeHealth[i]
		}
	}
	return nil
}

func (s *State) healthFor(node string) *NodeHealth {
	if h := s.Health(node); h != nil {
		return h
	}
	s.NodeHealth = append(s.NodeHealth, NodeHealth{Node: node})
	return &s.NodeHealth[len(s.NodeHealth)-1]
}

// tidyHealth drops records with nothing left to say and those of nodes no
// longer registered.
func (s *State) tidyHealth(now time.Time) {
	s.NodeHealth = slices.DeleteFunc(s.NodeHealth, func(h NodeHealth) bool {
		if h.TakenBy != nil && !now.Before(h.TakenUntil) {
			h.TakenBy, h.TakenUntil = nil, time.Time{}
		}
		return s.Node(h.Node) == nil || (h.FailuresInARow == 0 && !h.Quarantined && h.TakenBy == nil)
	})
	for i := range s.NodeHealth {
		if h := &s.NodeHealth[i]; h.TakenBy != nil && !now.Before(h.TakenUntil) {
			h.TakenBy, h.TakenUntil = nil, time.Time{}
		}
	}
}

// unservable says why node may not be given out at now ("" if it may).
func (s *State) unservable(node string, now time.Time) string {
	h := s.Health(node)
	switch {
	case h == nil:
		return ""
	case h.Quarantined:
		return "quarantined: " + h.QuarantineReason + " (vtcluster node resume " + node + " returns it)"
	case h.TakenBy != nil && now.Before(h.TakenUntil):
		return fmt.Sprintf("held by controller host %s (partition %s of %s), outside this state", h.TakenBy.Owner.Host, h.TakenBy.ID, h.TakenBy.Owner)
	}
	return ""
}

// servable returns the nodes of idle that may be given out at now.
func (s *State) servable(idle []Node, now time.Time) []Node {
	return slices.DeleteFunc(idle, func(n Node) bool { return s.unservable(n.Name, now) != "" })
}

// RecordFailure counts an infrastructure failure of node (reason says
// what failed) and quarantines it once it failed after times in a row
// (DefaultQuarantineAfter when zero; negative never quarantines). It
// returns whether the node is quarantined now. An unknown node is
// ErrNodeNotFound.
func RecordFailure(ctx context.Context, st Store, node, reason string, after int) (bool, error) {
	if after == 0 {
		after = DefaultQuarantineAfter
	}
	var quarantined bool
	err := st.Update(WithFixedNodes(ctx), func(s *State) error {
		quarantined = false
		if s.Node(node) == nil {
			return fmt.Errorf("cluster: node %q: %w", node, ErrNodeNotFound)
		}
		now := time.Now().UTC()
		h := s.healthFor(node)
		h.FailuresInARow++
		h.LastFailure, h.LastFailureAt = reason, now
		if after > 0 && h.FailuresInARow >= after && !h.Quarantined {
			h.Quarantined, h.QuarantinedAt = true, now
			h.QuarantineReason = fmt.Sprintf("failed to serve %d times in a row, last: %s", h.FailuresInARow, reason)
		}
		quarantined = h.Quarantined
		return nil
	})
	return quarantined, err
}

// RecordServed resets the failure count of nodes that served a test.
// Nodes without failures cost no write.
func RecordServed(ctx context.Context, st Store, nodes ...string) error {
	return st.Update(WithFixedNodes(ctx), func(s *State) error {
		for _, n := range nodes {
			if h := s.Health(n); h != nil && h.FailuresInARow > 0 && !h.Quarantined {
				h.FailuresInARow = 0
			}
		}
		s.tidyHealth(time.Now().UTC())
		return nil
	})
}

// QuarantineNode takes node out of rotation by hand, with reason.
func QuarantineNode(ctx context.Context, st Store, node, reason string) error {
	if reason == "" {
		return errors.New("cluster: quarantine: a reason is required, for whoever finds the node out of rotation")
	}
	return st.Update(WithFixedNodes(ctx), func(s *State) error {
		if s.Node(node) == nil {
			return fmt.Errorf("cluster: node %q: %w", node, ErrNodeNotFound)
		}
		h := s.healthFor(node)
		h.Quarantined, h.QuarantinedAt, h.QuarantineReason = true, time.Now().UTC(), reason
		return nil
	})
}

// ResumeNode returns a quarantined node to rotation and forgets its
// failures. It reports whether the node was quarantined.
func ResumeNode(ctx context.Context, st Store, node string) (bool, error) {
	var was bool
	err := st.Update(WithFixedNodes(ctx), func(s *State) error {
		was = false
		if s.Node(node) == nil {
			return fmt.Errorf("cluster: node %q: %w", node, ErrNodeNotFound)
		}
		if h := s.Health(node); h != nil {
			was = h.Quarantined
			h.Quarantined, h.QuarantineReason, h.QuarantinedAt = false, "", time.Time{}
			h.FailuresInARow, h.LastFailure, h.LastFailureAt = 0, "", time.Time{}
		}
		s.tidyHealth(time.Now().UTC())
		return nil
	})
	return was, err
}

// NoteTaken records that node's agent refused a hand-over because h holds
// it, so that no process of this state tries it again before until.
func NoteTaken(ctx context.Context, st Store, node string, h NodeHolder, until time.Time) error {
	return st.Update(WithFixedNodes(ctx), func(s *State) error {
		if s.Node(node) == nil {
			return nil // unregistered meanwhile: nothing to skip
		}
		r := s.healthFor(node)
		r.TakenBy, r.TakenUntil = &h, until.UTC()
		return nil
	})
}
