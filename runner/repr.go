package runner

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/vtcluster/vtcluster/cluster"
)

// PyRepr formats v the way Python's repr() would. The runner prints every
// status message this way because Avocado's runners do (they print() the
// message dict) and Avocado's own functional selftests grep that output
// for substrings such as `'status': 'finished'`.
//
// Supported values: nil (None), bool (True/False), the integer types,
// float64, string (str), []byte (bytes), Message (dict, insertion order),
// map[string]any (dict, sorted keys since Go maps have no order) and []any
// or []string (list). Anything else is formatted with %v inside a str, so a
// mistake shows up in the output instead of crashing the runner.
func PyRepr(v any) string {
	var b strings.Builder
	writeRepr(&b, v)
	return b.String()
}

func writeRepr(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if x {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case uint64:
		b.WriteString(strconv.FormatUint(x, 10))
	case float64:
		b.WriteString(pyFloat(x))
	case string:
		b.WriteString(pyStr(x))
	case []byte:
		b.WriteString(pyBytes(x))
	case Message:
		b.WriteByte('{')
		for i, f := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyStr(f.Key))
			b.WriteString(": ")
			writeRepr(b, f.Value)
		}
		b.WriteByte('}')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyStr(k))
			b.WriteString(": ")
			writeRepr(b, x[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e)
		}
		b.WriteByte(']')
	case []string:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyStr(e))
		}
		b.WriteByte(']')
	default:
		b.WriteString(pyStr(fmt.Sprintf("%v", v)))
	}
}

// pyQuote picks the quote character the way CPython does for str and
// bytes: single quotes unless the text contains a single quote and no
// double quote.
func pyQuote(hasSingle, hasDouble bool) byte {
	if hasSingle && !hasDouble {
		return '"'
	}
	return '\''
}

// pyStr is repr(str). Go strings may hold invalid UTF-8 (argv, file
// names); such bytes are shown as the lone surrogates \udcXX that Python's
// surrogateescape error handler would have produced for the same bytes.
func pyStr(s string) string { return cluster.PyStringRepr(s) }

// pyBytes is repr(bytes).
func pyBytes(p []byte) string {
	s := string(p)
	q := pyQuote(strings.IndexByte(s, '\'') >= 0, strings.IndexByte(s, '"') >= 0)
	var b strings.Builder
	b.Grow(len(p) + 3)
	b.WriteByte('b')
	b.WriteByte(q)
	for _, c := range p {
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == q:
			b.WriteByte('\\')
			b.WriteByte(q)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// pyFloat is repr(float): the shortest digits that round-trip, in
// positional notation when the decimal exponent is in [-4, 16), otherwise
// in scientific notation with at least two exponent digits ("1e-05",
// "1e+16"); integral values keep a ".0".
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	// 'e' with precision -1 gives the shortest round-trip digits:
	// "-d.ddde±XX".
	e := strconv.FormatFloat(f, 'e', -1, 64)
	sign := ""
	if e[0] == '-' {
		sign, e = "-", e[1:]
	}
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	digits := strings.Replace(mant, ".", "", 1)
	if exp < -4 || exp >= 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es, exp = "-", -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
	}
	point := exp + 1 // digits before the decimal point
	switch {
	case point <= 0:
		return sign + "0." + strings.Repeat("0", -point) + digits
	case point >= len(digits):
		return sign + digits + strings.Repeat("0", point-len(digits)) + ".0"
	default:
		return sign + digits[:point] + "." + digits[point:]
	}
}
