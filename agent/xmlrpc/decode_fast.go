package xmlrpc

import (
	"bytes"
	"unicode/utf8"
)

// The fast path of DecodeCallLimited. Nearly every call an agent receives
// is written by CPython's xmlrpc.client.dumps or by EncodeCall: a fixed
// declaration, fixed tags without attributes, newlines between elements
// and a handful of entities in text. fastCall reads exactly that shape in
// one pass over the bytes, without encoding/xml's tokenizer (whose tokens,
// names and interfaces were most of the agent's per-call allocations).
//
// It never refuses anything: whatever it does not know for certain it
// reads exactly as the full decoder would (a comment, CDATA, a character
// reference, a \r, an attribute, a self-closing <value/>, a limit reached,
// a malformed number, any error) makes it answer ok=false, and the full
// decoder reads the document from the start and accepts or refuses it as
// it always did. FuzzFastCall checks both agree on what the fast path
// accepts.
func fastCall(body []byte, lim CallLimits) (method string, params []any, ok bool) {
	if len(body) > maxDocumentSize {
		return "", nil, false
	}
	s := scanner{b: body, lim: lim}
	if !s.lit("<?xml version='1.0'?>") {
		s.lit(`<?xml version="1.0"?>`)
	}
	s.ws()
	if !s.lit("<methodCall>") {
		return "", nil, false
	}
	s.ws()
	if !s.lit("<methodName>") {
		return "", nil, false
	}
	method, ok = s.text()
	if !ok || !s.lit("</methodName>") {
		return "", nil, false
	}
	if lim.Known != nil && !lim.Known(method) {
		// The full decoder says so, after checking what it checks first.
		return "", nil, false
	}
	s.ws()
	params = []any{}
	if s.lit("<params>") {
		for {
			s.ws()
			if s.lit("</params>") {
				break
			}
			if !s.lit("<param>") {
				return "", nil, false
			}
			s.ws()
			if !s.lit("<value>") {
				return "", nil, false
			}
			v, ok := s.value()
			if !ok {
				return "", nil, false
			}
			s.ws()
			if !s.lit("</param>") {
				return "", nil, false
			}
			params = append(params, v)
		}
		s.ws()
	}
	if !s.lit("</methodCall>") {
		return "", nil, false
	}
	s.ws()
	if s.i != len(s.b) {
		return "", nil, false
	}
	return method, params, true
}

// scanner is fastCall's position in the document and what it has counted
// against the limits, counted as the full decoder counts.
type scanner struct {
	b        []byte
	i        int
	lim      CallLimits
	depth    int
	values   int
	strBytes int
}

// ws skips XML white space between elements.
func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// lit consumes tok if the document continues with it.
func (s *scanner) lit(tok string) bool {
	if len(s.b)-s.i >= len(tok) && string(s.b[s.i:s.i+len(tok)]) == tok {
		s.i += len(tok)
		return true
	}
	return false
}

// text reads character data up to the next '<' and charges it to the
// string limit. It gives up on what encoding/xml would rewrite or refuse
// (\r, character references, unknown entities, "]]>", invalid UTF-8 or a
// character XML does not allow) and on a document that ends inside it.
func (s *scanner) text() (string, bool) {
	start := s.i
	plain := true
	for ; s.i < len(s.b); s.i++ {
		c := s.b[s.i]
		switch {
		case c == '<':
			raw := s.b[start:s.i]
			var out string
			if plain {
				out = string(raw)
			} else {
				var ok bool
				if out, ok = unescapeNamed(raw); !ok {
					return "", false
				}
			}
			if bytes.Contains(raw, []byte("]]>")) || !s.charge(len(out)) {
				return "", false
			}
			return out, true
		case c == '&':
			plain = false
		case c >= 0x80:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 || !isXMLChar(r) {
				return "", false
			}
			s.i += size - 1
		case c < 0x20 && c != '\t' && c != '\n':
			return "", false
		}
	}
	return "", false
}

// charge counts n bytes of decoded text against MaxStringBytes.
func (s *scanner) charge(n int) bool {
	s.strBytes += n
	return s.lim.MaxStringBytes <= 0 || s.strBytes <= s.lim.MaxStringBytes
}

// namedEntities are the entities XML predefines; encoding/xml knows no
// others in strict mode.
var namedEntities = map[string]byte{"amp": '&', "lt": '<', "gt": '>', "quot": '"', "apos": '\''}

// unescapeNamed replaces the predefined entities in raw; anything else
// after '&' (a character reference included) is not for the fast path.
func unescapeNamed(raw []byte) (string, bool) {
	out := make([]byte, 0, len(raw))
	for len(raw) > 0 {
		amp := bytes.IndexByte(raw, '&')
		if amp < 0 {
			out = append(out, raw...)
			break
		}
		out = append(out, raw[:amp]...)
		semi := bytes.IndexByte(raw[amp:], ';')
		if semi < 0 {
			return "", false
		}
		c, ok := namedEntities[string(raw[amp+1:amp+semi])]
		if !ok {
			return "", false
		}
		out = append(out, c)
		raw = raw[amp+semi+1:]
	}
	return string(out), true
}

// value reads what follows <value> up to and including </value>.
func (s *scanner) value() (any, bool) {
	s.depth++
	defer func() { s.depth-- }()
	s.values++
	if s.depth > maxDepth || s.lim.MaxValues > 0 && s.values > s.lim.MaxValues {
		return nil, false
	}
	lead, ok := s.text()
	if !ok {
		return nil, false
	}
	if s.lit("</value>") {
		return lead, true // a bare <value>text</value> is a string
	}
	for i := 0; i < len(lead); i++ {
		if c := lead[i]; c != ' ' && c != '\t' && c != '\n' {
			return nil, false
		}
	}
	var v any
	switch {
	case s.lit("<nil/>"):
		v = nil
	case s.lit("<array>"):
		if v, ok = s.array(); !ok {
			return nil, false
		}
	case s.lit("<struct>"):
		if v, ok = s.structure(); !ok {
			return nil, false
		}
	default:
		if v, ok = s.scalar(); !ok {
			return nil, false
		}
	}
	s.ws()
	return v, s.lit("</value>")
}

// scalar reads <tag>text</tag> for a tag of scalarTypes.
func (s *scanner) scalar() (any, bool) {
	if !s.lit("<") {
		return nil, false
	}
	end := bytes.IndexByte(s.b[s.i:], '>')
	if end < 0 {
		return nil, false
	}
	tag := s.b[s.i : s.i+end]
	conv, known := scalarTypes[string(tag)]
	if !known {
		return nil, false
	}
	s.i += end + 1
	text, ok := s.text()
	if !ok || !s.lit("</") || !bytes.HasPrefix(s.b[s.i:], tag) {
		return nil, false
	}
	s.i += len(tag)
	if !s.lit(">") {
		return nil, false
	}
	v, err := conv(text)
	return v, err == nil
}

// array reads <data> and its values up to and including </array>.
func (s *scanner) array() (any, bool) {
	out := []any{}
	s.ws()
	if !s.lit("<data>") {
		return nil, false
	}
	for {
		s.ws()
		if s.lit("</data>") {
			break
		}
		if !s.lit("<value>") {
			return nil, false
		}
		v, ok := s.value()
		if !ok {
			return nil, false
		}
		out = append(out, v)
	}
	s.ws()
	return out, s.lit("</array>")
}

// structure reads members, name before value, up to and including
// </struct>.
func (s *scanner) structure() (any, bool) {
	out := map[string]any{}
	for {
		s.ws()
		if s.lit("</struct>") {
			return out, true
		}
		if !s.lit("<member>") {
			return nil, false
		}
		s.ws()
		if !s.lit("<name>") {
			return nil, false
		}
		name, ok := s.text()
		if !ok || !s.lit("</name>") {
			return nil, false
		}
		s.ws()
		if !s.lit("<value>") {
			return nil, false
		}
		v, ok := s.value()
		if !ok {
			return nil, false
		}
		s.ws()
		if !s.lit("</member>") {
			return nil, false
		}
		out[name] = v // Python's dict keeps the last duplicate; so do we
	}
}
