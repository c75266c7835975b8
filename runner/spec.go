package runner

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/cluster"
)

// A multihost test spec file is JSON, either {"tests": [TEST, ...]} or a
// single TEST object:
//
//	{
//	  "name": "migrate",                       // unique in the file; no ':'
//	  "description": "free text",              // optional
//	  "nodes": {"src": "[{'key': 'arch', 'operator': '==', 'values': 'x86_64'}]",
//	            "dst": [{"key": "kvm", "operator": "==", "values": true}],
//	            "obs": null},                  // selectors; null or "" = any node
//	  "params": {"nodes": "src dst", "node_selectors_src": "..."},
//	                                           // upstream's spelling of "nodes"
//	  "resources": [RESOURCE, ...],            // volumes, tap ports: see resources.go
//	  "body": {
//	    "command": ["./check.py", "--fast"],   // runs on the controller
//	    "env": {"K": "V"},
//	    "steps": [{"on": "src" | ["src", "dst"] | "*",
//	               "run": ["ping", "-c1", "{dst.address}"],
//	               "parallel": false, "timeout": 30}]
//	  },
//	  "timeout": 600,                          // seconds, whole body
//	  "tags": ["net", "arch:x86_64"] or {"net": null, "arch": ["x86_64"]},
//	  "collect": {"src": ["/var/log/messages"]}
//	}
//
// Steps run first, in order, then the command. A command path with a slash
// is relative to the spec file's directory; a bare name is looked up in
// PATH; the command runs with the spec file's directory as working
// directory. Step argv elements may hold placeholders {tag.address},
// {tag.name}, {tag.hostname} or {tag.<property>}, replaced inside the
// element (never through a shell); "{{" and "}}" stand for literal braces.
// Steps may also synchronise the tags (barrier, send/wait with {sync.KEY},
// lock/unlock, background, together): see sync_spec.go.

// SpecFile is a loaded spec file.
type SpecFile struct {
	// Path is the file as given to LoadSpecFile.
	Path string
	// Dir is the absolute directory of the file; body commands are
	// resolved and run there.
	Dir   string
	Tests []*Test
}

// Test is one multihost test.
type Test struct {
	Name        string
	Description string
	// Nodes are the roles the test needs, in file order.
	Nodes []NodeSpec
	Body  Body
	// ResultFile, set for Python class tests (pyclass.go), names the file
	// in the output directory where the body reports its own status.
	ResultFile string
	// Timeout bounds the body (steps and command); zero means none.
	Timeout time.Duration
	// Tags are Avocado tags: name -> values (nil for a tag without
	// values).
	Tags map[string][]string
	// Collect lists remote paths to fetch from each tag's node after the
	// body, into <output_dir>/cluster/<tag>/.
	Collect map[string][]string
	// Resources are the volumes and ports the test uses (see
	// ResourceSpec); the runner acquires them before the body and
	// removes them after.
	Resources []ResourceSpec
	// VMs are the QEMU guests the test runs on its nodes (vms.go).
	VMs []VMSpec
}

// NodeSpec is one role of a test.
type NodeSpec struct {
	Tag string
	// Selectors is the selector list as written: upstream's Python-literal
	// syntax or JSON text (what cluster.ParseSelectors reads); "" selects
	// any node.
	Selectors string
}

// Body is what the test runs.
type Body struct {
	// Command is the controller-side argv; empty when the test only has
	// steps.
	Command []string
	Env     map[string]string
	Steps   []Step
}

// Step runs one argv on one or more nodes.
type Step struct {
	// On lists the tags to run on, in the test's node order.
	On  []string
	Run []string
	// Parallel runs on all nodes of On at once instead of one by one.
	Parallel bool
	// Timeout bounds the step on each node; zero means none (the test's
	// timeout still applies).
	Timeout time.Duration
	// Sync, when set, makes this a synchronisation step (sync_spec.go).
	Sync *SyncStep
	// VM, when set, makes this a step on a VM (vmsteps.go); On and Run
	// are then empty.
	VM *VMStep
}

// Identifier is how Avocado shows the test: "<file>:<name>".
func (f *SpecFile) Identifier(t *Test) string { return f.Path + ":" + t.Name }

// Test returns the test called name. An empty name selects the only test
// of a single-test file.
func (f *SpecFile) Test(name string) (*Test, error) {
	if name == "" {
		if len(f.Tests) == 1 {
			return f.Tests[0], nil
		}
		return nil, fmt.Errorf("runner: spec %s holds %d tests; name one (keyword argument test=NAME)", f.Path, len(f.Tests))
	}
	for _, t := range f.Tests {
		if t.Name == name {
			return t, nil
		}
	}
	names := make([]string, len(f.Tests))
	for i, t := range f.Tests {
		names[i] = t.Name
	}
	return nil, fmt.Errorf("runner: spec %s: no test named %q (have: %s)", f.Path, name, strings.Join(names, ", "))
}

// specError is one problem in a spec file.
type specError struct {
	File string
	// Path is the JSON path of the offending value, e.g.
	// "tests[1].nodes.src"; empty for the file as a whole.
	Path string
	// Line and Column (characters, 1-based) place the offending value;
	// 0 when the error is about the file as a whole.
	Line, Column int
	Msg          string
}

// Error places the problem in the file; it names no package, since the
// file is what the user has to fix (and a list of them reads as one line
// per problem).
func (e *specError) Error() string {
	return "spec " + py.Locate(e.File, e.Line, e.Column, e.Path, e.Msg)
}

// maxSpecErrors keeps the report of a badly broken file readable.
const maxSpecErrors = 20

// maxSpecSize refuses files that cannot be a spec.
const maxSpecSize = 16 << 20

// LoadSpecFile reads and validates a spec file. Every problem found is
// returned, joined, as *specError values (errors.As finds the first).
func LoadSpecFile(path string) (*SpecFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, &specError{File: path, Msg: unwrapPathError(err)}
	}
	if !st.Mode().IsRegular() {
		return nil, &specError{File: path, Msg: "not a regular file"}
	}
	if st.Size() > maxSpecSize {
		return nil, &specError{File: path, Msg: fmt.Sprintf("file is larger than %d bytes", maxSpecSize)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &specError{File: path, Msg: unwrapPathError(err)}
	}
	return parseSpec(path, data)
}

func unwrapPathError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// parseSpec validates data as the spec file path (path is used for error
// messages and to resolve body commands).
func parseSpec(path string, data []byte) (*SpecFile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &specError{File: path, Msg: err.Error()}
	}
	l := &specLoader{file: path, data: data, byPath: map[string]*jsonValue{}}
	root, err := parseJSONTree(data)
	if err != nil {
		var te *py.TreeError
		if errors.As(err, &te) {
			return nil, &specError{File: path, Path: te.Path, Line: te.Line, Column: te.Column, Msg: te.Msg}
		}
		return nil, &specError{File: path, Msg: err.Error()}
	}
	l.index(root)
	f := &SpecFile{Path: path, Dir: filepath.Dir(abs)}
	switch {
	case root.Kind != py.JSONObject:
		l.errorf("", "expected an object with \"tests\" or a single test object, got %s", root.Describe())
	case root.Get("tests") != nil:
		for _, m := range root.Members {
			if m.Key != "tests" {
				l.unknownKey(m, jsonPath("", m.Key), "a file with \"tests\" has nothing else")
			}
		}
		tests := root.Get("tests")
		if tests.Kind != py.JSONArray {
			l.errorf("tests", "expected a list of tests, got %s", tests.Describe())
			break
		}
		if len(tests.Elems) == 0 {
			l.errorf("tests", "no tests")
		}
		for i, tv := range tests.Elems {
			if t := l.test(tv, jsonPath("tests", i)); t != nil {
				f.Tests = append(f.Tests, t)
			}
		}
	default:
		if t := l.test(root, ""); t != nil {
			f.Tests = append(f.Tests, t)
		}
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	seen := map[string]int{}
	for i, t := range f.Tests {
		if j, dup := seen[t.Name]; dup {
			l.errorf(jsonPath(jsonPath("tests", i), "name"), "duplicate test name %q (also tests[%d])", t.Name, j)
		}
		seen[t.Name] = i
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return f, nil
}

type specLoader struct {
	file   string
	data   []byte
	byPath map[string]*jsonValue // by path, to place errors that name one
	errs   []error
	// inGroup is set while the steps of a together group are read.
	inGroup bool
}

func (l *specLoader) index(v *jsonValue) {
	l.byPath[v.Path] = v
	for _, e := range v.Elems {
		l.index(e)
	}
	for _, m := range v.Members {
		l.index(m.Value)
	}
}

func (l *specLoader) errorf(path, format string, args ...any) {
	if len(l.errs) == maxSpecErrors {
		l.errs = append(l.errs, &specError{File: l.file, Msg: "too many errors; stopping"})
	}
	if len(l.errs) > maxSpecErrors {
		return
	}
	e := &specError{File: l.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n := l.byPath[path]; n != nil && path != "" {
		e.Line, e.Column = py.LineCol(l.data, n.Start)
	}
	l.errs = append(l.errs, e)
}

// unknownKey reports key m as not allowed, located at the key itself
// (the value may be many lines down, or fine).
func (l *specLoader) unknownKey(m py.Member, path, allowed string) {
	n := len(l.errs)
	l.errorf(path, "unknown key (%s)", allowed)
	if len(l.errs) > n {
		e := l.errs[len(l.errs)-1].(*specError)
		e.Line, e.Column = py.LineCol(l.data, m.Start)
	}
}

// fields are the known keys of a spec object, each with the reader of
// its value (given the value's path, for errors). A nil reader accepts
// the key and leaves its value to the caller, who reads it once the
// other keys are known.
type fields map[string]func(v *jsonValue, p string)

// object reads the members of object v (at path at) in the file's order,
// each with the reader of its key in fs; a key fs does not know is
// reported by unknown (atKey or atValue). A v that is not an object is
// reported as not being what (say "a test object"), and object returns
// false.
func (l *specLoader) object(v *jsonValue, at, what string, fs fields, unknown func(m py.Member, p string)) bool {
	if v.Kind != py.JSONObject {
		l.errorf(at, "expected %s, got %s", what, v.Describe())
		return false
	}
	for _, m := range v.Members {
		p := jsonPath(at, m.Key)
		read, known := fs[m.Key]
		switch {
		case !known:
			unknown(m, p)
		case read != nil:
			read(m.Value, p)
		}
	}
	return true
}

// atKey reports an unknown key at the key itself (see unknownKey), with
// the keys allowed.
func (l *specLoader) atKey(allowed string) func(py.Member, string) {
	return func(m py.Member, p string) { l.unknownKey(m, p, allowed) }
}

// atValue reports an unknown key at its value, as the VM loaders always
// have (testdata/multihost/bad/vms.err holds it so).
func (l *specLoader) atValue(allowed string) func(py.Member, string) {
	return func(_ py.Member, p string) { l.errorf(p, "unknown key (%s)", allowed) }
}

// set is the reader that stores what read makes of the value in *dst.
func set[T any](dst *T, read func(v *jsonValue, p string) T) func(*jsonValue, string) {
	return func(v *jsonValue, p string) { *dst = read(v, p) }
}

// keep is the reader that keeps the value itself, to be read later.
func keep(dst **jsonValue) func(*jsonValue, string) {
	return func(v *jsonValue, _ string) { *dst = v }
}

// tagRE: tags appear in placeholders ({tag.address}, so no dots), in
// environment variable names and in result directory names.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (l *specLoader) test(v *jsonValue, at string) *Test {
	nerr := len(l.errs)
	t := &Test{}
	var params, nodes, body *jsonValue
	var bodyPath string
	isObject := l.object(v, at, "a test object", fields{
		"name":        set(&t.Name, l.name),
		"description": set(&t.Description, l.str),
		"nodes":       keep(&nodes),
		"params":      keep(&params),
		"body":        func(v *jsonValue, p string) { body, bodyPath = v, p },
		"timeout":     set(&t.Timeout, l.seconds),
		"tags":        set(&t.Tags, l.tags),
		// checked below, once the tags are known
		"resources": nil, "vms": nil, "collect": nil,
	}, l.atKey("allowed: name, description, nodes, params, resources, vms, body, timeout, tags, collect"))
	if !isObject {
		return nil
	}
	if v.Get("name") == nil {
		l.errorf(at, "missing required key \"name\"")
	}
	switch {
	case nodes != nil && params != nil && params.Kind == py.JSONObject && params.Get("nodes") != nil:
		l.errorf(jsonPath(at, "params"), "\"nodes\" is given twice: use either nodes or params.nodes")
	case params != nil:
		t.Nodes = l.params(params, jsonPath(at, "params"))
	case nodes != nil:
		t.Nodes = l.nodes(nodes, jsonPath(at, "nodes"))
	}
	if rv := v.Get("resources"); rv != nil {
		t.Resources = l.resources(rv, jsonPath(at, "resources"), t)
	}
	if v.Get("vms") != nil || params != nil {
		t.VMs = l.vms(v.Get("vms"), jsonPath(at, "vms"), params, jsonPath(at, "params"), t, l.dir())
	}
	if body == nil {
		l.errorf(at, "missing required key \"body\"")
	} else {
		t.Body = l.body(body, bodyPath, t)
	}
	if c := v.Get("collect"); c != nil {
		t.Collect = l.collect(c, jsonPath(at, "collect"), t)
	}
	if len(l.errs) > nerr {
		return nil
	}
	return t
}

func (l *specLoader) str(v *jsonValue, p string) string {
	if v.Kind != py.JSONString {
		l.errorf(p, "expected a string, got %s", v.Describe())
		return ""
	}
	return v.Str
}

func (l *specLoader) name(v *jsonValue, p string) string {
	s := l.str(v, p)
	if v.Kind != py.JSONString {
		return ""
	}
	switch {
	case strings.TrimSpace(s) == "":
		l.errorf(p, "empty test name")
	case strings.Contains(s, ":"):
		l.errorf(p, "test name %q contains ':' (the test is shown as <file>:<name>)", s)
	case len(s) > 200:
		l.errorf(p, "test name longer than 200 characters")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		l.errorf(p, "test name %q contains control characters", s)
	}
	return s
}

func (l *specLoader) seconds(v *jsonValue, p string) time.Duration {
	if v.Kind == py.JSONNull {
		return 0
	}
	if v.Kind != py.JSONNumber {
		l.errorf(p, "expected a number of seconds, got %s", v.Describe())
		return 0
	}
	f, err := strconv.ParseFloat(v.Num.String(), 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || f > 30*24*3600 {
		l.errorf(p, "expected a positive number of seconds up to 30 days, got %s", v.Num)
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// tags reads Avocado tags: a list of "name" or "name:value" strings (as
// in :avocado: tags=...), or an object name -> null | [values].
func (l *specLoader) tags(v *jsonValue, p string) map[string][]string {
	out := map[string][]string{}
	add := func(name, value, at string) {
		if name == "" || strings.ContainsAny(name, " ,") {
			l.errorf(at, "invalid tag name %q", name)
			return
		}
		if _, ok := out[name]; !ok {
			out[name] = nil
		}
		if value != "" {
			out[name] = append(out[name], value)
		}
	}
	switch v.Kind {
	case py.JSONArray:
		for i, e := range v.Elems {
			at := jsonPath(p, i)
			if e.Kind != py.JSONString {
				l.errorf(at, "expected a string, got %s", e.Describe())
				continue
			}
			name, value, _ := strings.Cut(e.Str, ":")
			add(name, value, at)
		}
	case py.JSONObject:
		for _, m := range v.Members {
			at := jsonPath(p, m.Key)
			add(m.Key, "", at)
			switch m.Value.Kind {
			case py.JSONNull:
			case py.JSONArray:
				for i, e := range m.Value.Elems {
					if e.Kind != py.JSONString || e.Str == "" {
						l.errorf(jsonPath(at, i), "expected a non-empty string, got %s", e.Describe())
						continue
					}
					add(m.Key, e.Str, at)
				}
			default:
				l.errorf(at, "expected null or a list of values, got %s", m.Value.Describe())
			}
		}
	default:
		l.errorf(p, "expected a list of tags or an object, got %s", v.Describe())
	}
	return out
}

func (l *specLoader) nodes(v *jsonValue, p string) []NodeSpec {
	if v.Kind != py.JSONObject {
		l.errorf(p, "expected an object of tag -> selectors, got %s", v.Describe())
		return nil
	}
	var out []NodeSpec
	envNames := map[string]string{}
	for _, m := range v.Members {
		at := jsonPath(p, m.Key)
		if !l.tag(m.Key, at, envNames) {
			continue
		}
		ns := NodeSpec{Tag: m.Key}
		switch m.Value.Kind {
		case py.JSONNull:
		case py.JSONString:
			ns.Selectors = strings.TrimSpace(m.Value.Str)
		case py.JSONArray:
			sel, err := compact(m.Value)
			if err != nil {
				l.errorf(at, "%v", err)
				continue
			}
			ns.Selectors = sel
		default:
			l.errorf(at, "expected selectors as a string, a list or null, got %s", m.Value.Describe())
			continue
		}
		l.selectors(ns.Selectors, at)
		out = append(out, ns)
	}
	return out
}

func (l *specLoader) tag(tag, at string, envNames map[string]string) bool {
	if !tagRE.MatchString(tag) {
		l.errorf(at, "invalid node tag %q: use letters, digits, '_' and '-' (at most 64)", tag)
		return false
	}
	env := envTag(tag)
	if other, dup := envNames[env]; dup {
		l.errorf(at, "node tags %q and %q both become VTCLUSTER_NODE_%s_* in the environment", other, tag, env)
		return false
	}
	envNames[env] = tag
	return true
}

// selectors checks a selector list with the cluster's parser, so a typo
// fails when the file is listed, not when a test is about to run.
func (l *specLoader) selectors(s, at string) {
	if s == "" {
		return
	}
	if _, err := cluster.ParseSelectors(s); err != nil {
		l.errorf(at, "%s", err)
	}
}

// params maps upstream's Cartesian parameters: "nodes" is a
// space-separated tag list and "node_selectors_<tag>" the tag's
// selectors.
func (l *specLoader) params(v *jsonValue, p string) []NodeSpec {
	if v.Kind != py.JSONObject {
		l.errorf(p, "expected an object, got %s", v.Describe())
		return nil
	}
	nv := v.Get("nodes")
	var out []NodeSpec
	envNames := map[string]string{}
	known := map[string]bool{}
	if nv != nil {
		at := jsonPath(p, "nodes")
		if nv.Kind != py.JSONString {
			l.errorf(at, "expected a space-separated string of tags, got %s", nv.Describe())
		} else {
			for _, tag := range strings.Fields(nv.Str) {
				if known[tag] {
					l.errorf(at, "tag %q listed twice", tag)
					continue
				}
				if l.tag(tag, at, envNames) {
					known[tag] = true
					out = append(out, NodeSpec{Tag: tag})
				}
			}
		}
	}
	for _, m := range v.Members {
		at := jsonPath(p, m.Key)
		if m.Key == "nodes" || isVMParam(m.Key) {
			continue
		}
		tag, ok := strings.CutPrefix(m.Key, "node_selectors_")
		if !ok {
			l.errorf(at, "unsupported parameter: only \"nodes\", \"node_selectors_<tag>\", \"vms\", \"vm_node_<vm>\" and \"mig_dest_node_<vm>\" are understood")
			continue
		}
		if !known[tag] {
			l.errorf(at, "tag %q is not in params.nodes", tag)
			continue
		}
		if m.Value.Kind != py.JSONString {
			l.errorf(at, "expected a selectors string, got %s", m.Value.Describe())
			continue
		}
		for i := range out {
			if out[i].Tag == tag {
				out[i].Selectors = strings.TrimSpace(m.Value.Str)
				l.selectors(out[i].Selectors, at)
			}
		}
	}
	return out
}

func (t *Test) hasTag(tag string) bool {
	for _, n := range t.Nodes {
		if n.Tag == tag {
			return true
		}
	}
	return false
}

func (t *Test) nodeList() string {
	if len(t.Nodes) == 0 {
		return "the test has no nodes"
	}
	return "test nodes: " + strings.Join(t.NodeTags(), ", ")
}

// NodeTags returns the node tags in order.
func (t *Test) NodeTags() []string {
	out := make([]string, len(t.Nodes))
	for i, n := range t.Nodes {
		out[i] = n.Tag
	}
	return out
}

func (l *specLoader) body(v *jsonValue, p string, t *Test) Body {
	var b Body
	isObject := l.object(v, p, "an object with \"command\" and/or \"steps\"", fields{
		"command": set(&b.Command, l.argv),
		"env":     set(&b.Env, l.env),
		"steps": func(v *jsonValue, at string) {
			if v.Kind != py.JSONArray {
				l.errorf(at, "expected a list of steps, got %s", v.Describe())
				return
			}
			for i, sv := range v.Elems {
				b.Steps = append(b.Steps, l.step(sv, jsonPath(at, i), t))
			}
		},
	}, l.atKey("allowed: command, env, steps"))
	if !isObject {
		return b
	}
	if len(b.Command) == 0 && len(b.Steps) == 0 {
		l.errorf(p, "nothing to run: give a \"command\" or \"steps\"")
	}
	return b
}

func (l *specLoader) argv(v *jsonValue, p string) []string {
	if v.Kind != py.JSONArray || len(v.Elems) == 0 {
		l.errorf(p, "expected a non-empty list of strings (an argv, never a shell string), got %s", v.Describe())
		return nil
	}
	out := make([]string, 0, len(v.Elems))
	for i, e := range v.Elems {
		if e.Kind != py.JSONString {
			l.errorf(jsonPath(p, i), "expected a string, got %s", e.Describe())
			continue
		}
		if strings.IndexByte(e.Str, 0) >= 0 {
			l.errorf(jsonPath(p, i), "contains a NUL byte")
			continue
		}
		out = append(out, e.Str)
	}
	if len(out) > 0 && out[0] == "" {
		l.errorf(jsonPath(p, 0), "empty program name")
	}
	return out
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (l *specLoader) env(v *jsonValue, p string) map[string]string {
	if v.Kind != py.JSONObject {
		l.errorf(p, "expected an object of NAME -> string, got %s", v.Describe())
		return nil
	}
	out := map[string]string{}
	for _, m := range v.Members {
		at := jsonPath(p, m.Key)
		switch {
		case !envNameRE.MatchString(m.Key):
			l.errorf(at, "invalid environment variable name")
		case strings.HasPrefix(m.Key, "VTCLUSTER_"):
			l.errorf(at, "VTCLUSTER_* variables are set by the runner")
		case m.Value.Kind != py.JSONString:
			l.errorf(at, "expected a string, got %s", m.Value.Describe())
		case strings.IndexByte(m.Value.Str, 0) >= 0:
			l.errorf(at, "contains a NUL byte")
		default:
			out[m.Key] = m.Value.Str
		}
	}
	return out
}

func (l *specLoader) step(v *jsonValue, p string, t *Test) Step {
	if v.Kind == py.JSONObject && v.Get("vm") != nil {
		return l.vmStep(v, p, t)
	}
	var s Step
	fs := fields{
		"on": func(v *jsonValue, at string) { s.On = l.stepTargets(v, at, t) },
		"run": func(v *jsonValue, at string) {
			s.Run = l.argv(v, at)
			for i, a := range s.Run {
				if _, err := parsePlaceholders(a, t.placeholderName); err != nil {
					l.errorf(jsonPath(at, i), "%v", err)
				}
			}
		},
		"parallel": func(v *jsonValue, at string) {
			if v.Kind != py.JSONBool {
				l.errorf(at, "expected true or false, got %s", v.Describe())
			}
			s.Parallel = v.Bool
		},
		"timeout": set(&s.Timeout, l.seconds),
	}
	for k, f := range syncStepKeys { // sync_spec.go's keys (none of the above)
		fs[k] = func(v *jsonValue, at string) { f(l, v, at, t, &s) }
	}
	if !l.object(v, p, "a step object", fs, l.atKey("allowed: on, run, parallel, timeout, barrier, send, value, wait, tags, lock, unlock, background, together; a VM step has vm")) {
		return s
	}
	if s.Sync != nil {
		l.checkSyncStep(v, p, t, &s)
		return s
	}
	if v.Get("on") == nil && !l.inGroup {
		l.errorf(p, "missing required key \"on\"")
	}
	if v.Get("run") == nil {
		l.errorf(p, "missing required key \"run\"")
	}
	return s
}

func (l *specLoader) stepTargets(v *jsonValue, p string, t *Test) []string {
	var names []string
	switch v.Kind {
	case py.JSONString:
		if v.Str == "*" {
			if len(t.Nodes) == 0 {
				l.errorf(p, "\"*\" but the test has no nodes")
			}
			return t.NodeTags()
		}
		names = []string{v.Str}
	case py.JSONArray:
		if len(v.Elems) == 0 {
			l.errorf(p, "empty list of tags")
		}
		for i, e := range v.Elems {
			if e.Kind != py.JSONString {
				l.errorf(jsonPath(p, i), "expected a tag, got %s", e.Describe())
				continue
			}
			names = append(names, e.Str)
		}
	default:
		l.errorf(p, "expected a tag, a list of tags or \"*\", got %s", v.Describe())
		return nil
	}
	want := map[string]bool{}
	for _, n := range names {
		if !t.hasTag(n) {
			l.errorf(p, "unknown node tag %q (%s)", n, t.nodeList())
		}
		if want[n] {
			l.errorf(p, "tag %q listed twice", n)
		}
		want[n] = true
	}
	var out []string
	for _, tag := range t.NodeTags() {
		if want[tag] {
			out = append(out, tag)
		}
	}
	return out
}

func (l *specLoader) collect(v *jsonValue, p string, t *Test) map[string][]string {
	if v.Kind != py.JSONObject {
		l.errorf(p, "expected an object of tag -> [remote paths], got %s", v.Describe())
		return nil
	}
	out := map[string][]string{}
	for _, m := range v.Members {
		at := jsonPath(p, m.Key)
		if !t.hasTag(m.Key) {
			l.errorf(at, "unknown node tag %q (%s)", m.Key, t.nodeList())
			continue
		}
		if m.Value.Kind != py.JSONArray {
			l.errorf(at, "expected a list of absolute paths, got %s", m.Value.Describe())
			continue
		}
		for i, e := range m.Value.Elems {
			switch {
			case e.Kind != py.JSONString:
				l.errorf(jsonPath(at, i), "expected a string, got %s", e.Describe())
			case !strings.HasPrefix(e.Str, "/") || strings.IndexByte(e.Str, 0) >= 0:
				l.errorf(jsonPath(at, i), "expected an absolute path, got %q", e.Str)
			default:
				out[m.Key] = append(out[m.Key], e.Str)
			}
		}
	}
	return out
}

// envTag turns a node tag into the part of environment variable names:
// upper case, anything but letters and digits as '_'.
func envTag(tag string) string {
	b := []byte(strings.ToUpper(tag))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
