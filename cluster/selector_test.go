package cluster

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/vtcluster/vtcluster/agent/py"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files under testdata/selectors")

// opCase checks one selector against one property value. values is the
// Python literal; jsonValues defaults to it with True/False rewritten.
type opCase struct {
	ops        []string
	prop       any
	values     string
	jsonValues string
	want       bool
}

var (
	opsLT          = []string{"<", "lt"}
	opsGT          = []string{">", "gt"}
	opsLE          = []string{"<=", "le"}
	opsGE          = []string{">=", "ge"}
	opsEQ          = []string{"==", "eq"}
	opsNE          = []string{"!=", "ne"}
	opsContains    = []string{"contains"}
	opsNotContains = []string{"not contains"}
	opsIn          = []string{"in"}
	opsNotIn       = []string{"not in"}
	opsMatches     = []string{"matches"}
)

var operatorCases = []opCase{
	{ops: opsLT, prop: int64(3), values: `5`, want: true},
	{ops: opsLT, prop: int64(5), values: `5`, want: false},
	{ops: opsLT, prop: 1.5, values: `2`, want: true},
	{ops: opsLT, prop: "abc", values: `"abd"`, want: true},
	// Numeric strings compare as numbers: upstream would say "10" < "9".
	{ops: opsLT, prop: "10", values: `"9"`, want: false},
	{ops: opsLT, prop: "x86_64", values: `5`, want: false}, // text: "x86_64" > "5"
	{ops: opsLT, prop: false, values: `True`, want: true},
	{ops: opsLT, prop: []any{int64(1)}, values: `5`, want: false}, // cannot be ordered
	{ops: opsGT, prop: int64(8), values: `4`, want: true},
	{ops: opsGT, prop: 8, values: `4`, want: true}, // Go int, as the XML-RPC codec returns
	{ops: opsGT, prop: "10", values: `"9"`, want: true},
	{ops: opsGT, prop: "10", values: `9`, want: true},
	{ops: opsGT, prop: true, values: `False`, want: true},
	{ops: opsGT, prop: "true", values: `False`, want: true}, // a label written as text
	{ops: opsGT, prop: true, values: `0`, want: false},      // bools compare only with bools
	{ops: opsLE, prop: int64(5), values: `5`, want: true},
	{ops: opsLE, prop: int64(6), values: `5`, want: false},
	{ops: opsLE, prop: "5.0", values: `5`, want: true},
	{ops: opsGE, prop: 31.3, values: `32`, want: false},
	{ops: opsGE, prop: 64.0, values: `32`, want: true},
	{ops: opsGE, prop: int64(34359738368), values: `34359738368`, want: true},
	{ops: opsGE, prop: int64(9007199254740993), values: `9007199254740992`, want: true}, // beyond float precision
	{ops: opsGE, prop: "b", values: `"a"`, want: true},
	{ops: opsEQ, prop: "x86_64", values: `"x86_64"`, want: true},
	{ops: opsEQ, prop: "x86_64", values: `"X86_64"`, want: false},
	{ops: opsEQ, prop: "8", values: `8`, want: true},
	{ops: opsEQ, prop: int64(8), values: `8.0`, want: true},
	{ops: opsEQ, prop: "08", values: `"8"`, want: true}, // both numeric
	{ops: opsEQ, prop: true, values: `True`, want: true},
	{ops: opsEQ, prop: "True", values: `True`, want: true},
	{ops: opsEQ, prop: true, values: `1`, want: false},
	{ops: opsEQ, prop: []any{int64(1), "a"}, values: `[1, "a"]`, want: true},
	{ops: opsEQ, prop: []any{int64(1), "a"}, values: `(1, "a")`, jsonValues: `[1, "a"]`, want: true},
	{ops: opsEQ, prop: []string{"a", "b"}, values: `["a", "b"]`, want: true},
	{ops: opsEQ, prop: []any{int64(1)}, values: `[1, 2]`, want: false},
	{ops: opsEQ, prop: map[string]any{"a": int64(1)}, values: `{"a": 1}`, want: true},
	{ops: opsEQ, prop: map[string]any{"a": int64(1)}, values: `{"a": 2}`, want: false},
	{ops: opsNE, prop: "x", values: `"y"`, want: true},
	{ops: opsNE, prop: "8", values: `8`, want: false},
	{ops: opsNE, prop: []any{int64(1)}, values: `1`, want: true},
	{ops: opsContains, prop: "AMD EPYC 7763 64-Core Processor", values: `"EPYC"`, want: true},
	{ops: opsContains, prop: "Intel(R) Xeon(R)", values: `"EPYC"`, want: false},
	{ops: opsContains, prop: "5.14.0-70.el9", values: `5`, want: true}, // a number as text
	{ops: opsContains, prop: []any{"a", "b", "c"}, values: `["a", "c"]`, want: true},
	{ops: opsContains, prop: []any{"a", "b"}, values: `["a", "z"]`, want: false},
	{ops: opsContains, prop: []any{"a", "b"}, values: `"a"`, want: true},
	{ops: opsContains, prop: []any{"1", "2"}, values: `1`, want: true},
	{ops: opsContains, prop: map[string]any{"vmx": true}, values: `"vmx"`, want: true},
	{ops: opsContains, prop: map[string]any{"vmx": true}, values: `"svm"`, want: false},
	{ops: opsContains, prop: int64(8), values: `8`, want: false},
	{ops: opsContains, prop: "node1 node2", values: `["node1"]`, want: false}, // a list is not a substring
	{ops: opsNotContains, prop: "Intel(R) Xeon(R)", values: `"EPYC"`, want: true},
	{ops: opsNotContains, prop: "AMD EPYC", values: `"EPYC"`, want: false},
	{ops: opsNotContains, prop: []any{"a", "b"}, values: `["a", "z"]`, want: true},
	{ops: opsNotContains, prop: int64(8), values: `8`, want: true},
	{ops: opsIn, prop: "x86_64", values: `["x86_64", "aarch64"]`, want: true},
	{ops: opsIn, prop: "ppc64le", values: `("x86_64", "aarch64")`, jsonValues: `["x86_64", "aarch64"]`, want: false},
	{ops: opsIn, prop: 8, values: `["8", 16]`, want: true},
	{ops: opsNotIn, prop: "ppc64le", values: `["x86_64", "aarch64"]`, want: true},
	{ops: opsNotIn, prop: "x86_64", values: `["x86_64"]`, want: false},
	{ops: opsMatches, prop: "node-01", values: `"node-[0-9]+"`, want: true},
	{ops: opsMatches, prop: "node-01", values: `r"node-\d+"`, jsonValues: `"node-\\d+"`, want: true},
	{ops: opsMatches, prop: "xnode-01", values: `"node-[0-9]+"`, want: false}, // anchored at the start
	{ops: opsMatches, prop: "node-01x", values: `"node-[0-9]+"`, want: false}, // and at the end
	{ops: opsMatches, prop: "a", values: `"a|b"`, want: true},                 // alternation stays anchored
	{ops: opsMatches, prop: "ab", values: `"a|b"`, want: false},
	{ops: opsMatches, prop: int64(16), values: `"1[0-9]"`, want: true},
	{ops: opsMatches, prop: 15.5, values: `"15\\.5"`, want: true},
	{ops: opsMatches, prop: true, values: `"true"`, want: false}, // only strings and numbers have text
	{ops: opsMatches, prop: []any{"a"}, values: `"a"`, want: false},
}

func TestSelector_Match_operators(t *testing.T) {
	for _, c := range operatorCases {
		jsonValues := c.jsonValues
		if jsonValues == "" {
			jsonValues = strings.NewReplacer("True", "true", "False", "false").Replace(c.values)
		}
		for _, op := range c.ops {
			texts := map[string]string{
				"python": fmt.Sprintf("[{'key': 'p', 'operator': %s, 'values': %s}]", py.Repr(op), c.values),
				"json":   fmt.Sprintf(`[{"key": "p", "operator": %q, "values": %s}]`, op, jsonValues),
			}
			for syntax, text := range texts {
				sels, err := ParseSelectors(text)
				if err != nil {
					t.Errorf("%s: ParseSelectors(%s): %v", syntax, text, err)
					continue
				}
				got, err := MatchAll(sels, map[string]any{"p": c.prop, "other": "x"})
				if err != nil {
					t.Errorf("%s: %s on p=%#v: %v", syntax, text, c.prop, err)
				} else if got != c.want {
					t.Errorf("%s: %s on p=%#v = %v, want %v", syntax, text, c.prop, got, c.want)
				}
			}
		}
	}
}

func TestSelector_Match_missingProperty(t *testing.T) {
	values := map[string]string{
		"<": `5`, "lt": `5`, ">": `5`, "gt": `5`, "<=": `5`, "le": `5`, ">=": `5`, "ge": `5`,
		"==": `"x"`, "eq": `"x"`, "!=": `"x"`, "ne": `"x"`, "contains": `"x"`, "not contains": `"x"`,
		"in": `["x", None]`, "not in": `["x", None]`, "matches": `".*"`,
	}
	wantMatch := map[string]bool{"!=": true, "ne": true, "not contains": true, "not in": true}
	if len(values) != len(operators) {
		t.Fatalf("test covers %d operator spellings, package has %d", len(values), len(operators))
	}
	for op, v := range values {
		sels, err := ParseSelectors(fmt.Sprintf("[{'key': 'absent', 'operator': %s, 'values': %s}]", py.Repr(op), v))
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		for _, props := range []map[string]any{{"present": "x"}, {"absent": nil}, nil} {
			got, err := MatchAll(sels, props)
			if err != nil || got != wantMatch[op] {
				t.Errorf("%q on %v = %v, %v; want %v", op, props, got, err, wantMatch[op])
			}
		}
	}
}

func TestParseSelectors_bothSyntaxesAgree(t *testing.T) {
	py := `[{'key': 'kvm', 'operator': '==', 'values': True}, {'key': 'arch', 'operator': 'in', 'values': ('x86_64',)}, {'key': 'memory_gb', 'operator': '>=', 'values': 31.5},]`
	js := `[{"key": "kvm", "operator": "==", "values": true}, {"key": "arch", "operator": "in", "values": ["x86_64"]}, {"key": "memory_gb", "operator": ">=", "values": 31.5}]`
	a, err := ParseSelectors(py)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseSelectors(js)
	if err != nil {
		t.Fatal(err)
	}
	if FormatSelectors(a) != FormatSelectors(b) {
		t.Errorf("python gives %s\njson gives %s", FormatSelectors(a), FormatSelectors(b))
	}
	want := `[{'key': 'kvm', 'operator': '==', 'values': True}, {'key': 'arch', 'operator': 'in', 'values': ['x86_64']}, {'key': 'memory_gb', 'operator': '>=', 'values': 31.5}]`
	if got := FormatSelectors(a); got != want {
		t.Errorf("FormatSelectors = %s\nwant %s", got, want)
	}
	if empty, err := ParseSelectors(" [] "); err != nil || len(empty) != 0 {
		t.Errorf(`ParseSelectors("[]") = %v, %v`, empty, err)
	}
	if ok, err := MatchAll(nil, nil); !ok || err != nil {
		t.Errorf("an empty selector list must match anything, got %v, %v", ok, err)
	}
}

func TestParseSelectors_errors(t *testing.T) {
	cases := []struct {
		in    string
		index int
		want  string
	}{
		{``, -1, `empty input, expected a list of selector dicts (use [] to select any node)`},
		{`[{'key': 'a', 'operator': '==', 'values': 'x'}`, -1, `neither valid JSON nor a Python literal: line 1, column 1: '[' is never closed`},
		{`[{"key": "a", "operator": "==", "values": true},]`, -1, `neither valid JSON nor a Python literal: line 1, column 43: name "true" is not a Python literal (write True, False or None; JSON input must be valid JSON as a whole)`},
		{`{'key': 'a', 'operator': '==', 'values': 'x'}`, -1, `expected a list of selector dicts, got dict`},
		{`"[]"`, -1, `expected a list of selector dicts, got str`},
		{`5`, -1, `expected a list of selector dicts, got int`},
		{`{"a": 1.5}`, -1, `expected a list of selector dicts, got dict`},
		{`[1]`, 0, `selectors[0] 1: expected a dict with 'key', 'operator' and 'values', got int`},
		{`[{'operator': '<', 'values': 1}]`, 0, `selectors[0] {'operator': '<', 'values': 1}: missing 'key'`},
		{`[{'key': '', 'operator': '<', 'values': 1}]`, 0, `selectors[0] {'key': '', 'operator': '<', 'values': 1}: 'key' must not be empty`},
		{`[{'key': 1, 'operator': '<', 'values': 1}]`, 0, `selectors[0] {'key': 1, 'operator': '<', 'values': 1}: 'key' must be a string, got int`},
		{`[{'key': 'a', 'values': 1}]`, 0, `selectors[0] {'key': 'a', 'values': 1}: missing 'operator'`},
		{`[{'key': 'a', 'operator': None, 'values': 1}]`, 0, `selectors[0] {'key': 'a', 'operator': None, 'values': 1}: 'operator' must be a string, got NoneType`},
		{`[{'key': 'a', 'operator': '<'}]`, 0, `selectors[0] {'key': 'a', 'operator': '<'}: missing 'values'`},
		{`[{'key': 'a', 'operator': '==', 'values': 'x'}, {'key': 'b', 'operator': '==', 'values': None}]`, 1, `selectors[1] {'key': 'b', 'operator': '==', 'values': None}: 'values' must not be empty or None`},
		{`[{"key": "b", "operator": "==", "values": null}]`, 0, `selectors[0] {'key': 'b', 'operator': '==', 'values': None}: 'values' must not be empty or None`},
		{`[{'key': 'b', 'operator': 'contains', 'values': ''}]`, 0, `selectors[0] {'key': 'b', 'operator': 'contains', 'values': ''}: 'values' must not be empty or None`},
		{`[{'key': 'b', 'operator': 'contains', 'values': []}]`, 0, `selectors[0] {'key': 'b', 'operator': 'contains', 'values': []}: 'values' must not be empty or None`},
		{`[{'key': 'b', 'operator': '==', 'values': {}}]`, 0, `selectors[0] {'key': 'b', 'operator': '==', 'values': {}}: 'values' must not be empty or None`},
		{`[{'key': 'a', 'operator': '=>', 'values': 1}]`, 0, `selectors[0] {'key': 'a', 'operator': '=>', 'values': 1}: unknown operator '=>' (known: <, lt, >, gt, ==, eq, !=, ne, contains, not contains, >=, ge, <=, le, in, not in, matches)`},
		{`[{'key': 'a', 'operator': 'EQ', 'values': 1}]`, 0, `selectors[0] {'key': 'a', 'operator': 'EQ', 'values': 1}: unknown operator 'EQ' (known: <, lt, >, gt, ==, eq, !=, ne, contains, not contains, >=, ge, <=, le, in, not in, matches)`},
		{`[{'key': 'a', 'operator': '<', 'values': 1, 'value': 2}]`, 0, `selectors[0] {'key': 'a', 'operator': '<', 'value': 2, 'values': 1}: unknown key 'value' (allowed: 'key', 'operator', 'values')`},
		{`[{'key': 'a', 'operator': 'matches', 'values': 'x('}]`, 0, "selectors[0] {'key': 'a', 'operator': 'matches', 'values': 'x('}: 'values' is not a valid regular expression: error parsing regexp: missing closing ): `x(`"},
		{`[{'key': 'a', 'operator': 'matches', 'values': 5}]`, 0, `selectors[0] {'key': 'a', 'operator': 'matches', 'values': 5}: operator 'matches' needs a regular expression string in 'values', got int`},
		{`[{'key': 'a', 'operator': 'in', 'values': 'x'}]`, 0, `selectors[0] {'key': 'a', 'operator': 'in', 'values': 'x'}: operator 'in' needs a list in 'values', got str`},
		{`[{'key': 'a', 'operator': 'lt', 'values': [1]}]`, 0, `selectors[0] {'key': 'a', 'operator': 'lt', 'values': [1]}: operator 'lt' needs a number, string or bool in 'values', got list`},
		{`[{"key": "a", "operator": "==", "values": 99999999999999999999}]`, 0, `selectors[0] {'key': 'a', 'operator': '==', 'values': 99999999999999999999}: integer 99999999999999999999 does not fit in 64 bits`},
	}
	for _, c := range cases {
		sels, err := ParseSelectors(c.in)
		var se *SelectorError
		if !errors.As(err, &se) {
			t.Errorf("ParseSelectors(%s) = %v, %v; want a *SelectorError", c.in, sels, err)
			continue
		}
		if se.Index != c.index || err.Error() != c.want {
			t.Errorf("ParseSelectors(%s) error (index %d):\n got  %s\n want %s (index %d)", c.in, se.Index, err, c.want, c.index)
		}
	}
	_, err := ParseSelectors(`[foo]`)
	var le *py.LiteralError
	if !errors.As(err, &le) || le.Column != 2 {
		t.Errorf("a syntax error must unwrap to a *py.LiteralError with the column, got %#v", err)
	}
}

func TestNewSelector_validates(t *testing.T) {
	s, err := NewSelector("cpu_count", ">=", 4) // a Go int is converted
	if err != nil {
		t.Fatal(err)
	}
	if s.Values != int64(4) || s.String() != "{'key': 'cpu_count', 'operator': '>=', 'values': 4}" {
		t.Errorf("got %#v, %s", s.Values, s)
	}
	if ok, _ := s.Match(map[string]any{"cpu_count": 8}); !ok {
		t.Error("cpu_count 8 >= 4 must match")
	}
	s, err = NewSelector("arch", "in", []string{"x86_64"})
	if err != nil || !reflect.DeepEqual(s.Values, []any{"x86_64"}) {
		t.Errorf("[]string values: %#v, %v", s.Values, err)
	}
	_, err = NewSelector("a", "==", struct{}{})
	if err == nil || err.Error() != `selector {'key': 'a', 'operator': '==', 'values': <struct {} {}>}: 'values': unsupported Go type struct {}` {
		t.Errorf("got %v", err)
	}
	// A struct literal is checked when used.
	_, err = MatchAll([]Selector{{Key: "a", Operator: "==", Values: "x"}, {Key: "a", Operator: "~", Values: "x"}}, map[string]any{"a": "x"})
	var se *SelectorError
	if !errors.As(err, &se) || se.Index != 1 {
		t.Errorf("invalid struct literal selector: got %v", err)
	}
	if ok, err := (Selector{Key: "a", Operator: "matches", Values: "x+"}).Match(map[string]any{"a": "xx"}); !ok || err != nil {
		t.Errorf("struct literal matches: %v, %v", ok, err)
	}
}

// TestParseSelectors_testdata reads selector strings as upstream users
// write them (Cartesian params, pool selectors) and checks them against
// the nodes in nodes.json. Each <case>.sel has a golden <case>.out; run
// with -update to rewrite them after a deliberate change.
func TestParseSelectors_testdata(t *testing.T) {
	dir := filepath.Join("..", "testdata", "selectors")
	raw, err := os.ReadFile(filepath.Join(dir, "nodes.json"))
	if err != nil {
		t.Fatal(err)
	}
	nodes, ok := decodeTestJSON(t, string(raw)).(map[string]any)
	if !ok {
		t.Fatal("nodes.json must hold an object of node name → properties")
	}
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	files, err := filepath.Glob(filepath.Join(dir, "*.sel"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no selector files in %s: %v", dir, err)
	}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		sels, err := ParseSelectors(string(text))
		if err != nil {
			fmt.Fprintf(&out, "error: %v\n", err)
		} else {
			fmt.Fprintf(&out, "parsed: %s\n", FormatSelectors(sels))
			for _, n := range names {
				ok, err := MatchAll(sels, nodes[n].(map[string]any))
				fmt.Fprintf(&out, "%s: %v", n, ok)
				if err != nil {
					fmt.Fprintf(&out, " (%v)", err)
				}
				out.WriteString("\n")
			}
		}
		golden := strings.TrimSuffix(f, ".sel") + ".out"
		if *updateGolden {
			if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -run TestParseSelectors_testdata -update to create it)", err)
		}
		if out.String() != string(want) {
			t.Errorf("%s:\n got\n%s want\n%s", f, out.String(), want)
		}
	}
}

// nodeProps builds candidate properties the way CollectProperties does.
func nodeProps(hostname, vendor string, memGB float64, kvm bool) map[string]any {
	return map[string]any{
		"hostname": hostname, "cpu_vendor_id": vendor, "cpu_model_name": vendor + " CPU",
		"arch": "x86_64", "memory_gb": memGB, "kvm": kvm,
	}
}

func mustSelectors(tb testing.TB, s string) []Selector {
	tb.Helper()
	sels, err := ParseSelectors(s)
	if err != nil {
		tb.Fatal(err)
	}
	return sels
}

func TestAssign_solvesWhereFirstFitFails(t *testing.T) {
	cands := []Candidate{
		{Name: "n1", Props: nodeProps("h1", "AuthenticAMD", 64, true)},
		{Name: "n2", Props: nodeProps("h2", "GenuineIntel", 16, true)},
	}
	reqs := []TagRequest{
		{Tag: "src", Selectors: nil}, // any node; first fit would take n1
		{Tag: "dst", Selectors: mustSelectors(t, `[{'key': 'cpu_vendor_id', 'operator': '==', 'values': 'AuthenticAMD'}]`)},
	}
	// First fit, as upstream does tag by tag, leaves dst without a node.
	if c, _, _ := SelectNode(cands, reqs[0].Selectors); c.Name != "n1" {
		t.Fatalf("first fit for src = %s, the premise of this test is wrong", c.Name)
	}
	got, err := Assign(reqs, cands)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"src": "n2", "dst": "n1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Assign = %v, want %v", got, want)
	}
}

func TestAssign_chainOfConstraints(t *testing.T) {
	// a accepts n1,n2; b accepts only n1; c accepts n2,n3. Only a=n2,
	// b=n1, c=n3 works, which needs a path through two reassignments.
	cands := []Candidate{
		{Name: "n1", Props: map[string]any{"group": []any{"a", "b"}}},
		{Name: "n2", Props: map[string]any{"group": []any{"a", "c"}}},
		{Name: "n3", Props: map[string]any{"group": []any{"c"}}},
	}
	var reqs []TagRequest
	for _, tag := range []string{"a", "b", "c"} {
		reqs = append(reqs, TagRequest{Tag: tag, Selectors: mustSelectors(t, fmt.Sprintf(`[{"key": "group", "operator": "contains", "values": %q}]`, tag))})
	}
	got, err := Assign(reqs, cands)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"a": "n2", "b": "n1", "c": "n3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Assign = %v, want %v", got, want)
	}
}

func TestAssign_deterministicOrder(t *testing.T) {
	cands := []Candidate{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}, {Name: "n4"}}
	reqs := []TagRequest{{Tag: "x"}, {Tag: "y"}, {Tag: "z"}}
	want := map[string]string{"x": "n1", "y": "n2", "z": "n3"}
	for range 20 {
		got, err := Assign(reqs, cands)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("Assign = %v, %v; want %v every time", got, err, want)
		}
	}
	// Candidate order is the preference.
	rev := []Candidate{cands[3], cands[2], cands[1], cands[0]}
	got, err := Assign(reqs, rev)
	if want := map[string]string{"x": "n4", "y": "n3", "z": "n2"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("reversed candidates: Assign = %v, %v; want %v", got, err, want)
	}
	if got, err := Assign(nil, cands); err != nil || len(got) != 0 {
		t.Errorf("no tags: Assign = %v, %v", got, err)
	}
}

func TestAssign_noNodeMatches(t *testing.T) {
	cands := []Candidate{
		{Name: "n1", Props: nodeProps("h1", "GenuineIntel", 16, true)},
		{Name: "n2", Props: nodeProps("h2", "GenuineIntel", 32, false)},
	}
	reqs := []TagRequest{
		{Tag: "src"},
		{Tag: "dst", Selectors: mustSelectors(t, `[{'key': 'memory_gb', 'operator': '>=', 'values': 64}]`)},
	}
	_, err := Assign(reqs, cands)
	var nm *NoMatchError
	if !errors.As(err, &nm) {
		t.Fatalf("Assign error = %v, want *NoMatchError", err)
	}
	if nm.Tag != "dst" || nm.Reason != ReasonNoNode || len(nm.CouldMatch) != 0 || len(nm.Rivals) != 0 {
		t.Errorf("got %+v", nm)
	}
	want := `tag "dst" (selectors [{'key': 'memory_gb', 'operator': '>=', 'values': 64}]): no node matches`
	if err.Error() != want {
		t.Errorf("error:\n got  %s\n want %s", err, want)
	}
}

func TestAssign_nodesTakenByOtherTags(t *testing.T) {
	cands := []Candidate{
		{Name: "n1", Props: nodeProps("h1", "AuthenticAMD", 64, true)},
		{Name: "n2", Props: nodeProps("h2", "AuthenticAMD", 64, true)},
		{Name: "n3", Props: nodeProps("h3", "GenuineIntel", 64, true)},
	}
	amd := mustSelectors(t, `[{'key': 'cpu_vendor_id', 'operator': 'eq', 'values': 'AuthenticAMD'}]`)
	reqs := []TagRequest{{Tag: "a", Selectors: amd}, {Tag: "any"}, {Tag: "b", Selectors: amd}, {Tag: "c", Selectors: amd}}
	_, err := Assign(reqs, cands)
	var nm *NoMatchError
	if !errors.As(err, &nm) {
		t.Fatalf("Assign error = %v, want *NoMatchError", err)
	}
	if nm.Tag != "c" || nm.Reason != ReasonTaken || !reflect.DeepEqual(nm.CouldMatch, []string{"n1", "n2"}) || !reflect.DeepEqual(nm.Rivals, []string{"a", "b"}) {
		t.Errorf("got %+v", nm)
	}
	want := `tag "c" (selectors [{'key': 'cpu_vendor_id', 'operator': 'eq', 'values': 'AuthenticAMD'}]): matching nodes are all taken by other tags (could use n1, n2; also wanted by tags a, b)`
	if err.Error() != want {
		t.Errorf("error:\n got  %s\n want %s", err, want)
	}
}

func TestAssign_badInput(t *testing.T) {
	cands := []Candidate{{Name: "n1"}, {Name: "n2"}}
	cases := []struct {
		reqs  []TagRequest
		cands []Candidate
		want  string
	}{
		{[]TagRequest{{Tag: "a"}, {Tag: "a"}}, cands, `cluster: assign: tag "a" is requested twice`},
		{[]TagRequest{{Tag: ""}}, cands, `cluster: assign: tag request 0 has an empty tag`},
		{[]TagRequest{{Tag: "a"}}, []Candidate{{Name: "n1"}, {Name: "n1"}}, `cluster: assign: candidate "n1" is listed twice`},
		{[]TagRequest{{Tag: "a"}}, []Candidate{{}}, `cluster: assign: candidate 0 has an empty name`},
		{[]TagRequest{{Tag: "a", Selectors: []Selector{{Key: "k", Operator: "nope", Values: 1}}}}, cands,
			`cluster: tag "a": selectors[0] {'key': 'k', 'operator': 'nope', 'values': 1}: unknown operator 'nope' (known: ` + operatorList + `)`},
	}
	for _, c := range cases {
		_, err := Assign(c.reqs, c.cands)
		if err == nil || err.Error() != c.want {
			t.Errorf("Assign(%v) error:\n got  %v\n want %s", c.reqs, err, c.want)
		}
	}
}

func TestSelectNode_firstMatchInOrder(t *testing.T) {
	cands := []Candidate{
		{Name: "n1", Props: nodeProps("h1", "GenuineIntel", 16, true)},
		{Name: "n2", Props: nodeProps("h2", "AuthenticAMD", 64, true)},
		{Name: "n3", Props: nodeProps("h3", "AuthenticAMD", 64, true)},
	}
	c, ok, err := SelectNode(cands, mustSelectors(t, `[{'key': 'cpu_vendor_id', 'operator': '==', 'values': 'AuthenticAMD'}]`))
	if err != nil || !ok || c.Name != "n2" {
		t.Errorf("SelectNode = %s, %v, %v; want n2", c.Name, ok, err)
	}
	// Upstream pops the last candidate when there are no selectors; we
	// take the first and leave the slice alone.
	c, ok, err = SelectNode(cands, nil)
	if err != nil || !ok || c.Name != "n1" || len(cands) != 3 {
		t.Errorf("SelectNode without selectors = %s, %v, %v", c.Name, ok, err)
	}
	_, ok, err = SelectNode(cands, mustSelectors(t, `[{'key': 'memory_gb', 'operator': '>', 'values': 64}]`))
	if ok || err != nil {
		t.Errorf("SelectNode with no match = %v, %v", ok, err)
	}
	_, _, err = SelectNode(cands, []Selector{{Key: "x", Operator: "??", Values: 1}})
	if err == nil {
		t.Error("SelectNode with an invalid selector must fail")
	}
}

func FuzzParseSelectors(f *testing.F) {
	for _, s := range []string{
		`[]`, `[{'key': 'a', 'operator': '==', 'values': 'x'}]`,
		`[{"key": "memory_gb", "operator": ">=", "values": 32}]`,
		`({'key': 'arch', 'operator': 'in', 'values': ('x86_64', 'aarch64')},)`,
		`[{'key': 'h', 'operator': 'matches', 'values': r'node-\d+'}]`,
		`[{'key': 'n', 'operator': 'not contains', 'values': [1, 2.5, None, True]}]`,
		`[{'key': 'k', 'operator': 'eq', 'values': '\x41\u00e9\n'}, ]`,
		`[1+2]`, `{'a': 1}`, `[{"key": "a", "values": null}]`, `'''x'''`, `0x_1f`,
	} {
		f.Add(s)
	}
	props := map[string]any{"a": "x", "memory_gb": 31.5, "arch": "x86_64", "n": []any{int64(1)}, "k": true}
	f.Fuzz(func(t *testing.T, s string) {
		sels, err := ParseSelectors(s)
		if err != nil {
			var se *SelectorError
			if !errors.As(err, &se) {
				t.Fatalf("error is not a *SelectorError: %v", err)
			}
			return
		}
		if _, err := MatchAll(sels, props); err != nil {
			t.Fatalf("a parsed selector failed to match: %v", err)
		}
		// What we print must read back as the same selectors.
		text := FormatSelectors(sels)
		back, err := ParseSelectors(text)
		if err != nil {
			t.Fatalf("FormatSelectors output %s does not parse: %v", text, err)
		}
		if len(back) != len(sels) {
			t.Fatalf("round trip changed the length: %s", text)
		}
		for i := range sels {
			if back[i].Key != sels[i].Key || back[i].Operator != sels[i].Operator || !reflect.DeepEqual(back[i].Values, sels[i].Values) {
				t.Fatalf("round trip of %s changed selector %d: %#v vs %#v", text, i, back[i], sels[i])
			}
		}
	})
}

func decodeTestJSON(tb testing.TB, s string) any {
	tb.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("decoding %q: %v", s, err)
	}
	v, err := py.FromJSON(v)
	if err != nil {
		tb.Fatalf("decoding %q: %v", s, err)
	}
	return v
}
