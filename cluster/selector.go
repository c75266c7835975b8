package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/vtcluster/vtcluster/agent/py"
)

// Selectors pick nodes by their properties. The syntax is upstream's: a
// list of {"key", "operator", "values"} dicts that must all match, written
// as a Python literal (what ast.literal_eval reads) or as JSON.
//
// How a property (left) and "values" (right) compare:
//   - as numbers when both are numbers or numeric strings ("10", "1.5e3");
//   - as booleans when either is a bool (the other may be the text
//     "true"/"false" in any case); a bool never equals or orders with
//     anything else;
//   - otherwise as text, when both are strings or numbers;
//   - lists and dicts are equal when their elements are; they cannot be
//     ordered. Values that cannot be compared do not match.
//
// contains is upstream's: list ⊇ list when both are lists, else membership
// in a list, a key of a dict, or a substring of a string. in wants a list
// of values; matches wants a Go regexp that must match the whole text of a
// string or number property.
//
// Deliberate differences from upstream avocado-vt:
//   - Numeric comparison of numeric strings ("10" > "9"); upstream compares
//     the (string) properties lexicographically, so "10" < "9" there.
//   - A node without the property does not match ==, <, >, <=, >=,
//     contains, in or matches, and does match !=, not contains and not in;
//     upstream raises OperatorError for some of these. The negated
//     operators are always the exact negation of their positive form.
//   - An empty or None "values" is a parse error naming the selector;
//     upstream crashes with a TypeError (0 and False are valid values here).
//   - Added operators: >=/ge, <=/le, in, not in and matches.
//   - Unknown keys in a selector dict are rejected.

type operator int

const (
	opInvalid operator = iota
	opLT
	opGT
	opLE
	opGE
	opEQ
	opNE
	opContains
	opNotContains
	opIn
	opNotIn
	opMatches
)

// operators maps every accepted spelling, upstream's first.
var operators = map[string]operator{
	"<":            opLT,
	"lt":           opLT,
	">":            opGT,
	"gt":           opGT,
	"==":           opEQ,
	"eq":           opEQ,
	"!=":           opNE,
	"ne":           opNE,
	"contains":     opContains,
	"not contains": opNotContains,
	">=":           opGE,
	"ge":           opGE,
	"<=":           opLE,
	"le":           opLE,
	"in":           opIn,
	"not in":       opNotIn,
	"matches":      opMatches,
}

const operatorList = "<, lt, >, gt, ==, eq, !=, ne, contains, not contains, >=, ge, <=, le, in, not in, matches"

func (o operator) negated() bool { return o == opNE || o == opNotContains || o == opNotIn }

// Selector is one condition on a node property. Build it with
// ParseSelectors or NewSelector; a Selector written as a struct literal is
// validated on every Match.
type Selector struct {
	Key      string // property name, e.g. "cpu_model_name"
	Operator string // as written, e.g. "gt" or ">"
	Values   any    // model value: bool, int64, float64, string, []any or map[string]any

	op operator
	re *regexp.Regexp // compiled, anchored "values" of matches
}

// SelectorError is a selector that cannot be parsed or used.
type SelectorError struct {
	// Index is the selector's position in the list, or -1 when the error
	// is about the whole input or about a selector outside a list.
	Index int
	// Selector is the offending selector as a Python literal; empty when
	// the error is about the whole input.
	Selector string
	Msg      string
	// Err is the *py.LiteralError when the input did not parse.
	Err error
}

// Error names the selector at fault, not the package: the caller says
// where the selectors came from (a flag, a spec key, a node's tag).
func (e *SelectorError) Error() string {
	switch {
	case e.Index >= 0:
		return fmt.Sprintf("selectors[%d] %s: %s", e.Index, e.Selector, e.Msg)
	case e.Selector != "":
		return fmt.Sprintf("selector %s: %s", e.Selector, e.Msg)
	}
	return e.Msg
}

func (e *SelectorError) Unwrap() error { return e.Err }

// ParseSelectors reads a selector list written as JSON or as a Python
// literal. Valid JSON is read as JSON (so "true" is a boolean there);
// anything else must be a Python literal. An empty list selects any node.
// Every error is a *SelectorError.
func ParseSelectors(s string) ([]Selector, error) {
	if strings.TrimSpace(s) == "" {
		return nil, &SelectorError{Index: -1, Msg: "empty input, expected a list of selector dicts (use [] to select any node)"}
	}
	var v any
	isJSON := json.Valid([]byte(s))
	if isJSON {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return nil, &SelectorError{Index: -1, Msg: "invalid JSON: " + err.Error(), Err: err}
		}
	} else {
		var err error
		if v, err = py.ParseLiteral(s); err != nil {
			var le *py.LiteralError
			if errors.As(err, &le) {
				return nil, &SelectorError{Index: -1, Msg: "neither valid JSON nor a Python literal: " + le.Error(), Err: le}
			}
			return nil, &SelectorError{Index: -1, Msg: err.Error(), Err: err}
		}
	}
	list, ok := v.([]any)
	if !ok {
		return nil, &SelectorError{Index: -1, Msg: fmt.Sprintf("expected a list of selector dicts, got %s", py.TypeName(v))}
	}
	out := make([]Selector, 0, len(list))
	for i, item := range list {
		if isJSON {
			// Numbers are converted here, not while decoding, so that an
			// out-of-range one is reported with its selector.
			conv, err := py.FromJSON(item)
			if err != nil {
				return nil, &SelectorError{Index: i, Selector: py.Repr(item), Msg: err.Error()}
			}
			item = conv
		}
		sel, msg := selectorFromValue(item)
		if msg != "" {
			return nil, &SelectorError{Index: i, Selector: py.Repr(item), Msg: msg}
		}
		out = append(out, sel)
	}
	return out, nil
}

// selectorFromValue checks one element of the list; it returns an error
// message rather than an error so the caller can add the index.
func selectorFromValue(item any) (Selector, string) {
	m, ok := item.(map[string]any)
	if !ok {
		return Selector{}, fmt.Sprintf("expected a dict with 'key', 'operator' and 'values', got %s", py.TypeName(item))
	}
	var extra []string
	for k := range m {
		if k != "key" && k != "operator" && k != "values" {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return Selector{}, fmt.Sprintf("unknown key %s (allowed: 'key', 'operator', 'values')", py.Repr(extra[0]))
	}
	var key, op string
	for _, f := range []struct {
		name string
		dst  *string
	}{{"key", &key}, {"operator", &op}} {
		v, ok := m[f.name]
		if !ok {
			return Selector{}, fmt.Sprintf("missing %s", py.Repr(f.name))
		}
		s, ok := v.(string)
		if !ok {
			return Selector{}, fmt.Sprintf("%s must be a string, got %s", py.Repr(f.name), py.TypeName(v))
		}
		*f.dst = s
	}
	values, ok := m["values"]
	if !ok {
		return Selector{}, "missing 'values'"
	}
	return newSelector(key, op, values)
}

// NewSelector builds and checks a selector. Values may be any model value
// or a Go slice/map of strings or numbers; it is converted to the model.
func NewSelector(key, op string, values any) (Selector, error) {
	s, msg := newSelector(key, op, values)
	if msg != "" {
		text := py.Repr(map[string]any{"key": key, "operator": op, "values": values})
		return Selector{}, &SelectorError{Index: -1, Selector: text, Msg: msg}
	}
	return s, nil
}

func newSelector(key, opName string, values any) (Selector, string) {
	if key == "" {
		return Selector{}, "'key' must not be empty"
	}
	op, ok := operators[opName]
	if !ok {
		return Selector{}, fmt.Sprintf("unknown operator %s (known: %s)", py.Repr(opName), operatorList)
	}
	values, err := normalizeValue(values, 0)
	if err != nil {
		return Selector{}, "'values': " + err.Error()
	}
	if isEmptyValue(values) {
		return Selector{}, "'values' must not be empty or None"
	}
	s := Selector{Key: key, Operator: opName, Values: values, op: op}
	switch op {
	case opLT, opGT, opLE, opGE:
		switch values.(type) {
		case bool, int64, float64, string:
		default:
			return Selector{}, fmt.Sprintf("operator %s needs a number, string or bool in 'values', got %s", py.Repr(opName), py.TypeName(values))
		}
	case opIn, opNotIn:
		if _, ok := values.([]any); !ok {
			return Selector{}, fmt.Sprintf("operator %s needs a list in 'values', got %s", py.Repr(opName), py.TypeName(values))
		}
	case opMatches:
		expr, ok := values.(string)
		if !ok {
			return Selector{}, fmt.Sprintf("operator 'matches' needs a regular expression string in 'values', got %s", py.TypeName(values))
		}
		if _, err := regexp.Compile(expr); err != nil {
			return Selector{}, fmt.Sprintf("'values' is not a valid regular expression: %v", err)
		}
		s.re = regexp.MustCompile(`^(?:` + expr + `)$`)
	}
	return s, ""
}

func isEmptyValue(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// normalizeValue converts what a Go caller may pass into the model.
func normalizeValue(v any, depth int) (any, error) {
	if depth > py.MaxLiteralDepth {
		return nil, fmt.Errorf("nesting deeper than %d levels", py.MaxLiteralDepth)
	}
	switch v := v.(type) {
	case nil, bool, string:
		return v, nil
	case json.Number:
		return py.Number(string(v))
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = e
		}
		return out, nil
	case map[string]string:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = e
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			n, err := normalizeValue(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			n, err := normalizeValue(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	}
	if n, ok := toNumber(v); ok {
		if !n.isInt && (math.IsNaN(n.f) || math.IsInf(n.f, 0)) {
			return nil, fmt.Errorf("number %v is not finite", n.f)
		}
		return n.value(), nil
	}
	return nil, fmt.Errorf("unsupported Go type %T", v)
}

// String renders the selector as the dict upstream users write.
func (s Selector) String() string {
	return "{'key': " + py.Repr(s.Key) + ", 'operator': " + py.Repr(s.Operator) +
		", 'values': " + py.Repr(s.Values) + "}"
}

// FormatSelectors renders a list that ParseSelectors reads back.
func FormatSelectors(sels []Selector) string {
	parts := make([]string, len(sels))
	for i, s := range sels {
		parts[i] = s.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Match reports whether a node with these properties satisfies s. It
// fails only for a selector that did not come from ParseSelectors or
// NewSelector and is invalid.
func (s Selector) Match(props map[string]any) (bool, error) {
	if s.op == opInvalid {
		checked, err := NewSelector(s.Key, s.Operator, s.Values)
		if err != nil {
			return false, err
		}
		s = checked
	}
	left := props[s.Key]
	if left == nil {
		return s.op.negated(), nil
	}
	switch s.op {
	case opEQ, opNE:
		return equalValues(left, s.Values) != (s.op == opNE), nil
	case opContains, opNotContains:
		return containsValue(left, s.Values) != (s.op == opNotContains), nil
	case opIn, opNotIn:
		list, _ := asList(s.Values)
		return memberOf(list, left) != (s.op == opNotIn), nil
	case opMatches:
		text, ok := scalarText(left)
		return ok && s.re.MatchString(text), nil
	}
	c, ok := orderValues(left, s.Values)
	if !ok {
		return false, nil
	}
	switch s.op {
	case opLT:
		return c < 0, nil
	case opGT:
		return c > 0, nil
	case opLE:
		return c <= 0, nil
	default: // opGE
		return c >= 0, nil
	}
}

// MatchAll reports whether every selector matches; an empty list matches.
func MatchAll(sels []Selector, props map[string]any) (bool, error) {
	for i, s := range sels {
		ok, err := s.Match(props)
		if err != nil {
			var se *SelectorError
			if errors.As(err, &se) {
				cp := *se
				cp.Index = i
				return false, &cp
			}
			return false, err
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// number is an int64 or a float64, kept apart so large integers such as
// mem_total compare exactly.
type number struct {
	i     int64
	f     float64
	isInt bool
}

func (n number) value() any {
	if n.isInt {
		return n.i
	}
	return n.f
}

func (n number) String() string {
	if n.isInt {
		return strconv.FormatInt(n.i, 10)
	}
	return py.FloatRepr(n.f)
}

func cmpNumbers(a, b number) int {
	if a.isInt && b.isInt {
		switch {
		case a.i < b.i:
			return -1
		case a.i > b.i:
			return 1
		}
		return 0
	}
	fa, fb := a.f, b.f
	if a.isInt {
		fa = float64(a.i)
	}
	if b.isInt {
		fb = float64(b.i)
	}
	switch {
	case fa < fb:
		return -1
	case fa > fb:
		return 1
	}
	return 0
}

// toNumber accepts Go's numeric types (not strings); unsigned integers
// beyond int64 compare as floats.
func toNumber(v any) (number, bool) {
	if i, ok := py.Int(v); ok {
		return number{i: i, isInt: true}, true
	}
	switch v := v.(type) {
	case uint:
		return number{f: float64(v)}, true
	case uint64:
		return number{f: float64(v)}, true
	case float32:
		return number{f: float64(v)}, true
	case float64:
		return number{f: v}, true
	}
	return number{}, false
}

var numericText = regexp.MustCompile(`^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$`)

// numericValue accepts numbers and strings in plain decimal notation
// (no hex, no inf/nan, no spaces), so "10" and 9 compare as numbers.
func numericValue(v any) (number, bool) {
	s, ok := v.(string)
	if !ok {
		n, ok := toNumber(v)
		return n, ok && !(!n.isInt && math.IsNaN(n.f))
	}
	if !numericText.MatchString(s) {
		return number{}, false
	}
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return number{i: i, isInt: true}, true
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return number{}, false
	}
	return number{f: f}, true
}

// boolValue accepts bools and the strings true/false in any case, so a
// label written "true" matches a selector True.
func boolValue(v any) (bool, bool) {
	switch v := v.(type) {
	case bool:
		return v, true
	case string:
		switch {
		case strings.EqualFold(v, "true"):
			return true, true
		case strings.EqualFold(v, "false"):
			return false, true
		}
	}
	return false, false
}

// scalarText is the text of a string or a number (Python's repr for
// floats); other types have none.
func scalarText(v any) (string, bool) {
	if s, ok := v.(string); ok {
		return s, true
	}
	if n, ok := toNumber(v); ok {
		return n.String(), true
	}
	return "", false
}

// orderValues compares two scalars: as numbers when both are numeric, as
// booleans when either is a bool, else as text. ok is false when the
// values cannot be ordered.
func orderValues(a, b any) (int, bool) {
	if na, ok := numericValue(a); ok {
		if nb, ok := numericValue(b); ok {
			return cmpNumbers(na, nb), true
		}
	}
	_, aBool := a.(bool)
	_, bBool := b.(bool)
	if aBool || bBool {
		ba, ok1 := boolValue(a)
		bb, ok2 := boolValue(b)
		if !ok1 || !ok2 {
			return 0, false
		}
		switch {
		case ba == bb:
			return 0, true
		case bb:
			return -1, true
		}
		return 1, true
	}
	ta, ok1 := scalarText(a)
	tb, ok2 := scalarText(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	return strings.Compare(ta, tb), true
}

func equalValues(a, b any) bool {
	if c, ok := orderValues(a, b); ok {
		return c == 0
	}
	if la, ok := asList(a); ok {
		lb, ok := asList(b)
		if !ok || len(la) != len(lb) {
			return false
		}
		for i := range la {
			if !equalValues(la[i], lb[i]) {
				return false
			}
		}
		return true
	}
	if ma, ok := asMap(a); ok {
		mb, ok := asMap(b)
		if !ok || len(ma) != len(mb) {
			return false
		}
		for k, va := range ma {
			vb, ok := mb[k]
			if !ok || !equalValues(va, vb) {
				return false
			}
		}
		return true
	}
	return a == nil && b == nil
}

// containsValue is upstream's contains: list ⊇ list when both are lists,
// else membership in a list, a key of a dict, or a substring of a string.
func containsValue(left, right any) bool {
	if l, ok := asList(left); ok {
		if r, ok := asList(right); ok {
			for _, e := range r {
				if !memberOf(l, e) {
					return false
				}
			}
			return true
		}
		return memberOf(l, right)
	}
	if m, ok := asMap(left); ok {
		k, ok := right.(string)
		_, has := m[k]
		return ok && has
	}
	if s, ok := left.(string); ok {
		t, ok := scalarText(right)
		return ok && strings.Contains(s, t)
	}
	return false
}

func memberOf(list []any, v any) bool {
	for _, e := range list {
		if equalValues(e, v) {
			return true
		}
	}
	return false
}

func asList(v any) ([]any, bool) {
	switch v := v.(type) {
	case []any:
		return v, true
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = e
		}
		return out, true
	}
	return nil, false
}

func asMap(v any) (map[string]any, bool) {
	switch v := v.(type) {
	case map[string]any:
		return v, true
	case map[string]string:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = e
		}
		return out, true
	}
	return nil, false
}
