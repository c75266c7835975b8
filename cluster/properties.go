package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// Caller invokes one agent method; *Client is the real one.
type Caller interface {
	Call(ctx context.Context, method string, args ...any) (any, error)
}

var _ Caller = (*Client)(nil)

type propertyKind int

const (
	kindString propertyKind = iota
	kindInt
	kindBool
)

// property is one value collected from an agent. upstream marks the three
// upstream collects plus get_arch, which its agent also has: an upstream
// agent lacks the others, and that is not an error.
type property struct {
	key      string
	method   string
	kind     propertyKind
	upstream bool
}

var properties = []property{
	{"hostname", "host.platform.get_hostname", kindString, true},
	{"cpu_vendor_id", "host.cpu.get_cpu_vendor_id", kindString, true},
	{"cpu_model_name", "host.cpu.get_cpu_model_name", kindString, true},
	{"arch", "host.platform.get_arch", kindString, true},
	{"cpu_count", "host.cpu.get_cpu_count", kindInt, false},
	{"mem_total", "host.memory.get_mem_total", kindInt, false},
	{"kernel", "host.platform.get_kernel_release", kindString, false},
	{"kvm", "host.platform.has_kvm", kindBool, false},
}

// memoryGBKey is derived from mem_total rather than collected, so that
// selectors can say "memory_gb >= 32" as upstream's README promised.
const memoryGBKey = "memory_gb"

// DefaultCollectParallelism is how many nodes CollectAll queries at once
// when the caller does not say: each node takes eight concurrent calls.
const DefaultCollectParallelism = 8

// PropertyKeys returns every property name CollectProperties may produce,
// so configs can reject labels that would collide before any node is
// reached.
func PropertyKeys() []string {
	keys := make([]string, 0, len(properties)+1)
	for _, p := range properties {
		keys = append(keys, p.key)
	}
	return append(keys, memoryGBKey)
}

// CollectProperties asks one agent for the node's properties, all calls at
// once. Values are string, int64 (cpu_count, mem_total), float64
// (memory_gb, GiB to one decimal) and bool (kvm). A property whose method
// the agent does not have (an upstream agent) is left out, except for the
// four upstream agents have too. Every other failure is returned, joined,
// with a nil map.
func CollectProperties(ctx context.Context, c Caller) (map[string]any, error) {
	type result struct {
		value any
		skip  bool
		err   error
	}
	results := make([]result, len(properties))
	var wg sync.WaitGroup
	for i, p := range properties {
		wg.Go(func() {
			v, err := c.Call(ctx, p.method)
			switch {
			case err != nil && !p.upstream && unsupportedMethod(err):
				results[i].skip = true
			case err != nil:
				results[i].err = callError(p, err)
			default:
				results[i].value, results[i].err = convertProperty(p, v)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cluster: collecting node properties: %w", err)
	}
	props := make(map[string]any, len(properties)+1)
	var errs []error
	for i, r := range results {
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case !r.skip:
			props[properties[i].key] = r.value
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if mem, ok := props["mem_total"].(int64); ok {
		props[memoryGBKey] = math.Round(float64(mem)/(1<<30)*10) / 10
	}
	return props, nil
}

// unsupportedMethod reports whether err says the agent has no such method:
// the fault both agents send (see xmlrpc.IsUnsupportedMethod), or any error
// that says so itself, for Callers that are not XML-RPC clients.
func unsupportedMethod(err error) bool {
	var u interface{ Unsupported() bool }
	if errors.As(err, &u) && u.Unsupported() {
		return true
	}
	return xmlrpc.IsUnsupportedMethod(err)
}

// callError keeps a *CallError as it is, since it already names the node
// and the method; other Callers' errors get the method added.
func callError(p property, err error) error {
	var ce *CallError
	if errors.As(err, &ce) {
		return err
	}
	return fmt.Errorf("cluster: %s: %w", p.method, err)
}

func convertProperty(p property, v any) (any, error) {
	switch p.kind {
	case kindString:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case kindBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case kindInt:
		n, ok := toNumber(v)
		if ok && !n.isInt && n.f == math.Trunc(n.f) && math.Abs(n.f) < 1<<63 {
			// A Python agent may send a large integer as a double.
			n = number{i: int64(n.f), isInt: true}
		}
		if ok && n.isInt && n.i >= 0 {
			return n.i, nil
		}
	}
	want := map[propertyKind]string{kindString: "a string", kindInt: "a non-negative integer", kindBool: "a boolean"}[p.kind]
	return nil, fmt.Errorf("cluster: %s returned %s %s, want %s (for property %q)", p.method, py.TypeName(v), py.Repr(v), want, p.key)
}

// MergeLabels returns a new map holding props and the config's static
// labels. A label named like a collected property is an error, whether or
// not this node's agent produced that property, so one config means the
// same on every node. Label values must be strings, numbers or booleans.
func MergeLabels(props, labels map[string]any) (map[string]any, error) {
	reserved := map[string]bool{}
	for _, k := range PropertyKeys() {
		reserved[k] = true
	}
	out := make(map[string]any, len(props)+len(labels))
	for k, v := range props {
		out[k] = v
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		v := labels[k]
		if _, collides := props[k]; collides || reserved[k] {
			errs = append(errs, fmt.Errorf("cluster: label %q collides with the collected node property of that name", k))
			continue
		}
		if k == "" {
			errs = append(errs, errors.New("cluster: a label has an empty name"))
			continue
		}
		nv, err := labelValue(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster: label %q: %w", k, err))
			continue
		}
		out[k] = nv
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func labelValue(v any) (any, error) {
	switch v := v.(type) {
	case string, bool:
		return v, nil
	}
	if n, ok := toNumber(v); ok && (n.isInt || !math.IsNaN(n.f) && !math.IsInf(n.f, 0)) {
		return n.value(), nil
	}
	return nil, fmt.Errorf("value must be a string, number or bool, got %s", py.TypeName(v))
}

// CollectAll runs CollectProperties for every node, at most parallelism
// nodes at a time (DefaultCollectParallelism when < 1). Each node appears
// in exactly one of the two maps. Errors are CollectProperties' own; the
// map key names the node.
func CollectAll(ctx context.Context, callers map[string]Caller, parallelism int) (map[string]map[string]any, map[string]error) {
	if parallelism < 1 {
		parallelism = DefaultCollectParallelism
	}
	names := make([]string, 0, len(callers))
	for n := range callers {
		names = append(names, n)
	}
	sort.Strings(names)
	var (
		mu    sync.Mutex
		props = make(map[string]map[string]any, len(callers))
		errs  = make(map[string]error)
		wg    sync.WaitGroup
		slots = make(chan struct{}, parallelism)
	)
	record := func(name string, p map[string]any, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs[name] = err
		} else {
			props[name] = p
		}
	}
	for _, name := range names {
		c := callers[name]
		if c == nil {
			record(name, nil, fmt.Errorf("cluster: node %q: no agent client", name))
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			record(name, nil, fmt.Errorf("cluster: node %q: collecting node properties: %w", name, ctx.Err()))
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			p, err := CollectProperties(ctx, c)
			record(name, p, err)
		})
	}
	wg.Wait()
	return props, errs
}
