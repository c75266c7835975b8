package py

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The fixtures are CPython's answers: testdata/py/gen_fixtures.py.
func fixture(t *testing.T, name string, into any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "py", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

type tagged struct {
	T string          `json:"t"`
	V json.RawMessage `json:"v"`
	B string          `json:"b"`
}

// untag rebuilds the value the generator tagged, in this package's model
// (dicts as Dict, so key order is checked too).
func untag(t *testing.T, tg tagged) any {
	t.Helper()
	switch tg.T {
	case "None":
		return nil
	case "bool":
		var b bool
		mustUnmarshal(t, tg.V, &b)
		return b
	case "int":
		var s string
		mustUnmarshal(t, tg.V, &s)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	case "float":
		var s string
		mustUnmarshal(t, tg.V, &s)
		return pyFloatFromHex(t, s)
	case "str", "bytes":
		b, err := base64.StdEncoding.DecodeString(tg.B)
		if err != nil {
			t.Fatal(err)
		}
		if tg.T == "str" {
			return string(b)
		}
		return b
	case "list":
		var items []tagged
		mustUnmarshal(t, tg.V, &items)
		out := []any{}
		for _, it := range items {
			out = append(out, untag(t, it))
		}
		return out
	case "dict":
		var items [][2]json.RawMessage
		mustUnmarshal(t, tg.V, &items)
		out := Dict{}
		for _, it := range items {
			var k string
			var v tagged
			mustUnmarshal(t, it[0], &k)
			mustUnmarshal(t, it[1], &v)
			out = append(out, Item{k, untag(t, v)})
		}
		return out
	}
	t.Fatalf("unknown tag %q", tg.T)
	return nil
}

func mustUnmarshal(t *testing.T, data []byte, into any) {
	t.Helper()
	if err := json.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
}

// pyFloatFromHex reads float.hex() output ("0x1.8p+0", "-0x0.0p+0",
// "inf", "nan").
func pyFloatFromHex(t *testing.T, s string) float64 {
	t.Helper()
	switch s {
	case "inf":
		return math.Inf(1)
	case "-inf":
		return math.Inf(-1)
	case "nan":
		return math.NaN()
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("float.hex %q: %v", s, err)
	}
	return f
}

var dumpsOptions = map[string]Options{
	"default":        {AllowNaN: true},
	"indent4":        {Indent: 4, AllowNaN: true},
	"indent2_sorted": {Indent: 2, SortKeys: true, AllowNaN: true},
	"compact":        {ItemSep: ",", KeySep: ":", AllowNaN: true},
	"utf8":           {UTF8: true, AllowNaN: true},
}

func TestValues_matchCPython(t *testing.T) {
	var cases map[string]struct {
		Value tagged
		Repr  string
		Str   tagged
		Type  string
		Dumps map[string]json.RawMessage
	}
	fixture(t, "values.json", &cases)
	for name, c := range cases {
		v := untag(t, c.Value)
		if got := Repr(v); got != c.Repr {
			t.Errorf("%s: Repr = %s, CPython %s", name, got, c.Repr)
		}
		if got, want := Str(v), untag(t, c.Str); got != want {
			t.Errorf("%s: Str = %q, CPython %q", name, got, want)
		}
		if got := TypeName(v); got != c.Type {
			t.Errorf("%s: TypeName = %s, CPython %s", name, got, c.Type)
		}
		for opt, raw := range c.Dumps {
			var want string
			var werr struct{ Error string }
			if json.Unmarshal(raw, &want) != nil {
				mustUnmarshal(t, raw, &werr)
			}
			got, err := Dumps(v, dumpsOptions[opt])
			switch {
			case werr.Error != "" && err == nil:
				t.Errorf("%s/%s: Dumps = %s, CPython raises %s", name, opt, got, werr.Error)
			case werr.Error == "" && err != nil:
				t.Errorf("%s/%s: Dumps: %v, CPython gives %s", name, opt, err, want)
			case got != want:
				t.Errorf("%s/%s: Dumps =\n%s\nCPython:\n%s", name, opt, got, want)
			}
		}
	}
}

func TestFloats_matchCPython(t *testing.T) {
	var cases []struct{ Value, Repr, Dumps string }
	fixture(t, "floats.json", &cases)
	for _, c := range cases {
		f := pyFloatFromHex(t, c.Value)
		if got := FloatRepr(f); got != c.Repr {
			t.Errorf("FloatRepr(%s) = %s, CPython %s", c.Value, got, c.Repr)
		}
		if got, _ := Dumps(f, Options{AllowNaN: true}); got != c.Dumps {
			t.Errorf("Dumps(%s) = %s, CPython %s", c.Value, got, c.Dumps)
		}
	}
}

// dictsToMaps turns the fixture's Dicts into the map[string]any that
// ParseLiteral produces.
func dictsToMaps(v any) any {
	switch x := v.(type) {
	case Dict:
		m := map[string]any{}
		for _, it := range x {
			m[it.Key] = dictsToMaps(it.Value)
		}
		return m
	case []any:
		for i := range x {
			x[i] = dictsToMaps(x[i])
		}
	}
	return v
}

// cpythonCase is one input of a parser fixture and what CPython made of it:
// its value, or (Value nil) the error it raised.
type cpythonCase struct {
	Src   string // literals.json: ast.literal_eval's input
	Doc   string // loads.json: json.loads' input
	Value *tagged
	Error string
}

func TestParsers_matchCPython(t *testing.T) {
	for _, p := range []struct {
		fixture string
		call    string
		parse   func(cpythonCase) (any, error)
		want    func(any) any // CPython's value as the parser returns it
	}{
		{"literals.json", "ParseLiteral", func(c cpythonCase) (any, error) { return ParseLiteral(c.Src) }, dictsToMaps},
		{"loads.json", "Loads", func(c cpythonCase) (any, error) { return Loads([]byte(c.Doc)) }, func(v any) any { return v }},
	} {
		t.Run(p.call, func(t *testing.T) {
			var cases []cpythonCase
			fixture(t, p.fixture, &cases)
			for _, c := range cases {
				in := c.Src + c.Doc // the one the fixture sets
				got, err := p.parse(c)
				if c.Value == nil {
					if err == nil {
						t.Errorf("%s(%q) = %#v; CPython: %s", p.call, in, got, c.Error)
					}
					continue
				}
				want := p.want(untag(t, *c.Value))
				if err != nil {
					t.Errorf("%s(%q): %v; CPython gives %s", p.call, in, err, Repr(want))
				} else if !reflect.DeepEqual(got, want) || Repr(got) != Repr(want) {
					t.Errorf("%s(%q) = %#v, CPython gives %#v", p.call, in, got, want)
				}
			}
		})
	}
}

func TestLoads_refusesWhatIsNotOneDocument(t *testing.T) {
	for _, bad := range []string{``, `{`, `[1] [2]`, `{"a" 1}`, `NaN`} {
		if v, err := Loads([]byte(bad)); err == nil {
			t.Errorf("Loads(%q) = %#v, want an error", bad, v)
		}
	}
}

func TestDumps_outsideTheModel(t *testing.T) {
	// Python's json.dumps writes the lone surrogates of surrogateescape;
	// a Go reader refuses them, so invalid UTF-8 becomes U+FFFD.
	if got, _ := Dumps("ok\xff", Options{}); got != `"ok\ufffd"` {
		t.Errorf("invalid UTF-8: %s", got)
	}
	if got, _ := Dumps("ok\xff\u00e9", Options{UTF8: true}); got != "\"ok\uFFFD\u00e9\"" {
		t.Errorf("invalid UTF-8, ensure_ascii=False: %s", got)
	}
	// allow_nan=False, the zero Options.
	if _, err := Dumps([]any{math.NaN()}, Options{}); err == nil || !strings.Contains(err.Error(), "not JSON compliant") {
		t.Errorf("NaN without AllowNaN: %v", err)
	}
	var nse *NotSerializableError
	if _, err := Dumps(Dict{{"b", []byte("x")}}, Options{}); !errors.As(err, &nse) || err.Error() != "Object of type bytes is not JSON serializable" {
		t.Errorf("bytes: %v", err)
	}
	b64 := func(v any) (any, error) {
		if p, ok := v.([]byte); ok {
			return Dict{{"__base64_encoded__", base64.StdEncoding.EncodeToString(p)}}, nil
		}
		return nil, &NotSerializableError{Type: TypeName(v)}
	}
	if got, err := Dumps(Dict{{"log", []byte("hi")}}, Options{Default: b64}); err != nil || got != `{"log": {"__base64_encoded__": "aGk="}}` {
		t.Errorf("Default: %s, %v", got, err)
	}
	if _, err := Dumps(big.NewInt(1), Options{}); !errors.As(err, &nse) {
		t.Errorf("*big.Int: %v", err)
	}
	cyclic := []any{nil}
	cyclic[0] = cyclic
	if _, err := Dumps(cyclic, Options{}); err == nil {
		t.Error("a cyclic value must be an error, not a stack overflow")
	}
}

// deep builds a list nested n levels with a short leaf, the shape that
// indent amplifies most: each leaf costs 4·depth bytes of indentation.
func deep(n int, leaf any) any {
	v := leaf
	for range n {
		v = []any{v, v}
	}
	return v
}

func TestDump_streamsAndStopsAtTheCap(t *testing.T) {
	v := deep(14, "x") // 16384 leaves at depth 14: ~1.2 MB indented
	whole, err := Dumps(v, Options{Indent: 4})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Dump(&buf, v, Options{Indent: 4}); err != nil || buf.String() != whole {
		t.Fatalf("Dump differs from Dumps (%v)", err)
	}
	for _, limit := range []int64{1, 1000, int64(len(whole)) - 1} {
		var w countingWriter
		err := Dump(&w, v, Options{Indent: 4, MaxBytes: limit})
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("MaxBytes %d: err = %v, want ErrTooLarge", limit, err)
		}
		if w.n > limit {
			t.Errorf("MaxBytes %d: %d bytes reached the writer", limit, w.n)
		}
	}
	var w countingWriter
	if err := Dump(&w, v, Options{Indent: 4, MaxBytes: int64(len(whole))}); err != nil || w.n != int64(len(whole)) {
		t.Errorf("exactly at the cap: %v, %d bytes", err, w.n)
	}
	if _, err := AppendJSON([]byte("prefix"), v, Options{Indent: 4, MaxBytes: int64(len(whole))}); err != nil {
		t.Errorf("AppendJSON counts only its own output against the cap: %v", err)
	}
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

func TestDict_With(t *testing.T) {
	d := Dict{{"a", 1}, {"b", 2}}
	e := d.With("a", 3).With("c", 4)
	if Repr(d) != "{'a': 1, 'b': 2}" || Repr(e) != "{'a': 3, 'b': 2, 'c': 4}" {
		t.Errorf("With changed the original or lost order: %s, %s", Repr(d), Repr(e))
	}
	if v, ok := e.Get("c"); !ok || v != 4 {
		t.Errorf("Get(c) = %v, %v", v, ok)
	}
}

func TestNumber(t *testing.T) {
	for in, want := range map[string]any{"1": int64(1), "-0": int64(0), "1.0": 1.0, "1e2": 100.0, "9223372036854775807": int64(math.MaxInt64)} {
		if got, err := Number(in); err != nil || got != want {
			t.Errorf("Number(%s) = %#v, %v; want %#v", in, got, err, want)
		}
	}
	for _, in := range []string{"9223372036854775808", "1e400"} {
		if got, err := Number(in); err == nil {
			t.Errorf("Number(%s) = %#v, want an error", in, got)
		}
	}
}

func FuzzParseLiteral(f *testing.F) {
	for _, s := range []string{`[{'key': 'a', 'operator': '==', 'values': 1}]`, `'\x41'`, `(1,)`, `{'a': -1.5e3}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseLiteral(s)
		if err != nil {
			return
		}
		// Whatever parses must read back the same from its repr.
		back, err := ParseLiteral(Repr(v))
		if err != nil || Repr(back) != Repr(v) {
			t.Fatalf("%q → %s → %v, %v", s, Repr(v), back, err)
		}
	})
}

// float_repr.txt holds CPython's json.dumps of some 4000 doubles chosen
// for the awkward cases (generated by testdata/logframes/gen_logframes.py).
func TestAppendJSONFloat_pythonTable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "logframes", "float_repr.txt"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		hexBits, want, ok := strings.Cut(line, " ")
		bits, err := strconv.ParseUint(hexBits, 16, 64)
		if !ok || err != nil {
			t.Fatalf("float_repr.txt:%d: bad line %q", i+1, line)
		}
		if got := string(AppendJSONFloat(nil, math.Float64frombits(bits))); got != want {
			t.Errorf("float_repr.txt:%d: bits %s: got %s, want %s", i+1, hexBits, got, want)
		}
		n++
	}
	if n < 4000 {
		t.Fatalf("only %d values checked", n)
	}
}

func FuzzLoadsDumps(f *testing.F) {
	for _, s := range []string{`{"b": [1, 2.5e-7, "\u00e9\ud83d\ude00"], "a": {"a": null}}`, `[true, -0, 1E3]`, `"\b\f\u007f"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Loads([]byte(s))
		if err != nil {
			return
		}
		// What loads must dump, in every mode, and read back the same.
		for _, o := range []Options{{}, {Indent: 4}, {UTF8: true, ItemSep: ",", KeySep: ":"}} {
			text, err := Dumps(v, o)
			if err != nil {
				t.Fatalf("Dumps(%s, %+v): %v", Repr(v), o, err)
			}
			back, err := Loads([]byte(text))
			if err != nil || Repr(back) != Repr(v) {
				t.Fatalf("%q → %s → %q → %v, %v", s, Repr(v), text, back, err)
			}
		}
	})
}
