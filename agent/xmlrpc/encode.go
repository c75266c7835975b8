package xmlrpc

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vtcluster/vtcluster/agent/py"
)

// Member is one named value of an ordered Struct.
type Member = py.Item

// Struct is an XML-RPC struct whose member order is kept, for replies whose
// key order matters to a reader (Python dicts keep insertion order).
// Decoding produces map[string]any; Struct is for encoding.
type Struct = py.Dict

// WireFault is an XML-RPC fault as it travels: any code and any string.
// Faults raised by avocado-vt agents carry a JSON string, see Fault.
type WireFault struct {
	Code   int
	String string
}

func (f *WireFault) Error() string {
	return fmt.Sprintf("xmlrpc: fault %d: %s", f.Code, f.String)
}

// ErrMarshal is wrapped by every error about a value that XML-RPC (as
// Python reads it) cannot carry.
var ErrMarshal = errors.New("xmlrpc: cannot marshal value")

// ErrSyntax is wrapped by every error about a malformed XML-RPC document.
var ErrSyntax = errors.New("xmlrpc: malformed document")

const xmlHeader = "<?xml version='1.0'?>\n"

// python's %04d%02d%02dT%02d:%02d:%02d, the only form Python parses.
const dateTimeLayout = "20060102T15:04:05"

// EncodeCall builds a methodCall document for method with params, exactly
// as Python's xmlrpc.client.dumps(params, method, allow_none=True) does.
func EncodeCall(method string, params []any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xmlHeader)
	b.WriteString("<methodCall>\n<methodName>")
	b.WriteString(method)
	b.WriteString("</methodName>\n")
	if err := encodeParams(&b, params); err != nil {
		return nil, err
	}
	b.WriteString("</methodCall>\n")
	return b.Bytes(), nil
}

// EncodeResponse builds a methodResponse carrying one result value.
func EncodeResponse(result any) ([]byte, error) {
	// Room for the envelope and a short result in one allocation; a
	// bytes.Buffer would start at 64 bytes and grow twice.
	b := bytes.NewBuffer(make([]byte, 0, 256))
	b.WriteString(xmlHeader)
	b.WriteString("<methodResponse>\n")
	if err := encodeParams(b, []any{result}); err != nil {
		return nil, err
	}
	b.WriteString("</methodResponse>\n")
	return b.Bytes(), nil
}

// EncodeFaultResponse builds a methodResponse carrying a fault. It cannot
// fail: characters XML cannot carry are replaced in the message.
func EncodeFaultResponse(code int, message string) []byte {
	var b bytes.Buffer
	b.WriteString(xmlHeader)
	b.WriteString("<methodResponse>\n<fault>\n")
	s := Struct{{Key: "faultCode", Value: code}, {Key: "faultString", Value: sanitizeXMLText(message)}}
	if err := encodeValue(&b, s, 0); err != nil {
		// Only reachable if sanitizeXMLText is wrong; keep the reply valid.
		b.Reset()
		b.WriteString(xmlHeader + "<methodResponse>\n<fault>\n")
		_ = encodeValue(&b, Struct{{Key: "faultCode", Value: code}, {Key: "faultString", Value: "unencodable fault message"}}, 0)
	}
	b.WriteString("</fault>\n</methodResponse>\n")
	return b.Bytes()
}

func encodeParams(b *bytes.Buffer, params []any) error {
	b.WriteString("<params>\n")
	for i, p := range params {
		b.WriteString("<param>\n")
		if err := encodeValue(b, p, 0); err != nil {
			return fmt.Errorf("param %d: %w", i+1, err)
		}
		b.WriteString("</param>\n")
	}
	b.WriteString("</params>\n")
	return nil
}

// maxDepth bounds nesting on both encode and decode: Python refuses
// recursive containers, and a hostile document must not exhaust the stack.
const maxDepth = 100

func encodeValue(b *bytes.Buffer, v any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested deeper than %d levels", ErrMarshal, maxDepth)
	}
	switch x := v.(type) {
	case nil:
		// Python writes nil without a trailing newline; keep it identical.
		b.WriteString("<value><nil/></value>")
		return nil
	case bool:
		if x {
			b.WriteString("<value><boolean>1</boolean></value>\n")
		} else {
			b.WriteString("<value><boolean>0</boolean></value>\n")
		}
		return nil
	case int:
		return encodeInt(b, int64(x))
	case int8:
		return encodeInt(b, int64(x))
	case int16:
		return encodeInt(b, int64(x))
	case int32:
		return encodeInt(b, int64(x))
	case int64:
		return encodeInt(b, x)
	case uint8:
		return encodeInt(b, int64(x))
	case uint16:
		return encodeInt(b, int64(x))
	case uint32:
		return encodeInt(b, int64(x))
	case uint:
		if uint64(x) > math.MaxInt64 {
			return fmt.Errorf("%w: integer %d exceeds 64 bits", ErrMarshal, x)
		}
		return encodeInt(b, int64(x))
	case uint64:
		if x > math.MaxInt64 {
			return fmt.Errorf("%w: integer %d exceeds 64 bits", ErrMarshal, x)
		}
		return encodeInt(b, int64(x))
	case float32:
		return encodeDouble(b, float64(x))
	case float64:
		return encodeDouble(b, x)
	case string:
		if err := checkXMLText(x); err != nil {
			return err
		}
		b.WriteString("<value><string>")
		escapeText(b, x)
		b.WriteString("</string></value>\n")
		return nil
	case []byte:
		b.WriteString("<value><base64>\n")
		b.WriteString(encodeBytesLikePython(x))
		b.WriteString("</base64></value>\n")
		return nil
	case time.Time:
		b.WriteString("<value><dateTime.iso8601>")
		b.WriteString(x.Format(dateTimeLayout))
		b.WriteString("</dateTime.iso8601></value>\n")
		return nil
	case []any:
		b.WriteString("<value><array><data>\n")
		for _, e := range x {
			if err := encodeValue(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteString("</data></array></value>\n")
		return nil
	case Struct:
		b.WriteString("<value><struct>\n")
		for _, m := range x {
			if err := encodeMember(b, m.Key, m.Value, depth); err != nil {
				return err
			}
		}
		b.WriteString("</struct></value>\n")
		return nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("<value><struct>\n")
		for _, k := range keys {
			if err := encodeMember(b, k, x[k], depth); err != nil {
				return err
			}
		}
		b.WriteString("</struct></value>\n")
		return nil
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return encodeValue(b, m, depth)
	case []string:
		a := make([]any, len(x))
		for i, s := range x {
			a[i] = s
		}
		return encodeValue(b, a, depth)
	case *big.Int:
		if !x.IsInt64() {
			return fmt.Errorf("%w: integer %s exceeds 64 bits", ErrMarshal, x)
		}
		return encodeInt(b, x.Int64())
	}
	return encodeReflect(b, v, depth)
}

// encodeReflect handles typed slices, maps with string keys and pointers,
// so services can return ordinary Go values.
func encodeReflect(b *bytes.Buffer, v any, depth int) error {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return encodeValue(b, nil, depth)
		}
		return encodeValue(b, rv.Elem().Interface(), depth)
	case reflect.Slice, reflect.Array:
		a := make([]any, rv.Len())
		for i := range a {
			a[i] = rv.Index(i).Interface()
		}
		return encodeValue(b, a, depth)
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("%w: struct keys must be strings, got %s", ErrMarshal, rv.Type().Key())
		}
		m := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			m[it.Key().String()] = it.Value().Interface()
		}
		return encodeValue(b, m, depth)
	case reflect.String:
		return encodeValue(b, rv.String(), depth)
	case reflect.Bool:
		return encodeValue(b, rv.Bool(), depth)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return encodeInt(b, rv.Int())
	case reflect.Float32, reflect.Float64:
		return encodeDouble(b, rv.Float())
	}
	return fmt.Errorf("%w: unsupported type %T", ErrMarshal, v)
}

func encodeMember(b *bytes.Buffer, name string, v any, depth int) error {
	if err := checkXMLText(name); err != nil {
		return fmt.Errorf("struct member name: %w", err)
	}
	b.WriteString("<member>\n<name>")
	escapeText(b, name)
	b.WriteString("</name>\n")
	if err := encodeValue(b, v, depth+1); err != nil {
		return fmt.Errorf("member %q: %w", name, err)
	}
	b.WriteString("</member>\n")
	return nil
}

// encodeInt writes <int> inside int32, as Python does, and <i8> beyond it.
// Python refuses to send such values but reads <i8> happily, which is how
// sizes of 2 GiB and more survive the wire.
func encodeInt(b *bytes.Buffer, n int64) error {
	if n >= math.MinInt32 && n <= math.MaxInt32 {
		b.WriteString("<value><int>")
		b.WriteString(strconv.FormatInt(n, 10))
		b.WriteString("</int></value>\n")
		return nil
	}
	b.WriteString("<value><i8>")
	b.WriteString(strconv.FormatInt(n, 10))
	b.WriteString("</i8></value>\n")
	return nil
}

func encodeDouble(b *bytes.Buffer, f float64) error {
	b.WriteString("<value><double>")
	b.Write(py.AppendFloatRepr(b.AvailableBuffer(), f))
	b.WriteString("</double></value>\n")
	return nil
}

// encodeBytesLikePython mirrors base64.encodebytes: lines of 76 characters,
// each ended by a newline (an empty input gives an empty string).
func encodeBytesLikePython(p []byte) string {
	enc := base64.StdEncoding.EncodeToString(p)
	var sb strings.Builder
	for len(enc) > 76 {
		sb.WriteString(enc[:76])
		sb.WriteByte('\n')
		enc = enc[76:]
	}
	if enc != "" {
		sb.WriteString(enc)
		sb.WriteByte('\n')
	}
	return sb.String()
}

// escapeText escapes exactly what Python's xmlrpc escape() does.
func escapeText(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		default:
			b.WriteByte(c)
		}
	}
}

// XMLTextError reports a string that XML 1.0 cannot carry. Python would
// write it raw and produce a document no parser accepts; we refuse instead
// and say where the offending character is.
type XMLTextError struct {
	Offset int
	Rune   rune
}

func (e *XMLTextError) Error() string {
	return fmt.Sprintf("%v: string has character %U at byte %d that XML cannot carry (send it as bytes/base64)", ErrMarshal, e.Rune, e.Offset)
}

func (e *XMLTextError) Unwrap() error { return ErrMarshal }

func checkXMLText(s string) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return &XMLTextError{Offset: i, Rune: r}
			}
		}
		if !isXMLChar(r) {
			return &XMLTextError{Offset: i, Rune: r}
		}
	}
	return nil
}

func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		(r >= 0x20 && r <= 0xD7FF) ||
		(r >= 0xE000 && r <= 0xFFFD) ||
		(r >= 0x10000 && r <= 0x10FFFF)
}

// sanitizeXMLText replaces characters XML cannot carry with U+FFFD; used
// only for fault messages, which must always be deliverable.
func sanitizeXMLText(s string) string {
	if checkXMLText(s) == nil {
		return s
	}
	var sb strings.Builder
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				sb.WriteRune(utf8.RuneError)
				continue
			}
		}
		if !isXMLChar(r) {
			sb.WriteRune(utf8.RuneError)
			continue
		}
		sb.WriteRune(r)
	}
	return sb.String()
}
