package cluster

import (
	"fmt"
	"strings"
)

// TagRequest asks for one node, named Tag in the test, that satisfies all
// of Selectors.
type TagRequest struct {
	Tag       string
	Selectors []Selector
}

// Candidate is a node that may be chosen, with its properties.
type Candidate struct {
	Name  string
	Props map[string]any
}

// NoMatchError reasons.
const (
	ReasonNoNode = "no node matches"
	ReasonTaken  = "matching nodes are all taken by other tags"
)

// NoMatchError says why a tag got no node. With ReasonTaken, some node
// matches but not enough for every tag: if the candidates were only the
// idle nodes, waiting may help; ask Assign again with every node to know.
type NoMatchError struct {
	Tag       string
	Selectors string // the tag's selectors, as FormatSelectors writes them
	Reason    string // ReasonNoNode or ReasonTaken
	// CouldMatch lists the candidates matching the tag's selectors,
	// whatever other tags need; empty exactly when Reason is ReasonNoNode.
	CouldMatch []string
	// Rivals lists the other tags that need the nodes in CouldMatch.
	Rivals []string
}

func (e *NoMatchError) Error() string {
	// No "cluster:" prefix: Allocate, which the error leaves cluster
	// through, adds it once (see partition.go).
	msg := fmt.Sprintf("tag %q (selectors %s): %s", e.Tag, e.Selectors, e.Reason)
	if e.Reason == ReasonTaken {
		msg += fmt.Sprintf(" (could use %s; also wanted by tags %s)", strings.Join(e.CouldMatch, ", "), strings.Join(e.Rivals, ", "))
	}
	return msg
}

// Assignment of nodes to a test's tags: every tag gets a distinct node
// that satisfies its selectors, found for all tags at once (bipartite
// matching), so a tag with narrow selectors is not starved by a greedy
// first choice for another tag.
//
// Assign chooses a distinct candidate for every tag, or explains why it
// cannot. It solves the whole set at once (bipartite matching), so a tag
// with a narrow selector still gets its one suitable node when a tag with a
// broad selector could have taken it first. The answer is deterministic:
// the first tag gets the earliest candidate (in the given order) that
// still leaves a node for every later tag, then the second tag, and so on.
// The result maps tag to candidate name.
func Assign(reqs []TagRequest, cands []Candidate) (map[string]string, error) {
	if err := checkAssignInput(reqs, cands); err != nil {
		return nil, err
	}
	// Each tag needs only its first len(reqs) matching candidates: if a
	// tag holds a later one in some solution, one of its first len(reqs)
	// is free (the other tags hold at most len(reqs)-1), so it can move
	// there, and the first solution in tag, then candidate order, is
	// among those. So a lab of a thousand idle nodes costs a two-tag
	// request a few candidates, not a thousand. Only the explanation of a
	// failure needs every candidate.
	out, err := assign(reqs, cands, len(reqs))
	if err != nil {
		return assign(reqs, cands, 0)
	}
	return out, nil
}

// assign is Assign, looking at no more than limit matching candidates
// per tag (0: all of them).
func assign(reqs []TagRequest, cands []Candidate, limit int) (map[string]string, error) {
	// adj[t] lists, in candidate order, the candidates tag t accepts.
	adj := make([][]int, len(reqs))
	for t, r := range reqs {
		for c, cand := range cands {
			if limit > 0 && len(adj[t]) == limit {
				break
			}
			ok, err := MatchAll(r.Selectors, cand.Props)
			if err != nil {
				return nil, fmt.Errorf("cluster: tag %q: %w", r.Tag, err)
			}
			if ok {
				adj[t] = append(adj[t], c)
			}
		}
	}
	for t, r := range reqs {
		if len(adj[t]) == 0 {
			return nil, &NoMatchError{Tag: r.Tag, Selectors: FormatSelectors(r.Selectors), Reason: ReasonNoNode}
		}
	}
	m := newMatcher(adj, len(cands))
	for t := range reqs {
		if !m.augment(t) {
			return nil, takenError(reqs, cands, adj, m, t)
		}
	}
	// A perfect matching exists; now find the first one in tag, then
	// candidate order, keeping each choice only if the rest stays solvable.
	used := make([]bool, len(cands))
	out := make(map[string]string, len(reqs))
	for t, r := range reqs {
		for _, c := range adj[t] {
			if used[c] {
				continue
			}
			used[c] = true
			if solvable(adj, t+1, used) {
				out[r.Tag] = cands[c].Name
				break
			}
			used[c] = false
		}
	}
	return out, nil
}

func checkAssignInput(reqs []TagRequest, cands []Candidate) error {
	tags := map[string]bool{}
	for i, r := range reqs {
		if r.Tag == "" {
			return fmt.Errorf("cluster: assign: tag request %d has an empty tag", i)
		}
		if tags[r.Tag] {
			return fmt.Errorf("cluster: assign: tag %q is requested twice", r.Tag)
		}
		tags[r.Tag] = true
	}
	names := make(map[string]struct{}, len(cands))
	for i, c := range cands {
		if c.Name == "" {
			return fmt.Errorf("cluster: assign: candidate %d has an empty name", i)
		}
		if _, dup := names[c.Name]; dup {
			return fmt.Errorf("cluster: assign: candidate %q is listed twice", c.Name)
		}
		names[c.Name] = struct{}{}
	}
	return nil
}

// takenError describes tag t, for which no augmenting path exists: the
// candidates its search visited are held by the rival tags.
func takenError(reqs []TagRequest, cands []Candidate, adj [][]int, m *matcher, t int) error {
	e := &NoMatchError{Tag: reqs[t].Tag, Selectors: FormatSelectors(reqs[t].Selectors), Reason: ReasonTaken}
	for _, c := range adj[t] {
		e.CouldMatch = append(e.CouldMatch, cands[c].Name)
	}
	rival := make([]bool, len(reqs))
	for c, seen := range m.seen {
		if seen && m.owner[c] >= 0 {
			rival[m.owner[c]] = true
		}
	}
	for i, r := range rival {
		if r {
			e.Rivals = append(e.Rivals, reqs[i].Tag)
		}
	}
	return e
}

// matcher finds augmenting paths (Kuhn's algorithm); owner[c] is the tag
// holding candidate c, -1 when free, -2 when excluded.
type matcher struct {
	adj   [][]int
	owner []int
	seen  []bool
}

func newMatcher(adj [][]int, ncand int) *matcher {
	m := &matcher{adj: adj, owner: make([]int, ncand), seen: make([]bool, ncand)}
	for c := range m.owner {
		m.owner[c] = -1
	}
	return m
}

// augment tries to give tag t a candidate, moving other tags along an
// alternating path if needed. seen is left set for takenError.
func (m *matcher) augment(t int) bool {
	clear(m.seen)
	return m.try(t)
}

func (m *matcher) try(t int) bool {
	for _, c := range m.adj[t] {
		if m.seen[c] || m.owner[c] == -2 {
			continue
		}
		m.seen[c] = true
		if m.owner[c] == -1 || m.try(m.owner[c]) {
			m.owner[c] = t
			return true
		}
	}
	return false
}

// solvable reports whether tags from..end can all get a candidate not
// marked used.
func solvable(adj [][]int, from int, used []bool) bool {
	m := newMatcher(adj, len(used))
	for c, u := range used {
		if u {
			m.owner[c] = -2
		}
	}
	for t := from; t < len(adj); t++ {
		if !m.augment(t) {
			return false
		}
	}
	return true
}

// SelectNode returns the first candidate, in the given order, that matches
// every selector (any candidate when sels is empty). Upstream's
// select_node pops the last candidate when there are no selectors and
// mutates the caller's list; this does neither.
func SelectNode(cands []Candidate, sels []Selector) (Candidate, bool, error) {
	for _, c := range cands {
		ok, err := MatchAll(sels, c.Props)
		if err != nil {
			return Candidate{}, false, err
		}
		if ok {
			return c, true, nil
		}
	}
	return Candidate{}, false, nil
}
