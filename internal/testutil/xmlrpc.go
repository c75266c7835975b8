package testutil

import "github.com/vtcluster/vtcluster/agent/xmlrpc"

// Plain turns the xmlrpc.Struct values of a reply tree into maps, as the
// XML-RPC client decodes them, so that tests compare a service's reply
// with what a caller sees.
func Plain(v any) any {
	switch x := v.(type) {
	case xmlrpc.Struct:
		m := make(map[string]any, len(x))
		for _, mem := range x {
			m[mem.Key] = Plain(mem.Value)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Plain(e)
		}
		return out
	}
	return v
}
