package py

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Repr is repr(v). Values outside the model are shown as <type value>,
// so a mistake shows up in the output instead of a panic.
func Repr(v any) string {
	var b strings.Builder
	writeRepr(&b, v)
	return b.String()
}

// Str is str(v): strings as they are, everything else as Repr.
func Str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return Repr(v)
}

func writeRepr(b *strings.Builder, v any) {
	if n, ok := Int(v); ok {
		b.WriteString(strconv.FormatInt(n, 10))
		return
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if x {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case uint64: // beyond int64; Python's ints are unbounded
		b.WriteString(strconv.FormatUint(x, 10))
	case uint:
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	case float64:
		b.WriteString(FloatRepr(x))
	case float32:
		b.WriteString(FloatRepr(float64(x)))
	case string:
		writeStringRepr(b, x)
	case []byte:
		writeBytesRepr(b, x)
	case Dict:
		writeDictRepr(b, len(x), func(i int) (string, any) { return x[i].Key, x[i].Value })
	case map[string]any:
		keys := sortedKeys(x)
		writeDictRepr(b, len(keys), func(i int) (string, any) { return keys[i], x[keys[i]] })
	case []any:
		writeListRepr(b, len(x), func(i int) any { return x[i] })
	case []string:
		writeListRepr(b, len(x), func(i int) any { return x[i] })
	case time.Time:
		fmt.Fprintf(b, "datetime.datetime(%d, %d, %d, %d, %d, %d)", x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second())
	case json.Number:
		if isJSONInt(string(x)) {
			b.WriteString(string(x))
		} else if f, err := x.Float64(); err == nil {
			b.WriteString(FloatRepr(f))
		} else {
			b.WriteString(string(x))
		}
	default:
		// Like Python's default object repr: visibly not a value.
		fmt.Fprintf(b, "<%T %v>", v, v)
	}
}

func writeDictRepr(b *strings.Builder, n int, at func(int) (string, any)) {
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		k, v := at(i)
		writeStringRepr(b, k)
		b.WriteString(": ")
		writeRepr(b, v)
	}
	b.WriteByte('}')
}

func writeListRepr(b *strings.Builder, n int, at func(int) any) {
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		writeRepr(b, at(i))
	}
	b.WriteByte(']')
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// quoteChar picks the quote as CPython does for str and bytes: single
// quotes unless the text holds a single quote and no double quote.
func quoteChar(s string) byte {
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		return '"'
	}
	return '\''
}

// writeStringRepr is repr(str): printable non-ASCII kept, other
// characters escaped, and bytes that are not UTF-8 shown as the
// surrogate escapes Python's surrogateescape would have decoded them to.
func writeStringRepr(b *strings.Builder, s string) {
	q := quoteChar(s)
	b.Grow(len(s) + 2)
	b.WriteByte(q)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			fmt.Fprintf(b, `\udc%02x`, s[i])
			i++
			continue
		}
		i += size
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteByte(q)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x7f && r >= 0x20:
			b.WriteRune(r)
		case r >= 0x80 && unicode.IsPrint(r):
			// Python 3 keeps printable non-ASCII characters as they are;
			// Go's IsPrint uses the same categories (L, M, N, P, S).
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			fmt.Fprintf(b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
}

// writeBytesRepr is repr(bytes).
func writeBytesRepr(b *strings.Builder, p []byte) {
	q := quoteChar(string(p))
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
			fmt.Fprintf(b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(q)
}

// FloatRepr is repr(float): the shortest digits that read back to f, in
// positional notation when the decimal exponent is in [-4, 16), otherwise
// in scientific notation with at least two exponent digits ("1e-05",
// "1e+16"); integral values keep a ".0"; "nan", "inf" and "-inf".
func FloatRepr(f float64) string {
	return string(AppendFloatRepr(nil, f))
}

// AppendFloatRepr appends FloatRepr(f) to dst.
func AppendFloatRepr(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "nan"...)
	case math.IsInf(f, 1):
		return append(dst, "inf"...)
	case math.IsInf(f, -1):
		return append(dst, "-inf"...)
	}
	// 'e' with precision -1 gives the shortest round-trip digits,
	// "-d.ddde±XX".
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], f, 'e', -1, 64)
	if e[0] == '-' {
		dst = append(dst, '-')
		e = e[1:]
	}
	at := strings.IndexByte(string(e), 'e')
	mant, expText := e[:at], e[at+1:]
	exp, _ := strconv.Atoi(string(expText))
	var digits [24]byte
	nd := 0
	for _, c := range mant {
		if c != '.' {
			digits[nd] = c
			nd++
		}
	}
	ds := digits[:nd]
	if exp < -4 || exp >= 16 {
		dst = append(dst, ds[0])
		if nd > 1 {
			dst = append(dst, '.')
			dst = append(dst, ds[1:]...)
		}
		dst = append(dst, 'e')
		if exp < 0 {
			dst = append(dst, '-')
			exp = -exp
		} else {
			dst = append(dst, '+')
		}
		if exp < 10 {
			dst = append(dst, '0')
		}
		return strconv.AppendInt(dst, int64(exp), 10)
	}
	point := exp + 1 // digits before the decimal point
	switch {
	case point <= 0:
		dst = append(dst, "0."...)
		for range -point {
			dst = append(dst, '0')
		}
		return append(dst, ds...)
	case point >= nd:
		dst = append(dst, ds...)
		for range point - nd {
			dst = append(dst, '0')
		}
		return append(dst, ".0"...)
	default:
		dst = append(dst, ds[:point]...)
		dst = append(dst, '.')
		return append(dst, ds[point:]...)
	}
}
