package xmlrpc

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// maxDocumentSize bounds what the decoder will read; the HTTP server also
// limits the body, this protects direct callers.
const maxDocumentSize = 256 << 20

// CallLimits bound what decoding one call may build, because a small
// document can describe a large value tree (an 8-byte <value/> becomes a
// 16-byte interface plus its share of a slice or map). Zero fields are
// unlimited.
type CallLimits struct {
	// MaxValues bounds the number of values (every <value>, at any depth).
	MaxValues int
	// MaxStringBytes bounds the total bytes of strings, member names and
	// decoded base64.
	MaxStringBytes int
	// Known, when set, is asked about the method name as soon as it is
	// read; an unknown method fails with *UnknownMethodError before any
	// parameter is decoded. The name must then come before <params>, as
	// every XML-RPC client writes it.
	Known func(method string) bool
}

// ErrCallTooLarge is wrapped by decoding errors for a call beyond its
// CallLimits.
var ErrCallTooLarge = errors.New("call too large")

// UnknownMethodError is returned by DecodeCallLimited for a method that
// CallLimits.Known refused.
type UnknownMethodError struct{ Method string }

func (e *UnknownMethodError) Error() string {
	return fmt.Sprintf("method %q is not supported", e.Method)
}

// Decoding accepts everything CPython's xmlrpc unmarshaller accepts: the
// int, i1, i2, i4, i8 and biginteger spellings, bare <value>text</value>
// strings, empty values, namespaced tags (ex:nil), base64 with line
// breaks. It refuses DOCTYPEs and bounds depth and size, because agents
// face callers they do not control.
//
// DecodeCall parses a methodCall document.
func DecodeCall(body []byte) (method string, params []any, err error) {
	return DecodeCallLimited(body, CallLimits{})
}

// DecodeCallLimited parses a methodCall document within lim. The shape
// clients write is read by fastCall; anything else by the full decoder.
func DecodeCallLimited(body []byte, lim CallLimits) (method string, params []any, err error) {
	if method, params, ok := fastCall(body, lim); ok {
		return method, params, nil
	}
	return fullCall(body, lim)
}

// fullCall is DecodeCallLimited on encoding/xml, for every document.
func fullCall(body []byte, lim CallLimits) (method string, params []any, err error) {
	if err := checkCharRefs(body); err != nil {
		return "", nil, err
	}
	d := newDecoder(body)
	d.lim = lim
	if err := d.root("methodCall"); err != nil {
		return "", nil, err
	}
	haveName := false
	err = d.children(func(name string) error {
		switch name {
		case "methodName":
			s, err := d.text()
			if err != nil {
				return err
			}
			method, haveName = s, true
			if lim.Known != nil && !lim.Known(method) {
				return &UnknownMethodError{Method: method}
			}
		case "params":
			if lim.Known != nil && !haveName {
				return d.errorf("<params> before <methodName>")
			}
			ps, err := d.params()
			if err != nil {
				return err
			}
			params = ps
		default:
			return d.errorf("unexpected <%s> in <methodCall>", name)
		}
		return nil
	})
	var unknown *UnknownMethodError
	switch {
	case errors.As(err, &unknown):
		return method, nil, err
	case err != nil:
		return "", nil, err
	case !haveName:
		return "", nil, d.errorf("<methodCall> has no <methodName>")
	case params == nil:
		params = []any{}
	}
	return method, params, nil
}

// DecodeResponse parses a methodResponse document. A fault is returned as
// an error of type *WireFault; anything else malformed wraps ErrSyntax.
func DecodeResponse(body []byte) (any, error) {
	d := newDecoder(body)
	if err := d.root("methodResponse"); err != nil {
		return nil, err
	}
	var result any
	got := false
	err := d.children(func(name string) error {
		switch name {
		case "params":
			ps, err := d.params()
			if err != nil {
				return err
			}
			if len(ps) != 1 {
				return d.errorf("response has %d params, expected exactly 1", len(ps))
			}
			result, got = ps[0], true
			return nil
		case "fault":
			return d.fault()
		}
		return d.errorf("unexpected <%s> in <methodResponse>", name)
	})
	switch {
	case err != nil:
		return nil, err
	case !got:
		return nil, d.errorf("response has neither params nor fault")
	}
	return result, nil
}

type decoder struct {
	x     *xml.Decoder
	depth int

	lim      CallLimits
	values   int
	strBytes int
}

// countString charges n bytes of decoded text against the limit.
func (d *decoder) countString(n int) error {
	d.strBytes += n
	if d.lim.MaxStringBytes > 0 && d.strBytes > d.lim.MaxStringBytes {
		return fmt.Errorf("%w: more than %d bytes of strings", ErrCallTooLarge, d.lim.MaxStringBytes)
	}
	return nil
}

func newDecoder(body []byte) *decoder {
	// A *bytes.Reader is an io.ByteReader, so xml.NewDecoder uses it as it
	// is instead of wrapping it in a 4 KiB bufio.Reader for every call.
	x := xml.NewDecoder(bytes.NewReader(body[:min(len(body), maxDocumentSize)]))
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

// root reads the document's root element, which must be want.
func (d *decoder) root(want string) error {
	tok, err := d.next()
	if err != nil {
		return err
	}
	t, ok := tok.(xml.StartElement)
	if !ok {
		return d.errorf("expected an element")
	}
	if t.Name.Local != want {
		return d.errorf("expected <%s>, found <%s>", want, t.Name.Local)
	}
	return nil
}

// children calls child with the name of each child element of the
// current element, whose start was read, until its end; child reads the
// element to its end.
func (d *decoder) children(child func(name string) error) error {
	for {
		tok, err := d.next()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := child(t.Name.Local); err != nil {
				return err
			}
		case xml.EndElement:
			return nil
		}
	}
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
			if err := d.countString(len(t)); err != nil {
				return "", err
			}
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
	err := d.children(func(name string) error {
		if name != "param" {
			return d.errorf("unexpected <%s> in <params>", name)
		}
		v, err := d.wrappedValue("param")
		params = append(params, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return params, nil
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
	d.values++
	if d.lim.MaxValues > 0 && d.values > d.lim.MaxValues {
		return nil, fmt.Errorf("%w: more than %d values", ErrCallTooLarge, d.lim.MaxValues)
	}
	var text strings.Builder
	for {
		tok, err := d.x.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if err := d.countString(len(t)); err != nil {
				return nil, err
			}
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
	case "array":
		return d.array()
	case "struct":
		return d.structure()
	}
	conv, ok := scalarTypes[tag]
	if !ok {
		return nil, d.errorf("unknown value type <%s>", tag)
	}
	s, err := d.text()
	if err != nil {
		return nil, err
	}
	v, err := conv(s)
	if err != nil {
		return nil, d.errorf("%v", err)
	}
	return v, nil
}

// scalarTypes converts the text of each scalar element as Python's
// unmarshaller does (every spelling it accepts), for both decoders.
var scalarTypes = map[string]func(s string) (any, error){
	"nil": func(string) (any, error) { return nil, nil },
	"boolean": func(s string) (any, error) {
		switch s {
		case "1":
			return true, nil
		case "0":
			return false, nil
		}
		return nil, fmt.Errorf("bad boolean %q (Python accepts only 0 or 1)", truncate(s, 40))
	},
	"int": decodeInt, "i1": decodeInt, "i2": decodeInt, "i4": decodeInt, "i8": decodeInt, "biginteger": decodeInt,
	"double": decodeDouble, "float": decodeDouble, "bigdecimal": decodeDouble,
	"string": func(s string) (any, error) { return s, nil },
	"base64": func(s string) (any, error) {
		p, err := decodeBase64Loose(s)
		if err != nil {
			return nil, fmt.Errorf("bad base64: %v", err)
		}
		return p, nil
	},
	"dateTime.iso8601": func(s string) (any, error) {
		t, err := parseDateTime(s)
		if err != nil {
			return nil, fmt.Errorf("bad dateTime.iso8601 %q (expected YYYYMMDDTHH:MM:SS)", truncate(s, 40))
		}
		return t, nil
	},
}

func decodeInt(s string) (any, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bad integer %q (64-bit signed range)", truncate(s, 40))
	}
	return n, nil
}

func decodeDouble(s string) (any, error) {
	f, err := parsePyFloat(s)
	if err != nil {
		return nil, fmt.Errorf("bad double %q", truncate(s, 40))
	}
	return f, nil
}

func (d *decoder) array() (any, error) {
	out := []any{}
	sawData := false
	err := d.children(func(name string) error {
		if name != "data" || sawData {
			return d.errorf("unexpected <%s> in <array>", name)
		}
		sawData = true
		return d.children(func(name string) error {
			if name != "value" {
				return d.errorf("unexpected <%s> in <data>", name)
			}
			v, err := d.value()
			out = append(out, v)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (d *decoder) structure() (any, error) {
	out := map[string]any{}
	err := d.children(func(name string) error {
		if name != "member" {
			return d.errorf("unexpected <%s> in <struct>", name)
		}
		var key string
		var val any
		haveName, haveValue := false, false
		err := d.children(func(name string) error {
			var err error
			switch name {
			case "name":
				key, err = d.text()
				haveName = true
			case "value":
				val, err = d.value()
				haveValue = true
			default:
				err = d.errorf("unexpected <%s> in <member>", name)
			}
			return err
		})
		if err == nil && (!haveName || !haveValue) {
			err = d.errorf("<member> needs both <name> and <value>")
		}
		// Python's dict keeps the last duplicate; so do we.
		out[key] = val
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
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
	case int64:
		f.Code = int(c)
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

// checkCharRefs refuses numeric character references to code points XML
// does not allow (surrogates, beyond U+10FFFF, and controls other than tab,
// newline and carriage return), as Python's expat does; Go's decoder would
// turn a surrogate into U+FFFD silently.
func checkCharRefs(body []byte) error {
	for i := 0; ; {
		j := bytes.Index(body[i:], []byte("&#"))
		if j < 0 {
			return nil
		}
		i += j + 2
		end := bytes.IndexByte(body[i:min(len(body), i+12)], ';')
		if end < 0 {
			continue // malformed: the XML decoder reports it
		}
		ref := string(body[i : i+end])
		var n uint64
		var err error
		if strings.HasPrefix(ref, "x") {
			n, err = strconv.ParseUint(ref[1:], 16, 32)
		} else {
			n, err = strconv.ParseUint(ref, 10, 32)
		}
		if err != nil {
			continue
		}
		r := rune(n)
		ok := r == 0x9 || r == 0xA || r == 0xD || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
		if !ok {
			return fmt.Errorf("%w: reference to invalid character number &#%s; (at byte %d)", ErrSyntax, ref, i-2)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
