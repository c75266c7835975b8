package runner

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/vtcluster/vtcluster/agent/py"
)

// runnable is what Avocado asks the runner to run.
//
// For kind "multihost" a Runnable names one test of a spec file: URI is the
// spec file path (relative paths are resolved against the runner's working
// directory, which is Avocado's) and the keyword argument "test" is the
// test's name. Avocado shows it under the identifier "<file>:<name>".
// Without a "test" keyword the URI may itself be "<file>:<name>", and a
// spec file holding a single test needs no name at all.
type runnable struct {
	Kind string
	// URI is "" when Avocado sent no -u.
	URI string
	// Args are the -a values, base64: already decoded. For multihost they
	// are appended to the test body's command.
	Args []string
	// Kwargs are the KEY=VAL arguments that are not reserved, json:
	// decoded (string, bool, int64, float64, nil, []any, map[string]any).
	Kwargs map[string]any
	// Config holds the Avocado settings from -c ("namespace.Key": value).
	Config map[string]any
	// Identifier is the test name Avocado gave the runnable, if any.
	Identifier string
	// OutputDir is the output_dir keyword: Avocado's per-test directory.
	OutputDir string
	// Tags, Variant, Dependencies and Assets are the other reserved
	// keywords; the runner does not use them.
	Tags, Variant, Dependencies, Assets any
}

// TestName returns the spec file path and test name the runnable names.
func (r *runnable) TestName() (file, name string) {
	if v, ok := r.Kwargs["test"].(string); ok {
		return r.URI, v
	}
	if _, err := os.Stat(r.URI); err != nil {
		if i := strings.LastIndexByte(r.URI, ':'); i > 0 {
			return r.URI[:i], r.URI[i+1:]
		}
	}
	return r.URI, ""
}

// task is a runnable plus the identity its status messages carry.
type task struct {
	// ID is echoed as "id" in every message: the -i string, or whatever
	// JSON value a task recipe holds.
	ID any
	// JobID is echoed as "job_id" when set (Avocado always sets it).
	JobID      *string
	Category   string
	StatusURIs []string
	Runnable   runnable
}

// runtimeError is an invocation that parses but cannot run (bad base64,
// bad json: value, unreadable recipe). The runner prints it on stderr and
// exits 1, as Avocado's runners do on the same exceptions.
type runtimeError struct{ Err error }

func (e *runtimeError) Error() string { return e.Err.Error() }
func (e *runtimeError) Unwrap() error { return e.Err }

func runtimeErrorf(format string, args ...any) error {
	return &runtimeError{fmt.Errorf(format, args...)}
}

// reservedKwargs become runnable fields instead of staying in Kwargs.
var reservedKwargs = map[string]bool{"output_dir": true, "tags": true, "variant": true, "dependencies": true, "assets": true, "identifier": true}

// runnableFromArgs decodes the command line values of runnable-run and
// task-run.
func runnableFromArgs(a commandArgs) (runnable, error) {
	r := runnable{Kind: a.Kind, Kwargs: map[string]any{}}
	if a.URI != nil {
		r.URI = *a.URI
	}
	for _, arg := range a.Args {
		if b64, ok := strings.CutPrefix(arg, "base64:"); ok {
			data, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				return r, runtimeErrorf("runner: -a %q: invalid base64: %w", arg, err)
			}
			if !utf8.Valid(data) {
				return r, runtimeErrorf("runner: -a %q: decoded value is not UTF-8", arg)
			}
			arg = string(data)
		}
		r.Args = append(r.Args, arg)
	}
	cfg, jerr := parseJSONTree([]byte(a.Config))
	if jerr != nil {
		return r, runtimeErrorf("runner: -c/--config: %s", jerr)
	}
	if cfg.Kind != py.JSONObject {
		return r, runtimeErrorf("runner: -c/--config: expected a JSON object, got %s", cfg.Describe())
	}
	r.Config = toAny(cfg).(map[string]any)
	for _, kv := range a.KeyVals {
		key, val, _ := strings.Cut(kv, "=")
		var v any = val
		if js, ok := strings.CutPrefix(val, "json:"); ok {
			tree, jerr := parseJSONTree([]byte(js))
			if jerr != nil {
				return r, runtimeErrorf("runner: keyword argument %q: %s", key, jerr)
			}
			v = toAny(tree)
		}
		if err := r.setKwarg(key, v); err != nil {
			return r, runtimeErrorf("runner: keyword argument %q: %v", key, err)
		}
	}
	return r, nil
}

func (r *runnable) setKwarg(key string, v any) error {
	if !reservedKwargs[key] {
		if key == "config" {
			return errors.New("reserved name (settings go in -c)")
		}
		r.Kwargs[key] = v
		return nil
	}
	switch key {
	case "output_dir", "identifier":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("expected a string, got %s", py.Repr(v))
		}
		if key == "output_dir" {
			r.OutputDir = s
		} else {
			r.Identifier = s
		}
	case "tags":
		r.Tags = v
	case "variant":
		r.Variant = v
	case "dependencies":
		r.Dependencies = v
	case "assets":
		r.Assets = v
	}
	return nil
}

// loadRunnableRecipe reads a runnable recipe (runnable-run-recipe), a JSON
// object with kind (required), uri, args, kwargs, config and identifier.
// Like Avocado's schema it refuses any other key.
func loadRunnableRecipe(path string) (runnable, error) {
	root, err := readJSONFile(path)
	if err != nil {
		return runnable{}, err
	}
	return runnableFromRecipe(path, root, "", true)
}

func runnableFromRecipe(path string, v *jsonValue, at string, strict bool) (runnable, error) {
	bad := func(p, format string, args ...any) error {
		if p == "" {
			return runtimeErrorf("runner: recipe %s: %s", path, fmt.Sprintf(format, args...))
		}
		return runtimeErrorf("runner: recipe %s: %s: %s", path, p, fmt.Sprintf(format, args...))
	}
	r := runnable{Kwargs: map[string]any{}, Config: map[string]any{}}
	if v.Kind != py.JSONObject {
		return r, bad(at, "expected an object, got %s", v.Describe())
	}
	str := func(m py.Member) (string, error) {
		if m.Value.Kind != py.JSONString {
			return "", bad(jsonPath(at, m.Key), "expected a string, got %s", m.Value.Describe())
		}
		return m.Value.Str, nil
	}
	var err error
	seenKind := false
	for _, m := range v.Members {
		p := jsonPath(at, m.Key)
		switch m.Key {
		case "kind":
			seenKind = true
			r.Kind, err = str(m)
		case "uri":
			r.URI, err = str(m)
		case "identifier":
			if strict {
				r.Identifier, err = str(m)
			}
		case "args":
			if m.Value.Kind != py.JSONArray {
				return r, bad(p, "expected a list of strings, got %s", m.Value.Describe())
			}
			for i, e := range m.Value.Elems {
				if e.Kind != py.JSONString {
					return r, bad(jsonPath(p, i), "expected a string, got %s", e.Describe())
				}
				r.Args = append(r.Args, e.Str)
			}
		case "config":
			if m.Value.Kind != py.JSONObject {
				return r, bad(p, "expected an object, got %s", m.Value.Describe())
			}
			r.Config = toAny(m.Value).(map[string]any)
		case "kwargs":
			if !strict {
				continue // task recipes ignore them, as Avocado does
			}
			if m.Value.Kind != py.JSONObject {
				return r, bad(p, "expected an object, got %s", m.Value.Describe())
			}
			for _, kw := range m.Value.Members {
				if err := r.setKwarg(kw.Key, toAny(kw.Value)); err != nil {
					return r, bad(jsonPath(p, kw.Key), "%v", err)
				}
			}
		default:
			if strict {
				return r, bad(p, "unknown key (allowed: kind, uri, args, kwargs, config, identifier)")
			}
		}
		if err != nil {
			return r, err
		}
	}
	if !seenKind {
		return r, bad(at, "missing required key \"kind\"")
	}
	return r, nil
}

// loadTaskRecipe reads a task recipe (task-run-recipe): {"id": any,
// "runnable": {...}, "status_uris": [...], "category": str, "job_id": str}.
// Avocado never writes these; they exist for its interface selftests.
// Unlike Avocado 113.0, a "job_id" key is honoured: without it a real
// status server drops every message.
func loadTaskRecipe(path string) (task, error) {
	var t task
	root, err := readJSONFile(path)
	if err != nil {
		return t, err
	}
	if root.Kind != py.JSONObject {
		return t, runtimeErrorf("runner: recipe %s: expected an object, got %s", path, root.Describe())
	}
	rv := root.Get("runnable")
	if rv == nil {
		return t, runtimeErrorf("runner: recipe %s: missing required key \"runnable\"", path)
	}
	if t.Runnable, err = runnableFromRecipe(path, rv, "runnable", false); err != nil {
		return t, err
	}
	if id := root.Get("id"); id != nil {
		t.ID = toAny(id)
	}
	if c := root.Get("category"); c != nil && c.Kind == py.JSONString {
		t.Category = c.Str
	}
	if j := root.Get("job_id"); j != nil && j.Kind == py.JSONString {
		t.JobID = &j.Str
	}
	if s := root.Get("status_uris"); s != nil {
		if s.Kind != py.JSONArray {
			return t, runtimeErrorf("runner: recipe %s: status_uris: expected a list of strings, got %s", path, s.Describe())
		}
		for i, e := range s.Elems {
			if e.Kind != py.JSONString {
				return t, runtimeErrorf("runner: recipe %s: status_uris[%d]: expected a string, got %s", path, i, e.Describe())
			}
			t.StatusURIs = append(t.StatusURIs, e.Str)
		}
	}
	return t, nil
}

func readJSONFile(path string) (*jsonValue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &runtimeError{fmt.Errorf("runner: %w", err)}
	}
	root, jerr := parseJSONTree(data)
	if jerr != nil {
		return nil, runtimeErrorf("runner: %s: %s", path, jerr)
	}
	return root, nil
}
