package agent

// The XML-RPC codec. It mirrors CPython's xmlrpc.client byte for byte on
// the way out (so Python peers and our fixtures agree exactly) and accepts
// everything Python's unmarshaller accepts on the way in. kolo/xmlrpc is
// client-only and marshals nil as an empty string, which Python reads as
// '' instead of None; that is why this codec exists.

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Member is one named value of an ordered Struct.
type Member struct {
	Name  string
	Value any
}

// Struct is an XML-RPC struct whose member order is kept, for replies whose
// key order matters to a reader (Python dicts keep insertion order).
// Decoding produces map[string]any; Struct is for encoding.
type Struct []Member

// Get returns the value of the first member called name.
func (s Struct) Get(name string) (any, bool) {
	for _, m := range s {
		if m.Name == name {
			return m.Value, true
		}
	}
	return nil, false
}

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
	var b bytes.Buffer
	b.WriteString(xmlHeader)
	b.WriteString("<methodResponse>\n")
	if err := encodeParams(&b, []any{result}); err != nil {
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
	s := Struct{{"faultCode", code}, {"faultString", sanitizeXMLText(message)}}
	if err := encodeValue(&b, s, 0); err != nil {
		// Only reachable if sanitizeXMLText is wrong; keep the reply valid.
		b.Reset()
		b.WriteString(xmlHeader + "<methodResponse>\n<fault>\n")
		_ = encodeValue(&b, Struct{{"faultCode", code}, {"faultString", "unencodable fault message"}}, 0)
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
			if err := encodeMember(b, m.Name, m.Value, depth); err != nil {
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
	b.WriteString(PyFloatRepr(f))
	b.WriteString("</double></value>\n")
	return nil
}

// PyFloatRepr formats f as Python's repr(float) does: the shortest string
// that round-trips, in fixed notation for exponents -4..15 and scientific
// notation (at least two exponent digits) otherwise, always with a decimal
// point or exponent, and inf/nan spelled in lower case.
func PyFloatRepr(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	// 'e' with -1 precision gives the shortest round-trip digits.
	s := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expStr, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expStr)
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	digits := strings.Replace(mant, ".", "", 1)
	var out string
	if exp >= -4 && exp < 16 {
		if exp >= 0 {
			if len(digits) <= exp+1 {
				out = digits + strings.Repeat("0", exp+1-len(digits)) + ".0"
			} else {
				out = digits[:exp+1] + "." + digits[exp+1:]
			}
		} else {
			out = "0." + strings.Repeat("0", -exp-1) + digits
		}
	} else {
		out = digits[:1]
		if len(digits) > 1 {
			out += "." + digits[1:]
		}
		sign := "+"
		if exp < 0 {
			sign, exp = "-", -exp
		}
		out += fmt.Sprintf("e%s%02d", sign, exp)
	}
	if neg {
		out = "-" + out
	}
	return out
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

// ---- decoding ----

// maxDocumentSize bounds what the decoder will read; the HTTP server also
// limits the body, this protects direct callers.
const maxDocumentSize = 256 << 20

// DecodeCall parses a methodCall document.
func DecodeCall(body []byte) (method string, params []any, err error) {
	d := newDecoder(body)
	root, err := d.expectStart()
	if err != nil {
		return "", nil, err
	}
	if root != "methodCall" {
		return "", nil, d.errorf("expected <methodCall>, found <%s>", root)
	}
	haveName := false
	for {
		tok, err := d.next()
		if err != nil {
			return "", nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "methodName":
				s, err := d.text()
				if err != nil {
					return "", nil, err
				}
				method, haveName = s, true
			case "params":
				params, err = d.params()
				if err != nil {
					return "", nil, err
				}
			default:
				return "", nil, d.errorf("unexpected <%s> in <methodCall>", t.Name.Local)
			}
		case xml.EndElement:
			if !haveName {
				return "", nil, d.errorf("<methodCall> has no <methodName>")
			}
			if params == nil {
				params = []any{}
			}
			return method, params, nil
		}
	}
}

// DecodeResponse parses a methodResponse document. A fault is returned as
// an error of type *WireFault; anything else malformed wraps ErrSyntax.
func DecodeResponse(body []byte) (any, error) {
	d := newDecoder(body)
	root, err := d.expectStart()
	if err != nil {
		return nil, err
	}
	if root != "methodResponse" {
		return nil, d.errorf("expected <methodResponse>, found <%s>", root)
	}
	var result any
	got := false
	for {
		tok, err := d.next()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "params":
				ps, err := d.params()
				if err != nil {
					return nil, err
				}
				if len(ps) != 1 {
					return nil, d.errorf("response has %d params, expected exactly 1", len(ps))
				}
				result, got = ps[0], true
			case "fault":
				return nil, d.fault()
			default:
				return nil, d.errorf("unexpected <%s> in <methodResponse>", t.Name.Local)
			}
		case xml.EndElement:
			if !got {
				return nil, d.errorf("response has neither params nor fault")
			}
			return result, nil
		}
	}
}

type decoder struct {
	x     *xml.Decoder
	depth int
}

func newDecoder(body []byte) *decoder {
	x := xml.NewDecoder(io.LimitReader(bytes.NewReader(body), maxDocumentSize))
	x.Strict = true
	// Python's expat understands only what the document says; we accept
	// utf-8 and ascii (a subset) and refuse other declared charsets.
	x.CharsetReader = func(charset string, in io.Reader) (io.Reader, error) {
		switch strings.ToLower(charset) {
		case "utf-8", "utf8", "us-ascii", "ascii":
			return in, nil
		}
		return nil, fmt.Errorf("unsupported encoding %q", charset)
	}
	return &decoder{x: x}
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s (at byte %d)", ErrSyntax, fmt.Sprintf(format, args...), d.x.InputOffset())
}

// next returns the next start or end element, skipping text, comments and
// processing instructions between elements.
func (d *decoder) next() (xml.Token, error) {
	for {
		tok, err := d.x.Token()
		if err != nil {
			if err == io.EOF {
				return nil, d.errorf("unexpected end of document")
			}
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.EndElement:
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, d.errorf("unexpected text %q", truncate(string(t), 40))
			}
		case xml.Directive:
			// A DOCTYPE could declare entities; Python's expat would read
			// it but we have no use for one.
			return nil, d.errorf("unexpected directive")
		}
	}
}

func (d *decoder) expectStart() (string, error) {
	tok, err := d.next()
	if err != nil {
		return "", err
	}
	t, ok := tok.(xml.StartElement)
	if !ok {
		return "", d.errorf("expected an element")
	}
	return t.Name.Local, nil
}

// text reads character data up to the end of the current element.
func (d *decoder) text() (string, error) {
	var sb strings.Builder
	for {
		tok, err := d.x.Token()
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			sb.Write(t)
		case xml.EndElement:
			return sb.String(), nil
		case xml.StartElement:
			return "", d.errorf("unexpected <%s> inside text", t.Name.Local)
		}
	}
}

func (d *decoder) params() ([]any, error) {
	params := []any{}
	for {
		tok, err := d.next()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "param" {
				return nil, d.errorf("unexpected <%s> in <params>", t.Name.Local)
			}
			v, err := d.wrappedValue("param")
			if err != nil {
				return nil, err
			}
			params = append(params, v)
		case xml.EndElement:
			return params, nil
		}
	}
}

// wrappedValue reads "<value>...</value></parent>" after <parent> was read.
func (d *decoder) wrappedValue(parent string) (any, error) {
	tok, err := d.next()
	if err != nil {
		return nil, err
	}
	t, ok := tok.(xml.StartElement)
	if !ok || t.Name.Local != "value" {
		return nil, d.errorf("expected <value> in <%s>", parent)
	}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	tok, err = d.next()
	if err != nil {
		return nil, err
	}
	if _, ok := tok.(xml.EndElement); !ok {
		return nil, d.errorf("expected </%s>", parent)
	}
	return v, nil
}

// value reads the content of a <value> element, its start already read.
func (d *decoder) value() (any, error) {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		return nil, d.errorf("values nested deeper than %d levels", maxDepth)
	}
	var text strings.Builder
	for {
		tok, err := d.x.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			// A bare <value>text</value> is a string, as in Python.
			return text.String(), nil
		case xml.StartElement:
			if strings.TrimSpace(text.String()) != "" {
				return nil, d.errorf("text mixed with <%s> in <value>", t.Name.Local)
			}
			v, err := d.typed(t.Name.Local)
			if err != nil {
				return nil, err
			}
			tok, err := d.next()
			if err != nil {
				return nil, err
			}
			if _, ok := tok.(xml.EndElement); !ok {
				return nil, d.errorf("more than one type inside <value>")
			}
			return v, nil
		}
	}
}

func (d *decoder) typed(tag string) (any, error) {
	switch tag {
	case "nil":
		if _, err := d.text(); err != nil {
			return nil, err
		}
		return nil, nil
	case "boolean":
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		switch s {
		case "1":
			return true, nil
		case "0":
			return false, nil
		}
		return nil, d.errorf("bad boolean %q (Python accepts only 0 or 1)", truncate(s, 40))
	case "int", "i1", "i2", "i4", "i8", "biginteger":
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, d.errorf("bad integer %q (64-bit signed range)", truncate(s, 40))
		}
		return int(n), nil
	case "double", "float", "bigdecimal":
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		f, err := parsePyFloat(s)
		if err != nil {
			return nil, d.errorf("bad double %q", truncate(s, 40))
		}
		return f, nil
	case "string":
		return d.text()
	case "base64":
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		p, err := decodeBase64Loose(s)
		if err != nil {
			return nil, d.errorf("bad base64: %v", err)
		}
		return p, nil
	case "dateTime.iso8601":
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		t, err := parseDateTime(s)
		if err != nil {
			return nil, d.errorf("bad dateTime.iso8601 %q (expected YYYYMMDDTHH:MM:SS)", truncate(s, 40))
		}
		return t, nil
	case "array":
		return d.array()
	case "struct":
		return d.structure()
	}
	return nil, d.errorf("unknown value type <%s>", tag)
}

func (d *decoder) array() (any, error) {
	out := []any{}
	sawData := false
	for {
		tok, err := d.next()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "data" || sawData {
				return nil, d.errorf("unexpected <%s> in <array>", t.Name.Local)
			}
			sawData = true
			for {
				tok, err := d.next()
				if err != nil {
					return nil, err
				}
				if _, ok := tok.(xml.EndElement); ok {
					break
				}
				st := tok.(xml.StartElement)
				if st.Name.Local != "value" {
					return nil, d.errorf("unexpected <%s> in <data>", st.Name.Local)
				}
				v, err := d.value()
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
		case xml.EndElement:
			return out, nil
		}
	}
}

func (d *decoder) structure() (any, error) {
	out := map[string]any{}
	for {
		tok, err := d.next()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "member" {
				return nil, d.errorf("unexpected <%s> in <struct>", t.Name.Local)
			}
			name, v, err := d.member()
			if err != nil {
				return nil, err
			}
			// Python's dict keeps the last duplicate; so do we.
			out[name] = v
		case xml.EndElement:
			return out, nil
		}
	}
}

func (d *decoder) member() (string, any, error) {
	var name string
	var val any
	haveName, haveValue := false, false
	for {
		tok, err := d.next()
		if err != nil {
			return "", nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "name":
				s, err := d.text()
				if err != nil {
					return "", nil, err
				}
				name, haveName = s, true
			case "value":
				v, err := d.value()
				if err != nil {
					return "", nil, err
				}
				val, haveValue = v, true
			default:
				return "", nil, d.errorf("unexpected <%s> in <member>", t.Name.Local)
			}
		case xml.EndElement:
			if !haveName || !haveValue {
				return "", nil, d.errorf("<member> needs both <name> and <value>")
			}
			return name, val, nil
		}
	}
}

func (d *decoder) fault() error {
	v, err := d.wrappedValue("fault")
	if err != nil {
		return err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return d.errorf("fault value is not a struct")
	}
	f := &WireFault{}
	switch c := m["faultCode"].(type) {
	case int:
		f.Code = c
	case string:
		// Python builds Fault(**struct) and so tolerates a string code.
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil {
			return d.errorf("fault code %q is not a number", c)
		}
		f.Code = n
	default:
		return d.errorf("fault has no integer faultCode")
	}
	s, ok := m["faultString"].(string)
	if !ok {
		return d.errorf("fault has no faultString")
	}
	f.String = s
	return f
}

// parsePyFloat accepts what Python's float() accepts for XML-RPC doubles,
// including inf and nan spelled in any case.
func parsePyFloat(s string) (float64, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(strings.TrimLeft(t, "+-")) {
	case "inf", "infinity", "nan":
		f, err := strconv.ParseFloat(t, 64)
		return f, err
	}
	if strings.ContainsAny(t, "xXpP") {
		return 0, errors.New("not a decimal float")
	}
	return strconv.ParseFloat(strings.ReplaceAll(t, "_", ""), 64)
}

func decodeBase64Loose(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\r':
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.DecodeString(clean)
}

// parseDateTime reads Python's form and, leniently, the ISO 8601 variants
// other XML-RPC peers send. The result is naive (UTC location).
func parseDateTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{dateTimeLayout, "2006-01-02T15:04:05", "20060102T150405", "2006-01-02T15:04:05Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("unrecognised date")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
