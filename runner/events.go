package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Events is the one record of a test's life: what happened when, on which
// tag and node. The runner records allocation, hand-over, each step's
// start and exit, resource operations, node loss, every stage's setup and
// teardown and the timed parts inside them (timeSpan); other parts (VMs,
// synchronisation) record their own through the same Add and Begin, found
// with EventsFrom(ctx). A nil *Events records nothing, so callers never
// check. Two views are drawn from it: the timeline (events.json and
// timeline.html, record.go) and the stage breakdown (timing.json and the
// "timing:" line of debug.log, timing.go).
//
// It keeps the test's log lines too (Log), so that the timeline can show
// what was logged around a moment. Both are bounded: past the limits the
// oldest events and the middle of the log are dropped and counted.
type Events struct {
	mu     sync.Mutex
	start  time.Time
	events headTail[Event]
	logs   headTail[LogLine]
	// spans numbers the spans Begin opens, so that the end of each is
	// found exactly even when several of one name overlap.
	spans atomic.Uint64
}

// Event is one moment of a test, or one end of a span of time (Phase).
type Event struct {
	Time time.Time `json:"time"`
	// Tag and Node say where it happened; both empty for the controller
	// (the runner itself: allocation, body, teardown).
	Tag  string `json:"tag,omitempty"`
	Node string `json:"node,omitempty"`
	// Kind is an open set of names; the timeline colours the ones it
	// knows (the Kind* constants) and draws the others in grey.
	Kind string `json:"kind"`
	// Name tells events of one kind apart ("step 2", a VM's name, a
	// barrier's name); a begin and its end share Kind, Name and Tag.
	Name  string `json:"name"`
	Phase Phase  `json:"phase,omitempty"`
	// Detail is free text for the person reading the timeline.
	Detail   string   `json:"detail,omitempty"`
	Severity Severity `json:"severity"`
	// span ties a begin to its end (Begin); zero for moments.
	span uint64
}

// Phase says whether an event begins or ends a span; empty is a moment.
type Phase string

const (
	PhaseBegin Phase = "begin"
	PhaseEnd   Phase = "end"
)

// Severity is how the timeline marks an event: an error is the failing
// step, a lost node, a teardown that did not work.
type Severity string

const (
	SeverityInfo    Severity = "info"
	SeverityWarning Severity = "warning"
	SeverityError   Severity = "error"
)

// The kinds the runner records, and those the timeline expects from the
// VM and synchronisation code.
const (
	KindAllocation = "allocation"
	KindHandOver   = "hand-over"
	KindStep       = "step"
	KindBody       = "body"
	KindResource   = "resource"
	KindNodeLost   = "node-lost"
	KindTeardown   = "teardown"
	KindBundle     = "failure-bundle"
	KindHold       = "hold"
	KindResult     = "result"
	KindVM         = "vm"
	KindMigration  = "migration"
	KindSync       = "sync"
	// KindStage spans are the stage breakdown (timing.go): a stage's
	// setup ("partition") or a timed part inside one ("partition:
	// connect"). The timeline page does not draw them; timing.json shows
	// them.
	KindStage = "stage"
)

// Bounds of the record: a test that logs without end must not make the
// runner's memory or the timeline page grow without end.
const (
	maxEvents      = 20000
	maxDetailBytes = 4096
	maxLogLineLen  = 1000
	logHeadLines   = 1000
	logTailLines   = 5000
)

// NewEvents starts a record at now.
func NewEvents() *Events { return &Events{start: time.Now()} }

// Start is when the record began: when the test's run did.
func (e *Events) Start() time.Time {
	if e == nil {
		return time.Time{}
	}
	return e.start
}

// Add records ev. A zero Time is now and an empty Severity is info.
func (e *Events) Add(ev Event) {
	if e == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if ev.Severity == "" {
		ev.Severity = SeverityInfo
	}
	ev.Detail = cut(ev.Detail, maxDetailBytes)
	e.mu.Lock()
	e.events.add(ev, maxEvents/2, maxEvents/2)
	e.mu.Unlock()
}

// Begin records the start of a span and returns the function that records
// its end, with the end's severity and detail (use it once).
func (e *Events) Begin(ev Event) (end func(Severity, string)) {
	if e == nil {
		return func(Severity, string) {}
	}
	ev.Phase, ev.span = PhaseBegin, e.spans.Add(1)
	e.Add(ev)
	return func(sev Severity, detail string) {
		ev.Time, ev.Phase, ev.Severity, ev.Detail = time.Time{}, PhaseEnd, sev, detail
		e.Add(ev)
	}
}

// Log keeps one line of the test's log for the timeline; tag is empty
// for the runner's own lines.
func (e *Events) Log(tag, level, text string) {
	if e == nil {
		return
	}
	l := LogLine{Time: time.Now(), Tag: tag, Level: level, Text: cut(text, maxLogLineLen)}
	e.mu.Lock()
	e.logs.add(l, logHeadLines, logTailLines)
	e.mu.Unlock()
}

// LogLine is one log line in the record.
type LogLine struct {
	Time  time.Time `json:"time"`
	Tag   string    `json:"tag,omitempty"`
	Level string    `json:"level,omitempty"`
	Text  string    `json:"text"`
}

// headTail keeps the first headCap items (how the test began) and the
// last tailCap (how it ended), counting what fell in between.
type headTail[T any] struct {
	head, tail []T
	next       int // where the next tail item goes once the tail is full
	dropped    int
}

func (r *headTail[T]) add(x T, headCap, tailCap int) {
	switch {
	case len(r.head) < headCap:
		r.head = append(r.head, x)
	case len(r.tail) < tailCap:
		r.tail = append(r.tail, x)
	default:
		r.tail[r.next] = x
		r.next = (r.next + 1) % tailCap
		r.dropped++
	}
}

func (r *headTail[T]) items() []T {
	out := make([]T, 0, len(r.head)+len(r.tail))
	out = append(out, r.head...)
	out = append(out, r.tail[r.next:]...)
	return append(out, r.tail[:r.next]...)
}

// Record is the events.json of a test: what the timeline page shows.
type Record struct {
	Test      string        `json:"test"`
	Result    string        `json:"result,omitempty"`
	Reason    string        `json:"reason,omitempty"`
	Start     time.Time     `json:"start"`
	End       time.Time     `json:"end"`
	Partition string        `json:"partition,omitempty"`
	Nodes     []RecordNode  `json:"nodes"`
	Events    []Event       `json:"events"`
	Logs      []LogLine     `json:"logs"`
	Dropped   RecordDropped `json:"dropped"`
	// Files are paths relative to the test's results that the page links
	// to (debug.log, the failure bundle).
	Files []string `json:"files,omitempty"`
}

// RecordNode is one lane of the timeline.
type RecordNode struct {
	Tag     string `json:"tag"`
	Node    string `json:"node,omitempty"`
	Address string `json:"address,omitempty"`
}

// RecordDropped counts what the bounds left out.
type RecordDropped struct {
	Events   int `json:"events"`
	LogLines int `json:"log_lines"`
}

// Snapshot returns the record so far; the caller fills in the test's
// identity and outcome.
func (e *Events) Snapshot() Record {
	if e == nil {
		return Record{Nodes: []RecordNode{}, Events: []Event{}, Logs: []LogLine{}}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return Record{
		Start: e.start, End: time.Now(), Nodes: []RecordNode{},
		Events:  e.events.items(),
		Logs:    e.logs.items(),
		Dropped: RecordDropped{Events: e.events.dropped, LogLines: e.logs.dropped},
	}
}

// MarshalRecord encodes rec as events.json.
func MarshalRecord(rec Record) ([]byte, error) {
	data, err := json.MarshalIndent(rec, "", " ")
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return append(data, '\n'), nil
}

// cut shortens s to at most n bytes on a rune boundary, saying so.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " […]"
	i := n - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}

type eventsKey struct{}

// ContextWithEvents returns ctx carrying e, for code the runner calls
// (the cluster backend, VM and synchronisation helpers) to record into.
func ContextWithEvents(ctx context.Context, e *Events) context.Context {
	return context.WithValue(ctx, eventsKey{}, e)
}

// EventsFrom returns the test's record carried by ctx, or nil (which
// records nothing).
func EventsFrom(ctx context.Context) *Events {
	e, _ := ctx.Value(eventsKey{}).(*Events)
	return e
}
