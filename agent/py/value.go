package py

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// Item is one key of a Dict.
type Item struct {
	Key   string
	Value any
}

// Dict is a Python dict: its keys keep their insertion order, which
// matters wherever a reader sees the text (printed status messages,
// XML-RPC structs, JSON documents). Keys are unique by convention; With
// keeps them so.
type Dict []Item

// Get returns the value of key and whether it is present.
func (d Dict) Get(key string) (any, bool) {
	for _, it := range d {
		if it.Key == key {
			return it.Value, true
		}
	}
	return nil, false
}

// With returns d with key set to v, as d[key] = v does: replaced in place
// (in a copy) when present, appended otherwise. d itself is not changed.
func (d Dict) With(key string, v any) Dict {
	for i, it := range d {
		if it.Key == key {
			out := append(Dict(nil), d...)
			out[i].Value = v
			return out
		}
	}
	return append(d[:len(d):len(d)], Item{key, v})
}

// TypeName is type(v).__name__ for a model value: "NoneType" for nil,
// "int" for every Go integer type, and so on. Types outside the model
// are named by Go (%T) so a mistake is visible rather than disguised.
func TypeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return "int"
	case float32, float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case []any, []string:
		return "list"
	case Dict, map[string]any, map[string]string:
		return "dict"
	case time.Time:
		return "datetime"
	case json.Number:
		if isJSONInt(string(x)) {
			return "int"
		}
		return "float"
	}
	return fmt.Sprintf("%T", v)
}

// Int reports v as an int64 when it is a Go integer that fits (bool is
// not an int here, unlike Python, because no caller wants True as 1).
func Int(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint:
		return int64(x), uint64(x) <= math.MaxInt64
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), x <= math.MaxInt64
	}
	return 0, false
}

// isJSONInt reports whether a JSON number is written as an integer, which
// is what makes json.loads return int rather than float.
func isJSONInt(s string) bool { return !strings.ContainsAny(s, ".eE") }
