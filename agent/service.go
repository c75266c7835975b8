package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// Method is one XML-RPC method. args are the decoded positional params;
// the result is encoded with the codec's value rules. Returning a *Fault
// chooses the Python exception type the caller sees.
type Method func(ctx context.Context, args Args) (any, error)

// Service is a named table of methods; "core" with method "is_alive" is
// served as "core.is_alive". Names may contain dots ("examples.hello").
type Service interface {
	Name() string
	Methods() map[string]Method
}

// Registry maps full dotted method names to methods. It is filled before
// the server starts and read-only afterwards, so it needs no lock.
type Registry struct {
	methods map[string]Method
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{methods: map[string]Method{}} }

// Register adds every method of s under "<s.Name()>.<method>". A name that
// is already registered is an error: upstream silently let the last one
// win, which hides mistakes.
func (r *Registry) Register(s Service) error {
	return r.RegisterAs(s.Name(), s)
}

// RegisterAs registers s's methods under another prefix, for aliases such
// as upstream's "agent.services.core".
func (r *Registry) RegisterAs(prefix string, s Service) error {
	if prefix == "" || strings.HasPrefix(prefix, ".") || strings.HasSuffix(prefix, ".") {
		return fmt.Errorf("agent: invalid service name %q", prefix)
	}
	for name, m := range s.Methods() {
		full := prefix + "." + name
		if _, dup := r.methods[full]; dup {
			return fmt.Errorf("agent: method %q registered twice", full)
		}
		if m == nil {
			return fmt.Errorf("agent: method %q has no implementation", full)
		}
		r.methods[full] = m
	}
	return nil
}

// Lookup returns the method registered under name.
func (r *Registry) Lookup(name string) (Method, bool) {
	m, ok := r.methods[name]
	return m, ok
}

// Names returns every registered method name, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.methods))
	for n := range r.methods {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Args are the positional params of a call, with accessors that turn a
// wrong or missing argument into the TypeError/ValueError fault a Python
// agent would raise.
type Args []any

// Len returns the number of params.
func (a Args) Len() int { return len(a) }

// Want checks the param count is within [min, max].
func (a Args) Want(min, max int) error {
	if len(a) < min || len(a) > max {
		if min == max {
			return xmlrpc.Faultf("TypeError", "takes %d positional arguments but %d were given", min, len(a))
		}
		return xmlrpc.Faultf("TypeError", "takes from %d to %d positional arguments but %d were given", min, max, len(a))
	}
	return nil
}

// Value returns param i, or nil when absent.
func (a Args) Value(i int) any {
	if i < len(a) {
		return a[i]
	}
	return nil
}

// String returns param i as a string.
func (a Args) String(i int, name string) (string, error) {
	if i >= len(a) {
		return "", xmlrpc.Faultf("TypeError", "missing required argument: '%s'", name)
	}
	s, ok := a[i].(string)
	if !ok {
		return "", xmlrpc.Faultf("TypeError", "argument '%s' must be str, not %s", name, py.TypeName(a[i]))
	}
	return s, nil
}

// OptString returns param i as a string, def when absent or None.
func (a Args) OptString(i int, name, def string) (string, error) {
	if i >= len(a) || a[i] == nil {
		return def, nil
	}
	return a.String(i, name)
}

// Int returns param i as an int. Python bools are ints too, but accepting
// them here would hide caller bugs, so they are refused.
func (a Args) Int(i int, name string) (int, error) {
	if i >= len(a) {
		return 0, xmlrpc.Faultf("TypeError", "missing required argument: '%s'", name)
	}
	n, ok := py.Int(a[i])
	if !ok {
		return 0, xmlrpc.Faultf("TypeError", "argument '%s' must be int, not %s", name, py.TypeName(a[i]))
	}
	return int(n), nil
}

// Struct returns param i as a struct (dict); nil/absent gives an empty map.
func (a Args) Struct(i int, name string) (map[string]any, error) {
	if i >= len(a) || a[i] == nil {
		return map[string]any{}, nil
	}
	m, ok := a[i].(map[string]any)
	if !ok {
		return nil, xmlrpc.Faultf("TypeError", "argument '%s' must be dict, not %s", name, py.TypeName(a[i]))
	}
	return m, nil
}

// StringList returns param i as a list of strings.
func (a Args) StringList(i int, name string) ([]string, error) {
	if i >= len(a) {
		return nil, xmlrpc.Faultf("TypeError", "missing required argument: '%s'", name)
	}
	l, ok := a[i].([]any)
	if !ok {
		return nil, xmlrpc.Faultf("TypeError", "argument '%s' must be list, not %s", name, py.TypeName(a[i]))
	}
	out := make([]string, len(l))
	for j, v := range l {
		s, ok := v.(string)
		if !ok {
			return nil, xmlrpc.Faultf("TypeError", "argument '%s' item %d must be str, not %s", name, j, py.TypeName(v))
		}
		out[j] = s
	}
	return out, nil
}
