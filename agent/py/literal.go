package py

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Upstream parses selectors with Python's ast.literal_eval, so users write
// them as Python literals ('single quotes', True, None, tuples). This file
// reads that syntax into the value model encoding/json produces, so a
// caller never needs to know which syntax was used.

// MaxLiteralDepth bounds nesting; a selector list is three levels deep,
// and a hostile input must not exhaust the stack.
const MaxLiteralDepth = 64

// LiteralError is a syntax error in a Python literal. Line and Column are
// 1-based; Column counts characters, not bytes.
type LiteralError struct {
	Offset int // byte offset into the input
	Line   int
	Column int
	Msg    string
}

func (e *LiteralError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// ParseLiteral parses s as ast.literal_eval would and returns the value
// in the model encoding/json uses (with FromJSON's numbers): nil, bool,
// int64, float64, string, []any (lists and tuples) or map[string]any. Differences from Python,
// all rejected with an error instead of producing a value this model cannot
// hold: sets, bytes, complex numbers, f-strings, non-string dict keys,
// integers outside int64, floats that overflow to inf, lone surrogates and
// \N{...} escapes. Expressions and names other than True, False and None
// are rejected as Python does.
func ParseLiteral(s string) (any, error) {
	p := &pyParser{src: s}
	if i := invalidUTF8(s); i >= 0 {
		return nil, p.errAt(i, "invalid UTF-8")
	}
	p.skipSpace()
	if p.eof() {
		return nil, p.errAt(p.pos, "empty input, expected a literal")
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if !p.eof() {
		return nil, p.unexpected("after the value")
	}
	return v, nil
}

func invalidUTF8(s string) int {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

type pyParser struct {
	src   string
	pos   int
	depth int
}

func (p *pyParser) eof() bool { return p.pos >= len(p.src) }

func (p *pyParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.src[p.pos]
}

func (p *pyParser) errAt(off int, format string, args ...any) *LiteralError {
	line, col := 1, 1
	for i, r := range p.src {
		if i >= off {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return &LiteralError{Offset: off, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// unexpected reports the character at the current position.
func (p *pyParser) unexpected(where string) *LiteralError {
	if p.eof() {
		return p.errAt(p.pos, "unexpected end of input %s", where)
	}
	r, _ := utf8.DecodeRuneInString(p.src[p.pos:])
	if strings.ContainsRune("+-*/%@&|^<>=~.", r) {
		return p.errAt(p.pos, "unexpected %q %s (expressions are not allowed)", r, where)
	}
	return p.errAt(p.pos, "unexpected %q %s", r, where)
}

// skipSpace skips what Python's tokenizer ignores between tokens inside
// brackets: whitespace, newlines, comments and backslash continuations.
func (p *pyParser) skipSpace() {
	for !p.eof() {
		switch c := p.src[p.pos]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			p.pos++
		case c == '#':
			for !p.eof() && p.src[p.pos] != '\n' {
				p.pos++
			}
		case c == '\\' && strings.HasPrefix(p.src[p.pos+1:], "\n"):
			p.pos += 2
		case c == '\\' && strings.HasPrefix(p.src[p.pos+1:], "\r\n"):
			p.pos += 3
		default:
			return
		}
	}
}

func (p *pyParser) value() (any, error) {
	if p.depth >= MaxLiteralDepth {
		return nil, p.errAt(p.pos, "nesting deeper than %d levels", MaxLiteralDepth)
	}
	c := p.peek()
	switch {
	case c == '[':
		return p.sequence('[', ']')
	case c == '(':
		return p.sequence('(', ')')
	case c == '{':
		return p.dict()
	case c == '\'' || c == '"':
		return p.strings()
	case c == '+' || c == '-':
		start := p.pos
		p.pos++
		p.skipSpace()
		if !isDigit(p.peek()) && !(p.peek() == '.' && isDigit(p.at(p.pos+1))) {
			return nil, p.errAt(start, "a sign must be followed by a number")
		}
		return p.number(start, c == '-')
	case isDigit(c) || (c == '.' && isDigit(p.at(p.pos+1))):
		return p.number(p.pos, false)
	case c == '_' || c >= 0x80 || isLetter(c):
		return p.name()
	}
	return nil, p.unexpected("where a value was expected")
}

func (p *pyParser) at(i int) byte {
	if i < len(p.src) {
		return p.src[i]
	}
	return 0
}

// sequence parses a list or a tuple (both become []any). "(x)" without a
// comma is a parenthesised value, as in Python.
func (p *pyParser) sequence(open, closer byte) (any, error) {
	start := p.pos
	p.pos++
	p.depth++
	defer func() { p.depth-- }()
	out := []any{}
	sawComma := false
	for {
		p.skipSpace()
		if p.peek() == closer {
			p.pos++
			if open == '(' && len(out) == 1 && !sawComma {
				return out[0], nil
			}
			return out, nil
		}
		if p.eof() {
			return nil, p.errAt(start, "%q is never closed", open)
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
			sawComma = true
		case closer:
		default:
			if p.eof() {
				return nil, p.errAt(start, "%q is never closed", open)
			}
			return nil, p.unexpected(fmt.Sprintf("in %c...%c, expected ',' or %q", open, closer, closer))
		}
	}
}

func (p *pyParser) dict() (any, error) {
	start := p.pos
	p.pos++
	p.depth++
	defer func() { p.depth-- }()
	out := map[string]any{}
	for {
		p.skipSpace()
		if p.peek() == '}' {
			p.pos++
			return out, nil
		}
		if p.eof() {
			return nil, p.errAt(start, "'{' is never closed")
		}
		keyPos := p.pos
		k, err := p.value()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if c := p.peek(); c == ',' || c == '}' {
			return nil, p.errAt(start, "sets are not supported, expected a dict")
		}
		if p.peek() != ':' {
			if p.eof() {
				return nil, p.errAt(start, "'{' is never closed")
			}
			return nil, p.unexpected("in a dict, expected ':'")
		}
		key, ok := k.(string)
		if !ok {
			return nil, p.errAt(keyPos, "dict keys must be strings, got %s", TypeName(k))
		}
		p.pos++
		p.skipSpace()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out[key] = v // last one wins, as in Python and encoding/json
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
		case '}':
		default:
			if p.eof() {
				return nil, p.errAt(start, "'{' is never closed")
			}
			return nil, p.unexpected("in a dict, expected ',' or '}'")
		}
	}
}

// name parses True/False/None or a string with a prefix (r”, u”).
func (p *pyParser) name() (any, error) {
	start := p.pos
	for !p.eof() {
		r, n := utf8.DecodeRuneInString(p.src[p.pos:])
		if r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			break
		}
		p.pos += n
	}
	word := p.src[start:p.pos]
	if word == "" {
		return nil, p.unexpected("where a value was expected")
	}
	if c := p.peek(); c == '\'' || c == '"' {
		if len(word) > 2 || strings.IndexFunc(word, func(r rune) bool { return !isLetter(byte(r)) || r >= 0x80 }) >= 0 {
			return nil, p.errAt(start, "unknown string prefix %q", word)
		}
		p.pos = start
		return p.strings()
	}
	switch word {
	case "True":
		return true, nil
	case "False":
		return false, nil
	case "None":
		return nil, nil
	case "true", "false", "null":
		return nil, p.errAt(start, "name %q is not a Python literal (write True, False or None; JSON input must be valid JSON as a whole)", word)
	}
	return nil, p.errAt(start, "name %q is not allowed, only literals (True, False, None, numbers, strings, lists, tuples, dicts)", word)
}

// strings parses one or more adjacent string literals, which Python
// concatenates.
func (p *pyParser) strings() (any, error) {
	var sb strings.Builder
	for {
		if err := p.stringLiteral(&sb); err != nil {
			return nil, err
		}
		save := p.pos
		p.skipSpace()
		if !p.atStringStart() {
			p.pos = save
			return sb.String(), nil
		}
	}
}

func (p *pyParser) atStringStart() bool {
	i := p.pos
	for i < len(p.src) && i-p.pos < 2 && isLetter(p.src[i]) {
		i++
	}
	return i < len(p.src) && (p.src[i] == '\'' || p.src[i] == '"')
}

func (p *pyParser) stringLiteral(sb *strings.Builder) error {
	start := p.pos
	for isLetter(p.peek()) {
		p.pos++
	}
	raw := false
	switch prefix := strings.ToLower(p.src[start:p.pos]); prefix {
	case "":
	case "u":
	case "r":
		raw = true
	case "b", "br", "rb":
		return p.errAt(start, "bytes literals are not supported")
	case "f", "fr", "rf":
		return p.errAt(start, "f-strings are not literals")
	default:
		return p.errAt(start, "unknown string prefix %q", p.src[start:p.pos])
	}
	q := p.src[p.pos]
	triple := strings.HasPrefix(p.src[p.pos:], strings.Repeat(string(q), 3))
	if triple {
		p.pos += 3
	} else {
		p.pos++
	}
	for {
		if p.eof() {
			return p.errAt(start, "unterminated string literal")
		}
		c := p.src[p.pos]
		switch {
		case c == q && !triple:
			p.pos++
			return nil
		case c == q && strings.HasPrefix(p.src[p.pos:], strings.Repeat(string(q), 3)):
			p.pos += 3
			return nil
		case c == '\n' || c == '\r':
			if !triple {
				return p.errAt(start, "unterminated string literal (a newline needs \\n or triple quotes)")
			}
			// Python reads source newlines as \n whatever the file used.
			p.pos++
			if c == '\r' && p.peek() == '\n' {
				p.pos++
			}
			sb.WriteByte('\n')
		case c == '\\' && raw:
			if p.pos+1 >= len(p.src) {
				return p.errAt(start, "unterminated string literal")
			}
			// In a raw string the backslash stays, and the next character
			// (even a quote) cannot end the string.
			_, n := utf8.DecodeRuneInString(p.src[p.pos+1:])
			sb.WriteString(p.src[p.pos : p.pos+1+n])
			p.pos += 1 + n
		case c == '\\':
			if err := p.escape(sb); err != nil {
				return err
			}
		default:
			_, n := utf8.DecodeRuneInString(p.src[p.pos:])
			sb.WriteString(p.src[p.pos : p.pos+n])
			p.pos += n
		}
	}
}

var simpleEscapes = map[byte]string{
	'\\': "\\", '\'': "'", '"': "\"", 'a': "\a", 'b': "\b", 'f': "\f",
	'n': "\n", 'r': "\r", 't': "\t", 'v': "\v", '\n': "",
}

func (p *pyParser) escape(sb *strings.Builder) error {
	start := p.pos
	p.pos++ // the backslash
	if p.eof() {
		return p.errAt(start, "unterminated string literal")
	}
	c := p.src[p.pos]
	if s, ok := simpleEscapes[c]; ok {
		p.pos++
		sb.WriteString(s)
		return nil
	}
	switch c {
	case '\r': // line continuation with CRLF
		p.pos++
		if p.peek() == '\n' {
			p.pos++
		}
		return nil
	case '0', '1', '2', '3', '4', '5', '6', '7':
		v := 0
		for i := 0; i < 3 && p.peek() >= '0' && p.peek() <= '7'; i++ {
			v = v*8 + int(p.peek()-'0')
			p.pos++
		}
		sb.WriteRune(rune(v))
		return nil
	case 'x', 'u', 'U':
		width := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
		p.pos++
		if p.pos+width > len(p.src) || !allHex(p.src[p.pos:p.pos+width]) {
			return p.errAt(start, "truncated \\%c escape, expected %d hex digits", c, width)
		}
		v, _ := strconv.ParseUint(p.src[p.pos:p.pos+width], 16, 32)
		p.pos += width
		switch {
		case v > unicode.MaxRune:
			return p.errAt(start, "escape \\%c%s is beyond the last Unicode character", c, p.src[start+2:p.pos])
		case v >= 0xD800 && v <= 0xDFFF:
			return p.errAt(start, "escape %s is a lone surrogate, which a UTF-8 string cannot hold", p.src[start:p.pos])
		}
		sb.WriteRune(rune(v))
		return nil
	case 'N':
		return p.errAt(start, "\\N{...} escapes are not supported, use \\u or \\U")
	}
	// Unknown escapes keep the backslash, as Python does (with a warning).
	_, n := utf8.DecodeRuneInString(p.src[p.pos:])
	sb.WriteByte('\\')
	sb.WriteString(p.src[p.pos : p.pos+n])
	p.pos += n
	return nil
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune("0123456789abcdefABCDEF", rune(s[i])) {
			return false
		}
	}
	return true
}

// number parses an int or float starting at p.pos; start is where the
// sign (if any) was, for error positions.
func (p *pyParser) number(start int, neg bool) (any, error) {
	numStart := p.pos
	sign := ""
	if neg {
		sign = "-"
	}
	if p.peek() == '0' && strings.ContainsRune("xXoObB", rune(p.at(p.pos+1))) {
		p.pos += 2
		for isAlnum(p.peek()) || p.peek() == '_' {
			p.pos++
		}
		text := p.src[numStart:p.pos]
		// Go's base-0 syntax for 0x/0o/0b with underscores is Python's.
		n, err := strconv.ParseInt(sign+text, 0, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return nil, p.errAt(start, "integer %s%s does not fit in 64 bits", sign, text)
			}
			return nil, p.errAt(start, "invalid integer literal %q", text)
		}
		return n, nil
	}
	isFloat := false
	if !p.digitPart() && p.peek() != '.' {
		return nil, p.errAt(start, "invalid number")
	}
	if p.peek() == '.' {
		isFloat = true
		p.pos++
		p.digitPart()
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		isFloat = true
		p.pos++
		if c := p.peek(); c == '+' || c == '-' {
			p.pos++
		}
		if !p.digitPart() {
			return nil, p.errAt(start, "invalid decimal literal (exponent without digits)")
		}
	}
	if c := p.peek(); c == 'j' || c == 'J' {
		return nil, p.errAt(start, "complex numbers are not supported")
	}
	if c := p.peek(); c == '_' || isAlnum(c) || c >= 0x80 {
		return nil, p.errAt(start, "invalid decimal literal")
	}
	text := strings.ReplaceAll(p.src[numStart:p.pos], "_", "")
	if !isFloat {
		if len(text) > 1 && text[0] == '0' && strings.Trim(text, "0") != "" {
			return nil, p.errAt(start, "leading zeros in decimal integers are not allowed (use 0o for octal)")
		}
		n, err := strconv.ParseInt(sign+text, 10, 64)
		if err != nil {
			return nil, p.errAt(start, "integer %s%s does not fit in 64 bits", sign, text)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(sign+text, 64)
	if err != nil && !math.IsInf(f, 0) {
		return nil, p.errAt(start, "invalid float literal %q", text)
	}
	if math.IsInf(f, 0) {
		return nil, p.errAt(start, "float %s%s is out of range", sign, text)
	}
	return f, nil
}

// digitPart consumes digit (["_"] digit)* and reports whether it found one.
func (p *pyParser) digitPart() bool {
	if !isDigit(p.peek()) {
		return false
	}
	p.pos++
	for {
		switch {
		case isDigit(p.peek()):
			p.pos++
		case p.peek() == '_' && isDigit(p.at(p.pos+1)):
			p.pos += 2
		default:
			return true
		}
	}
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool  { return isDigit(c) || isLetter(c) }
