package py

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

// Hand-written cases with the exact messages and positions; the CPython
// comparison is TestParsers_matchCPython.

func TestParseLiteral_values(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{`'abc'`, "abc"},
		{`"abc"`, "abc"},
		{`'a\nb\tc'`, "a\nb\tc"},
		{`'it\'s'`, "it's"},
		{`"say \"hi\""`, `say "hi"`},
		{`'back\\slash'`, `back\slash`},
		{`'\x41\u00e9\U0001F600'`, "Aé😀"},
		{`'\101\0'`, "A\x00"},
		{`'\a\b\f\r\v'`, "\a\b\f\r\v"},
		{`'\q\d'`, `\q\d`}, // unknown escapes keep the backslash
		{`r'\d+\n'`, `\d+\n`},
		{`R"a\"b"`, `a\"b`},
		{`u'x'`, "x"},
		{`'a' "b" 'c'`, "abc"},
		{"'''one\ntwo'''", "one\ntwo"},
		{`"""say "hi" """`, `say "hi" `},
		{"'a\\\nb'", "ab"}, // backslash-newline inside a string
		{`'é'`, "é"},
		{`True`, true},
		{`False`, false},
		{`None`, nil},
		{`0`, int64(0)},
		{`00`, int64(0)},
		{`42`, int64(42)},
		{`-42`, int64(-42)},
		{`+7`, int64(7)},
		{`- 3`, int64(-3)},
		{`1_000_000`, int64(1000000)},
		{`0x1F`, int64(31)},
		{`0o17`, int64(15)},
		{`0b101`, int64(5)},
		{`-0x10`, int64(-16)},
		{`-9223372036854775808`, int64(-9223372036854775808)},
		{`9223372036854775807`, int64(9223372036854775807)},
		{`1.5`, 1.5},
		{`-1.5`, -1.5},
		{`1.`, 1.0},
		{`.5`, 0.5},
		{`1e3`, 1000.0},
		{`1E-3`, 0.001},
		{`09.5`, 9.5},
		{`1_0.5`, 10.5},
		{`[]`, []any{}},
		{`[1, 2,]`, []any{int64(1), int64(2)}},
		{`()`, []any{}},
		{`(1,)`, []any{int64(1)}},
		{`(1)`, int64(1)},
		{`((1, 2), (3,), [4, (5, 6)])`, []any{[]any{int64(1), int64(2)}, []any{int64(3)}, []any{int64(4), []any{int64(5), int64(6)}}}},
		{`{}`, map[string]any{}},
		{`{'a': 1, "b": [True, None],}`, map[string]any{"a": int64(1), "b": []any{true, nil}}},
		{`{'a': 1, 'a': 2}`, map[string]any{"a": int64(2)}}, // last wins, as in Python
		{"  [1,\n  # a comment\n  2]  \n", []any{int64(1), int64(2)}},
		{"\\\n1", int64(1)},
	}
	for _, c := range cases {
		got, err := ParseLiteral(c.in)
		if err != nil {
			t.Errorf("ParseLiteral(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseLiteral(%q) = %#v, want %#v", c.in, got, c.want)
		}
	}
}

func TestParseLiteral_errors(t *testing.T) {
	cases := []struct {
		in        string
		line, col int
		msg       string
	}{
		{``, 1, 1, "empty input, expected a literal"},
		{`1+2`, 1, 2, "unexpected '+' after the value (expressions are not allowed)"},
		{`[1, 2 * 3]`, 1, 7, `unexpected '*' in [...], expected ',' or ']' (expressions are not allowed)`},
		{`foo`, 1, 1, `name "foo" is not allowed, only literals (True, False, None, numbers, strings, lists, tuples, dicts)`},
		{`[1, os.system]`, 1, 5, `name "os" is not allowed, only literals (True, False, None, numbers, strings, lists, tuples, dicts)`},
		{`true`, 1, 1, `name "true" is not a Python literal (write True, False or None; JSON input must be valid JSON as a whole)`},
		{`--1`, 1, 1, "a sign must be followed by a number"},
		{`-True`, 1, 1, "a sign must be followed by a number"},
		{`007`, 1, 1, "leading zeros in decimal integers are not allowed (use 0o for octal)"},
		{`1__0`, 1, 1, "invalid decimal literal"},
		{`1_`, 1, 1, "invalid decimal literal"},
		{`1e`, 1, 1, "invalid decimal literal (exponent without digits)"},
		{`1if 1else 2`, 1, 1, "invalid decimal literal"},
		{`0b102`, 1, 1, `invalid integer literal "0b102"`},
		{`9223372036854775808`, 1, 1, "integer 9223372036854775808 does not fit in 64 bits"},
		{`1e400`, 1, 1, "float 1e400 is out of range"},
		{`1j`, 1, 1, "complex numbers are not supported"},
		{`{1, 2}`, 1, 1, "sets are not supported, expected a dict"},
		{`{1: 2}`, 1, 2, "dict keys must be strings, got int"},
		{`{None: 2}`, 1, 2, "dict keys must be strings, got NoneType"},
		{`{'a' 1}`, 1, 6, `unexpected '1' in a dict, expected ':'`},
		{`b'x'`, 1, 1, "bytes literals are not supported"},
		{`f'{x}'`, 1, 1, "f-strings are not literals"},
		{`xy'z'`, 1, 1, `unknown string prefix "xy"`},
		{`'abc`, 1, 1, "unterminated string literal"},
		{"'a\nb'", 1, 1, `unterminated string literal (a newline needs \n or triple quotes)`},
		{`'\x4'`, 1, 2, `truncated \x escape, expected 2 hex digits`},
		{`'\u12'`, 1, 2, `truncated \u escape, expected 4 hex digits`},
		{`'\U00110000'`, 1, 2, `escape \U00110000 is beyond the last Unicode character`},
		{`'\ud800'`, 1, 2, `escape \ud800 is a lone surrogate, which a UTF-8 string cannot hold`},
		{`'\N{BULLET}'`, 1, 2, `\N{...} escapes are not supported, use \u or \U`},
		{`[1, 2`, 1, 1, `'[' is never closed`},
		{"[\n  1,\n  2 3]", 3, 5, `unexpected '3' in [...], expected ',' or ']'`},
		{`[1,,2]`, 1, 4, "unexpected ',' where a value was expected"},
		{`1 2`, 1, 3, "unexpected '2' after the value"},
		{"'é' x", 1, 5, "unexpected 'x' after the value"}, // columns count characters
		{"'\xff'", 1, 2, "invalid UTF-8"},
		{strings.Repeat("[", 100), 1, 65, "nesting deeper than 64 levels"},
	}
	for _, c := range cases {
		_, err := ParseLiteral(c.in)
		var le *LiteralError
		if !errors.As(err, &le) {
			t.Errorf("ParseLiteral(%q) error = %v, want a *LiteralError", c.in, err)
			continue
		}
		want := fmt.Sprintf("line %d, column %d: %s", c.line, c.col, c.msg)
		if err.Error() != want {
			t.Errorf("ParseLiteral(%q) error:\n got  %s\n want %s", c.in, err, want)
		}
	}
}

func TestRepr_literalRoundTrip(t *testing.T) {
	values := []any{
		nil, true, false, int64(0), int64(-9223372036854775808), 1.5, 1e16, 1e-5, math.Copysign(0, -1), 100.0,
		"", "it's", `say "hi"`, `both ' and "`, "tab\tnl\nbs\\", "\x00\x7f\u0085\u200b", "é😀",
		[]any{}, []any{int64(1), []any{"a", nil}}, map[string]any{"b": 1.25, "a": []any{false}},
	}
	for _, v := range values {
		text := Repr(v)
		back, err := ParseLiteral(text)
		if err != nil {
			t.Errorf("Repr(%#v) = %s, which does not parse: %v", v, text, err)
			continue
		}
		if !reflect.DeepEqual(back, v) {
			t.Errorf("Repr(%#v) = %s, parses back as %#v", v, text, back)
		}
		// DeepEqual compares floats with ==, for which -0.0 == 0.0.
		if f, ok := v.(float64); ok && math.Signbit(f) != math.Signbit(back.(float64)) {
			t.Errorf("Repr(%#v) = %s loses the sign of zero", v, text)
		}
	}
	if got := Repr(math.Copysign(0, -1)); got != "-0.0" {
		t.Errorf("Repr(-0.0) = %s, want -0.0", got)
	}
	for v, want := range map[any]string{
		"it's": `"it's"`, 1e16: "1e+16", 100.0: "100.0", 1e-5: "1e-05", int64(7): "7",
		"\x00": `'\x00'`, "\u200b": `'\u200b'`,
	} {
		if got := Repr(v); got != want {
			t.Errorf("Repr(%#v) = %s, want %s", v, got, want)
		}
	}
	if got := Repr(map[string]any{"b": int64(1), "a": []string{"x"}}); got != "{'a': ['x'], 'b': 1}" {
		t.Errorf("dict formatted as %s", got)
	}
}
