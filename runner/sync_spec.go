package runner

// Synchronisation steps in spec files. Besides {"on", "run"} a step may be
//
//	{"barrier": "ready", "on": [...], "tags": [...]}
//	    the tags of "on" (default: all) arrive at barrier "ready" whose
//	    parties are "tags" (default: all); tags not in "on" arrive from
//	    their own processes (vtcluster sync barrier / lava-sync)
//	{"send": "port", "value": "5201", "on": "srv"}
//	    message "port" from tag srv (value may hold placeholders)
//	{"wait": "port", "on": "cli", "tags": ["srv"]}
//	    waits until one of "tags" (default: any) sent "port"; later argv
//	    may use it as {sync.port}, which also waits for it
//	{"lock": "db", "on": "a"}, {"unlock": "db", "on": "a"}
//	{"on": "srv", "run": [...], "background": true}
//	    starts the command and goes on; it is stopped when the test ends
//	{"together": {"srv": [STEP, ...], "cli": [STEP, ...]}}
//	    each tag's steps run in order, the tags at once; inside, "on" is
//	    the tag itself, and a barrier's parties default to the group's
//	    tags. A tag whose steps end (or fail) no longer counts as coming:
//	    peers waiting for it fail at once, naming it.

import (
	"fmt"
	"strings"

	"github.com/vtcluster/vtcluster/agent/py"
)

// SyncStep is the synchronisation part of a step; nil for a plain run
// step.
type SyncStep struct {
	// Kind is barrier, send, wait, lock, unlock, background or together.
	Kind string
	// Name is the barrier, message key or mutex.
	Name string
	// Value is what send sends (placeholders allowed).
	Value string
	// Tags are a barrier's parties or a wait's senders; nil: all.
	Tags []string
	// Together holds each tag's steps, in the test's tag order.
	Together []TogetherRole
}

// TogetherRole is one tag's steps in a together group.
type TogetherRole struct {
	Tag   string
	Steps []Step
}

// syncStepKeys are the step keys this file reads; spec.go's step loader
// hands them here, so a new kind is a new entry. Set in init: a together
// group reads its steps with the step loader, which reads this table.
var syncStepKeys map[string]func(l *specLoader, v *jsonValue, at string, t *Test, s *Step)

func init() {
	syncStepKeys = map[string]func(l *specLoader, v *jsonValue, at string, t *Test, s *Step){
		"barrier":    syncNameKey("barrier"),
		"send":       syncNameKey("send"),
		"wait":       syncNameKey("wait"),
		"lock":       syncNameKey("lock"),
		"unlock":     syncNameKey("unlock"),
		"value":      syncValueKey,
		"tags":       syncTagsKey,
		"background": syncBackgroundKey,
		"together":   syncTogetherKey,
	}
}

func syncStepOf(s *Step) *SyncStep {
	if s.Sync == nil {
		s.Sync = &SyncStep{}
	}
	return s.Sync
}

func syncSetKind(l *specLoader, at string, s *Step, kind string) {
	ss := syncStepOf(s)
	if ss.Kind != "" && ss.Kind != kind {
		l.errorf(at, "a step is one of barrier, send, wait, lock, unlock, together: this one is already a %s", ss.Kind)
		return
	}
	ss.Kind = kind
}

func syncNameKey(kind string) func(*specLoader, *jsonValue, string, *Test, *Step) {
	return func(l *specLoader, v *jsonValue, at string, _ *Test, s *Step) {
		syncSetKind(l, at, s, kind)
		if v.Kind != py.JSONString {
			l.errorf(at, "expected a name, got %s", v.Describe())
			return
		}
		if err := checkName(kind, v.Str); err != nil {
			l.errorf(at, "%v", err)
		}
		syncStepOf(s).Name = v.Str
	}
}

func syncValueKey(l *specLoader, v *jsonValue, at string, t *Test, s *Step) {
	if v.Kind != py.JSONString {
		l.errorf(at, "expected a string, got %s", v.Describe())
		return
	}
	if len(v.Str) > maxSyncValue {
		l.errorf(at, "value of %d bytes is above the %d allowed", len(v.Str), maxSyncValue)
	}
	if _, err := parsePlaceholders(v.Str, t.placeholderName); err != nil {
		l.errorf(at, "%v", err)
	}
	syncStepOf(s).Value = v.Str
}

func syncTagsKey(l *specLoader, v *jsonValue, at string, t *Test, s *Step) {
	syncStepOf(s).Tags = l.stepTargets(v, at, t)
}

func syncBackgroundKey(l *specLoader, v *jsonValue, at string, _ *Test, s *Step) {
	if v.Kind != py.JSONBool {
		l.errorf(at, "expected true or false, got %s", v.Describe())
		return
	}
	if v.Bool {
		syncSetKind(l, at, s, "background")
	}
}

func syncTogetherKey(l *specLoader, v *jsonValue, at string, t *Test, s *Step) {
	syncSetKind(l, at, s, "together")
	if l.inGroup {
		l.errorf(at, "together groups do not nest")
		return
	}
	if v.Kind != py.JSONObject || len(v.Members) == 0 {
		l.errorf(at, "expected an object of tag -> [steps], got %s", v.Describe())
		return
	}
	byTag := map[string][]Step{}
	for _, m := range v.Members {
		mat := jsonPath(at, m.Key)
		if !t.hasTag(m.Key) {
			l.errorf(mat, "unknown node tag %q (%s)", m.Key, t.nodeList())
			continue
		}
		if m.Value.Kind != py.JSONArray || len(m.Value.Elems) == 0 {
			l.errorf(mat, "expected a non-empty list of steps, got %s", m.Value.Describe())
			continue
		}
		var steps []Step
		l.inGroup = true
		for i, sv := range m.Value.Elems {
			st := l.step(sv, jsonPath(mat, i), t)
			if len(st.On) > 0 && (len(st.On) != 1 || st.On[0] != m.Key) {
				l.errorf(jsonPath(mat, i), "a step of tag %s runs on %s only: leave \"on\" out", m.Key, m.Key)
			}
			st.On = []string{m.Key}
			if st.Sync != nil && st.Sync.Kind == "barrier" && st.Sync.Tags == nil {
				st.Sync.Tags = groupTags(v, t)
			}
			steps = append(steps, st)
		}
		l.inGroup = false
		byTag[m.Key] = steps
	}
	ss := syncStepOf(s)
	for _, tag := range t.NodeTags() {
		if steps, ok := byTag[tag]; ok {
			ss.Together = append(ss.Together, TogetherRole{Tag: tag, Steps: steps})
		}
	}
}

// groupTags are the tags of a together group, in the test's order.
func groupTags(v *jsonValue, t *Test) []string {
	var out []string
	for _, tag := range t.NodeTags() {
		if v.Get(tag) != nil {
			out = append(out, tag)
		}
	}
	return out
}

// checkSyncStep finishes a step that has a sync part: which keys go with
// which kind, and the defaults of "on".
func (l *specLoader) checkSyncStep(v *jsonValue, p string, t *Test, s *Step) {
	ss := s.Sync
	has := func(k string) bool { return v.Get(k) != nil }
	switch ss.Kind {
	case "":
		l.errorf(p, "\"value\" and \"tags\" belong to a barrier, send or wait step")
		return
	case "background":
		if !has("run") {
			l.errorf(p, "\"background\" belongs to a step with \"run\"")
		}
		if !has("on") && !l.inGroup {
			l.errorf(p, "missing required key \"on\"")
		}
		return
	case "together":
		for _, k := range []string{"on", "run", "tags", "value", "parallel", "timeout"} {
			if has(k) {
				l.errorf(jsonPath(p, k), "a together step holds only \"together\"")
			}
		}
		return
	}
	if has("run") || has("parallel") {
		l.errorf(p, "a %s step does not run a command: leave out \"run\" and \"parallel\"", ss.Kind)
	}
	if has("value") != (ss.Kind == "send") {
		l.errorf(p, "\"value\" belongs to a send step, and a send step needs one")
	}
	if has("tags") && ss.Kind != "barrier" && ss.Kind != "wait" {
		l.errorf(p, "\"tags\" belongs to a barrier or wait step")
	}
	if len(s.On) == 0 && !l.inGroup {
		switch ss.Kind {
		case "barrier":
			s.On = t.NodeTags()
		default:
			l.errorf(p, "a %s step needs \"on\": the tag it acts for", ss.Kind)
		}
	}
	if len(s.On) > 1 && ss.Kind != "barrier" {
		l.errorf(p, "a %s step acts for one tag, got %s", ss.Kind, strings.Join(s.On, ", "))
	}
	if ss.Kind == "barrier" && ss.Tags != nil {
		for _, tag := range s.On {
			if !containsString(ss.Tags, tag) {
				l.errorf(p, "tag %s arrives at barrier %s but is not one of its \"tags\"", tag, py.Repr(ss.Name))
			}
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

const syncPlaceholder = "sync"

// describeSyncStep is how the log names a sync step.
func describeSyncStep(st Step) string {
	ss := st.Sync
	switch ss.Kind {
	case "together":
		var parts []string
		for _, r := range ss.Together {
			parts = append(parts, fmt.Sprintf("%s: %d steps", r.Tag, len(r.Steps)))
		}
		return "together (" + strings.Join(parts, ", ") + ")"
	case "background":
		return "background " + py.Repr(st.Run)
	}
	return fmt.Sprintf("%s %s", ss.Kind, py.Repr(ss.Name))
}
