package runner

import (
	"math"
	"testing"
)

// Expected strings were produced by CPython 3.11's repr() on the same values.
func TestPyRepr_floats(t *testing.T) {
	cases := []struct {
		in   float64
		want string
	}{
		{1e-05, "1e-05"},
		{12345678901234.5, "12345678901234.5"},
		{674.816302552, "674.816302552"},
		{0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{1e16, "1e+16"},
		{1234567890123456.0, "1234567890123456.0"},
		{0.0001, "0.0001"},
		{123.0, "123.0"},
		{1.5e300, "1.5e+300"},
		{2.5e-300, "2.5e-300"},
		{1e22, "1e+22"},
		{9999999999999998.0, "9999999999999998.0"},
		{0.1, "0.1"},
		{-3.25, "-3.25"},
	}
	for _, c := range cases {
		if got := PyRepr(c.in); got != c.want {
			t.Errorf("PyRepr(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestPyRepr_strAndBytes(t *testing.T) {
	cases := []struct {
		in   any
		want string
	}{
		{[]byte("quote' and \"dq\" \x00\xff\t"), `b'quote\' and "dq" \x00\xff\t'`},
		{"it's", `"it's"`},
		{`both ' and "`, `'both \' and "'`},
		{`dq "`, `'dq "'`},
		{"tab\tnl\ncr\r\\ bs", `'tab\tnl\ncr\r\\ bs'`},
		{"\x00\x7f\u0080\u00ad é 中 \U0001F600 \u2028", `'\x00\x7f\x80\xad é 中 😀 \u2028'`},
		{[]byte("'"), `b"'"`},
		{[]byte(`"`), `b'"'`},
		{[]byte(`'"`), `b'\'"'`},
		{[]byte{}, `b''`},
		{"\xed\xa0", `'\udced\udca0'`},
		{nil, "None"},
		{true, "True"},
		{false, "False"},
		{42, "42"},
		{[]string{"a", "b'"}, `['a', "b'"]`},
		{map[string]any{"z": nil, "a": []any{1, "x"}}, `{'a': [1, 'x'], 'z': None}`},
	}
	for _, c := range cases {
		if got := PyRepr(c.in); got != c.want {
			t.Errorf("PyRepr(%#v) = %s, want %s", c.in, got, c.want)
		}
	}
}

// The line Avocado's helpers print for a message with every kind of value
// (nrunner-protocol §2.6).
func TestPyRepr_message(t *testing.T) {
	m := Message{
		{"log", []byte("quote' and \"dq\" \x00\xff\t")},
		{"s", "it's"},
		{"f", 1e-05},
		{"g", 12345678901234.5},
		{"n", nil},
		{"b", true},
	}
	want := `{'log': b'quote\' and "dq" \x00\xff\t', 's': "it's", 'f': 1e-05, 'g': 12345678901234.5, 'n': None, 'b': True}`
	if got := PyRepr(m); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
