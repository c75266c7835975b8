package runner

import (
	"github.com/vtcluster/vtcluster/agent/py"
)

// Spec and recipe files are read through py's JSON tree instead of
// straight into structs, so that every error can name the JSON path and
// place (tests[1].nodes.src at line 7, column 12), object key order is
// kept (node tags are allocated in file order), and duplicate keys are
// refused.

type jsonValue = py.Node

var jsonPath = py.JSONPath

const maxJSONDepth = 64

// parseJSONTree decodes one JSON document; a key given twice is an error.
// The error is a *py.TreeError.
func parseJSONTree(data []byte) (*jsonValue, error) {
	root, dups, err := py.ParseTree(data, py.TreeOptions{MaxDepth: maxJSONDepth})
	if err == nil && len(dups) > 0 {
		err = dups[0]
	}
	return root, err
}

// toAny converts v to plain Go values: map[string]any, []any, string,
// bool, nil, and int64 or float64 for numbers (an integer beyond int64
// becomes a float, as such values were read before). Avocado's
// {"__encoded_set__": [...]} becomes the list of its members.
func toAny(v *jsonValue) any {
	switch v.Kind {
	case py.JSONBool:
		return v.Bool
	case py.JSONNumber:
		if n, err := py.Number(string(v.Num)); err == nil {
			return n
		}
		f, _ := v.Num.Float64()
		return f
	case py.JSONString:
		return v.Str
	case py.JSONArray:
		out := make([]any, len(v.Elems))
		for i, e := range v.Elems {
			out[i] = toAny(e)
		}
		return out
	case py.JSONObject:
		if len(v.Members) == 1 && v.Members[0].Key == "__encoded_set__" && v.Members[0].Value.Kind == py.JSONArray {
			return toAny(v.Members[0].Value)
		}
		out := make(map[string]any, len(v.Members))
		for _, m := range v.Members {
			out[m.Key] = toAny(m.Value)
		}
		return out
	}
	return nil
}

// compact renders v back as JSON text, on one line.
func compact(v *jsonValue) (string, error) {
	val, err := v.Value()
	if err != nil {
		return "", err
	}
	return py.Dumps(val, py.Options{})
}
