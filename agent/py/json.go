package py

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Options are json.dumps's keyword arguments. The zero value is
// json.dumps(v, allow_nan=False): Python's default allow_nan=True writes
// NaN and Infinity, which no strict JSON reader (Go's included) accepts,
// so a caller that wants them says so.
type Options struct {
	// Indent is indent=N; 0 means indent=None (one line). Python's
	// indent=0 (newlines, no indentation) has no caller and is not offered.
	Indent int
	// ItemSep and KeySep are separators=(ItemSep, KeySep). Empty means
	// Python's default for the mode: ", " on one line, "," when
	// indenting, and ": ".
	ItemSep, KeySep string
	// SortKeys is sort_keys=True. A map[string]any has no order to keep
	// and is always written sorted.
	SortKeys bool
	// UTF8 is ensure_ascii=False: non-ASCII characters are written as
	// they are instead of as \uXXXX escapes.
	UTF8 bool
	// AllowNaN is allow_nan=True.
	AllowNaN bool
	// Default is default=: it turns a value outside the model (bytes, for
	// one) into one inside it. Without it such values are an error, as in
	// Python.
	Default func(v any) (any, error)
	// MaxBytes, when positive, bounds the output: writing stops with
	// ErrTooLarge before more than MaxBytes bytes are produced, so an
	// input that amplifies (deep nesting under indent) cannot exhaust
	// memory or disk.
	MaxBytes int64
}

// ErrTooLarge is returned when the output would exceed Options.MaxBytes.
var ErrTooLarge = errors.New("JSON output exceeds the size limit")

// NotSerializableError is Python's TypeError for a value json.dumps does
// not know.
type NotSerializableError struct{ Type string }

func (e *NotSerializableError) Error() string {
	return fmt.Sprintf("Object of type %s is not JSON serializable", e.Type)
}

// maxEncodeDepth stands in for Python's recursion limit; Go values can
// be cyclic (a []any holding itself) and must not overflow the stack.
const maxEncodeDepth = 1000

// Dumps is json.dumps(v, **o).
func Dumps(v any, o Options) (string, error) {
	b, err := AppendJSON(nil, v, o)
	return string(b), err
}

// AppendJSON appends json.dumps(v, **o) to dst.
func AppendJSON(dst []byte, v any, o Options) ([]byte, error) {
	e := newEncoder(nil, o)
	e.buf = dst
	e.base = int64(len(dst))
	if err := e.value(v, 0); err != nil {
		return dst, err
	}
	return e.buf, nil
}

// Dump is json.dump(v, w, **o): the text is streamed to w in pieces, so
// memory stays bounded by the input rather than by the (possibly much
// larger) output. On error, part of the document may have been written.
func Dump(w io.Writer, v any, o Options) error {
	e := newEncoder(w, o)
	if err := e.value(v, 0); err != nil {
		return err
	}
	return e.flush()
}

type encoder struct {
	w       io.Writer
	buf     []byte
	base    int64 // bytes of buf that were there before (AppendJSON)
	written int64 // bytes already handed to w
	o       Options
	itemSep string
	keySep  string
}

const flushAt = 32 << 10

func newEncoder(w io.Writer, o Options) *encoder {
	e := &encoder{w: w, o: o, itemSep: o.ItemSep, keySep: o.KeySep}
	if e.itemSep == "" {
		e.itemSep = ", "
		if o.Indent > 0 {
			e.itemSep = ","
		}
	}
	if e.keySep == "" {
		e.keySep = ": "
	}
	if w != nil {
		e.buf = make([]byte, 0, flushAt+flushAt/4)
	}
	return e
}

// check enforces MaxBytes and hands full buffers to the writer; it runs
// after every value, and no single step adds more than that value's own
// text plus one indentation.
func (e *encoder) check() error {
	if e.o.MaxBytes > 0 && e.written+int64(len(e.buf))-e.base > e.o.MaxBytes {
		return ErrTooLarge
	}
	if e.w != nil && len(e.buf) >= flushAt {
		return e.flush()
	}
	return nil
}

func (e *encoder) flush() error {
	if e.w == nil || len(e.buf) == 0 {
		return nil
	}
	n, err := e.w.Write(e.buf)
	e.written += int64(n)
	e.buf = e.buf[:0]
	return err
}

func (e *encoder) newline(depth int) {
	if e.o.Indent <= 0 {
		return
	}
	e.buf = append(e.buf, '\n')
	for range depth * e.o.Indent {
		e.buf = append(e.buf, ' ')
	}
}

func (e *encoder) value(v any, depth int) error {
	if depth > maxEncodeDepth {
		return errors.New("maximum recursion depth exceeded while encoding a JSON object")
	}
	if n, ok := Int(v); ok {
		e.buf = strconv.AppendInt(e.buf, n, 10)
		return e.check()
	}
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, "null"...)
	case bool:
		e.buf = strconv.AppendBool(e.buf, x)
	case uint64:
		e.buf = strconv.AppendUint(e.buf, x, 10)
	case uint:
		e.buf = strconv.AppendUint(e.buf, uint64(x), 10)
	case float32:
		return e.value(float64(x), depth)
	case float64:
		if !e.o.AllowNaN && (math.IsNaN(x) || math.IsInf(x, 0)) {
			//lint:ignore ST1005 Python's ValueError text, word for word
			return fmt.Errorf("Out of range float values are not JSON compliant: %s", FloatRepr(x))
		}
		e.buf = AppendJSONFloat(e.buf, x)
	case string:
		e.buf = e.appendString(e.buf, x)
	case []any:
		return e.list(len(x), func(i int) any { return x[i] }, depth)
	case []string:
		return e.list(len(x), func(i int) any { return x[i] }, depth)
	case Dict:
		d := x
		if e.o.SortKeys {
			d = append(Dict(nil), x...)
			sort.SliceStable(d, func(i, j int) bool { return d[i].Key < d[j].Key })
		}
		return e.dict(len(d), func(i int) (string, any) { return d[i].Key, d[i].Value }, depth)
	case map[string]any:
		keys := sortedKeys(x)
		return e.dict(len(keys), func(i int) (string, any) { return keys[i], x[keys[i]] }, depth)
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return e.value(m, depth)
	default:
		if e.o.Default == nil {
			return &NotSerializableError{Type: TypeName(v)}
		}
		conv, err := e.o.Default(v)
		if err != nil {
			return err
		}
		return e.value(conv, depth+1)
	}
	return e.check()
}

func (e *encoder) list(n int, at func(int) any, depth int) error {
	return e.container('[', ']', n, depth, func(i int) error { return e.value(at(i), depth+1) })
}

func (e *encoder) dict(n int, at func(int) (string, any), depth int) error {
	return e.container('{', '}', n, depth, func(i int) error {
		k, v := at(i)
		e.buf = e.appendString(e.buf, k)
		e.buf = append(e.buf, e.keySep...)
		return e.value(v, depth+1)
	})
}

// container writes n items between opening and closing as json.dumps lays
// out a list or a dict: empty as "[]" or "{}", else the items separated by
// itemSep, each on its own line when indenting.
func (e *encoder) container(opening, closing byte, n, depth int, item func(int) error) error {
	if n == 0 {
		e.buf = append(e.buf, opening, closing)
		return e.check()
	}
	e.buf = append(e.buf, opening)
	for i := range n {
		if i > 0 {
			e.buf = append(e.buf, e.itemSep...)
		}
		e.newline(depth + 1)
		if err := item(i); err != nil {
			return err
		}
	}
	e.newline(depth)
	e.buf = append(e.buf, closing)
	return e.check()
}

func (e *encoder) appendString(dst []byte, s string) []byte {
	if e.o.UTF8 {
		return appendJSONStringUTF8(dst, s)
	}
	return AppendJSONString(dst, s)
}

// AppendJSONFloat appends f as json.dumps writes a float: repr(f), with
// the non-finite values spelled NaN, Infinity and -Infinity.
func AppendJSONFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	return AppendFloatRepr(dst, f)
}

const hexDigits = "0123456789abcdef"

// shortEscape is what json.dumps writes for the characters it does not
// spell as \uXXXX.
var shortEscape = [128]byte{'"': '"', '\\': '\\', '\n': 'n', '\r': 'r', '\t': 't', '\b': 'b', '\f': 'f'}

// AppendJSONString appends s as json.dumps (ensure_ascii=True) writes a
// string: the short escapes \" \\ \n \r \t \b \f, every other control or
// non-ASCII character as \uXXXX, astral characters as surrogate pairs.
// Bytes that are not UTF-8 become U+FFFD: Python would write the lone
// surrogates of surrogateescape, which most JSON readers reject.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		if c < utf8.RuneSelf {
			if esc := shortEscape[c]; esc != 0 {
				dst = append(dst, '\\', esc)
			} else {
				dst = appendU4(dst, rune(c))
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r >= 0x10000 {
			r -= 0x10000
			dst = appendU4(dst, 0xD800+(r>>10))
			dst = appendU4(dst, 0xDC00+(r&0x3FF))
		} else {
			dst = appendU4(dst, r) // RuneError for invalid bytes
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONStringUTF8 is ensure_ascii=False: only the quote, the
// backslash and control characters are escaped.
func appendJSONStringUTF8(dst []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		if esc := shortEscape[c]; esc != 0 {
			dst = append(dst, '\\', esc)
		} else {
			dst = appendU4(dst, rune(c))
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendU4(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[(r>>12)&0xF], hexDigits[(r>>8)&0xF], hexDigits[(r>>4)&0xF], hexDigits[r&0xF])
}

// Number converts a JSON number as json.loads does, within the model:
// written as an integer it is an int64 (an error when it does not fit,
// where Python's int would grow), otherwise a float64 (an error when it
// overflows, where Python would give inf).
func Number(s string) (any, error) {
	if isJSONInt(s) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("integer %s does not fit in 64 bits", s)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("number %s is out of range", s)
	}
	return f, nil
}

// FromJSON replaces, in place, the json.Number values that encoding/json
// (with UseNumber) left in v by what Number makes of them.
func FromJSON(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		return Number(string(x))
	case []any:
		for i, e := range x {
			n, err := FromJSON(e)
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
	case map[string]any:
		for k, e := range x {
			n, err := FromJSON(e)
			if err != nil {
				return nil, err
			}
			x[k] = n
		}
	}
	return v, nil
}

// Loads is json.loads for one JSON document: objects become Dicts in the
// document's key order (a repeated key keeps its first place and its last
// value, as a Python dict does), numbers follow Number.
func Loads(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := loadValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("extra data after the JSON value")
	}
	return v, nil
}

func loadValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, io.ErrUnexpectedEOF
	} else if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			out := []any{}
			for dec.More() {
				e, err := loadValue(dec)
				if err != nil {
					return nil, err
				}
				out = append(out, e)
			}
			_, err := dec.Token()
			return out, err
		}
		out := Dict{}
		var index map[string]int // key → place in out; a Get per key would be quadratic
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k := kt.(string) // the decoder only yields string keys
			e, err := loadValue(dec)
			if err != nil {
				return nil, err
			}
			if index == nil {
				index = map[string]int{}
			}
			if i, dup := index[k]; dup {
				out[i].Value = e
				continue
			}
			index[k] = len(out)
			out = append(out, Item{k, e})
		}
		_, err := dec.Token()
		return out, err
	case json.Number:
		return Number(string(t))
	}
	return tok, nil // nil, bool or string
}
