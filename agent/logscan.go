package agent

import (
	"encoding/binary"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The fast path of DecodeLogRecord: one pass over the body that decodes the
// shape upstream's handler always sends (known keys, strings, integers, a
// float, nulls, exc_info as a list of strings) and validates the JSON as it
// goes. It gives up on anything else (an unknown key, a nested value, a
// number or escape it does not fully check, invalid UTF-8) and then the
// tolerant path decodes the body from scratch, so what it accepts it must
// decode exactly as the tolerant path would, and everything else is the
// tolerant path's business, errors included.

// Indexes of the string fields in a strCache.
const (
	fName = iota
	fLevelname
	fPathname
	fFilename
	fModule
	fFuncName
	fAsctime
	fThreadName
	fMsg
	fStackInfo
	nStrFields
)

// strCache holds the last string decoded for each field. A stream of
// records from one sender repeats most of them (logger name, path,
// function, thread name, level), so reusing the previous string saves an
// allocation per field. The zero value is ready; a nil cache allocates.
type strCache [nStrFields]string

func (c *strCache) get(field int, b []byte) string {
	if c == nil {
		return string(b)
	}
	if c[field] != string(b) { // the conversion does not allocate in a comparison
		c[field] = string(b)
	}
	return c[field]
}

// The keys the fast path knows, in the order upstream sends them.
const (
	kName = iota
	kLevelno
	kLevelname
	kPathname
	kFilename
	kModule
	kLineno
	kFuncName
	kCreated
	kAsctime
	kThread
	kThreadName
	kProcess
	kMsg
	kArgs
	kExcInfo
	kStackInfo
	nKeys
)

var keyNames = [nKeys]string{
	"name", "levelno", "levelname", "pathname", "filename", "module", "lineno", "funcName",
	"created", "asctime", "thread", "threadName", "process", "msg", "args", "exc_info", "stack_info",
}

// keyPrefixes are the keys as json.dumps writes them, up to the value, so
// that the key upstream sends next is recognised with one comparison.
var keyPrefixes = func() (p [nKeys]string) {
	for k, name := range keyNames {
		p[k] = `"` + name + `": `
	}
	return p
}()

// scanner walks one body; scratch holds unescaped strings.
type scanner struct {
	b       []byte
	i       int
	cache   *strCache
	scratch []byte
}

// decodeFast decodes body if it has upstream's shape; ok is false when the
// tolerant path must decide.
func decodeFast(body []byte, cache *strCache) (rec *LogRecord, ok bool) {
	s := scanner{b: body, cache: cache}
	s.space()
	if !s.consume('{') {
		return nil, false
	}
	r := &LogRecord{}
	var seen struct{ asctime, levelno, levelname bool }
	s.space()
	if s.peek() != '}' {
		next := kName // the key upstream would send next
		for {
			key, ok := s.key(next)
			if !ok {
				return nil, false
			}
			next = key + 1
			s.space()
			switch key {
			case kName:
				ok = s.str(fName, &r.Name)
			case kLevelno:
				seen.levelno = true
				ok = s.int32(&r.Levelno)
			case kLevelname:
				seen.levelname = true
				ok = s.str(fLevelname, &r.Levelname)
			case kPathname:
				ok = s.str(fPathname, &r.Pathname)
			case kFilename:
				ok = s.str(fFilename, &r.Filename)
			case kModule:
				ok = s.str(fModule, &r.Module)
			case kLineno:
				ok = s.int32(&r.Lineno)
			case kFuncName:
				ok = s.str(fFuncName, &r.FuncName)
			case kCreated:
				ok = s.float(&r.Created)
			case kAsctime:
				seen.asctime = true
				ok = s.str(fAsctime, &r.Asctime)
			case kThread:
				ok = s.int64(&r.Thread)
			case kThreadName:
				ok = s.str(fThreadName, &r.ThreadName)
			case kProcess:
				ok = s.int64(&r.Process)
			case kMsg:
				ok = s.str(fMsg, &r.Msg)
			case kArgs:
				ok = s.null()
			case kExcInfo:
				ok = s.excInfo(&r.ExcInfo)
			case kStackInfo:
				ok = s.str(fStackInfo, &r.StackInfo)
			}
			if !ok {
				return nil, false
			}
			s.space()
			if s.consume(',') {
				s.space()
				continue
			}
			break
		}
	}
	if !s.consume('}') {
		return nil, false
	}
	if s.space(); s.i != len(s.b) {
		return nil, false
	}
	// The same completions as the tolerant path.
	if !seen.asctime || r.Asctime == "" {
		r.Asctime = asctimeFromCreated(r.Created)
	}
	if !seen.levelname || r.Levelname == "" {
		r.Levelname = pyLevelName(r.Levelno)
	}
	if !seen.levelno {
		r.Levelno, _ = PyLevelNo(r.Levelname)
	}
	return r, true
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) consume(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// literal consumes word if it is next. What follows it is checked by the
// caller, which wants a separator.
func (s *scanner) literal(word string) bool {
	end := s.i + len(word)
	if end > len(s.b) || string(s.b[s.i:end]) != word {
		return false
	}
	s.i = end
	return true
}

func (s *scanner) null() bool { return s.literal("null") }

// key consumes a key and its colon and returns which known key it is;
// expect is tried first.
func (s *scanner) key(expect int) (int, bool) {
	if expect < nKeys {
		p := keyPrefixes[expect]
		if end := s.i + len(p); end <= len(s.b) && string(s.b[s.i:end]) == p {
			s.i = end
			return expect, true
		}
	}
	raw, ok := s.rawKey()
	if !ok {
		return 0, false
	}
	s.space()
	if !s.consume(':') {
		return 0, false
	}
	for k, name := range keyNames {
		if string(raw) == name {
			return k, true
		}
	}
	return 0, false
}

// rawKey returns a key's bytes; keys with escapes or non-ASCII bytes are
// none of the known ones, so they go to the tolerant path.
func (s *scanner) rawKey() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	b, start := s.b, s.i
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return b[start:i], true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

// str decodes a string or null into *dst.
func (s *scanner) str(field int, dst *string) bool {
	if s.peek() == 'n' {
		*dst = ""
		return s.null()
	}
	b, ok := s.stringBytes()
	if ok {
		*dst = s.cache.get(field, b)
	}
	return ok
}

// SWAR constants: a byte of ones, a byte of high bits.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plainRun advances s.i over bytes that a string holds as they are
// (printable ASCII other than '"' and '\\'), eight at a time.
func (s *scanner) plainRun() {
	b, i := s.b, s.i // locals stay in registers
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ (lsb * '"')
		bs := x ^ (lsb * '\\')
		// The high bit of some byte is set exactly when a byte is below
		// 0x20, is '"', is '\\', or is 0x80 or above.
		if ((x-lsb*0x20)&^x|(q-lsb)&^q|(bs-lsb)&^bs|x)&msb != 0 {
			break
		}
	}
	s.i = i
}

// stringBytes decodes the string at s.i; the bytes are the body's own or
// s.scratch's, valid until the next call.
func (s *scanner) stringBytes() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	start := s.i
	ascii := true
	for {
		s.plainRun()
		if s.i >= len(s.b) {
			return nil, false
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			b := s.b[start : s.i-1]
			return b, ascii || utf8.Valid(b)
		case c == '\\':
			return s.unescape(start)
		case c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		s.i++
	}
}

// unescape finishes a string that has an escape at s.i and began at start.
func (s *scanner) unescape(start int) ([]byte, bool) {
	out := append(s.scratch[:0], s.b[start:s.i]...)
	defer func() { s.scratch = out[:0] }()
	for s.i < len(s.b) {
		run := s.i
		s.plainRun()
		out = append(out, s.b[run:s.i]...)
		if s.i >= len(s.b) {
			break
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			// Raw non-ASCII bytes were copied unchecked; escapes only ever
			// add valid UTF-8.
			return out, utf8.Valid(out)
		case c < 0x20:
			return nil, false
		case c != '\\':
			out = append(out, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			return nil, false
		}
		e := s.b[s.i+1]
		s.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return nil, false
			}
			if utf16.IsSurrogate(r) {
				// Only a well-formed pair; a lone half becomes U+FFFD in
				// encoding/json, and that is the tolerant path's to do.
				if r >= 0xdc00 || !s.literal(`\u`) {
					return nil, false
				}
				lo, ok := s.hex4()
				if !ok || lo < 0xdc00 || lo > 0xdfff {
					return nil, false
				}
				r = utf16.DecodeRune(r, lo)
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, false
		}
	}
	return nil, false
}

func (s *scanner) hex4() (rune, bool) {
	if s.i+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[s.i : s.i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	s.i += 4
	return r, true
}

// number returns the bytes of a JSON number at s.i, and whether it is an
// integer (no fraction, no exponent).
func (s *scanner) number() (num []byte, integer, ok bool) {
	start := s.i
	s.consume('-')
	switch d := s.peek(); {
	case d == '0':
		s.i++
	case d >= '1' && d <= '9':
		s.digits()
	default:
		return nil, false, false
	}
	integer = true
	if s.consume('.') {
		integer = false
		if !s.digits() {
			return nil, false, false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		integer = false
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return nil, false, false
		}
	}
	return s.b[start:s.i], integer, true
}

func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// int64 decodes an integer or null. Fractions, exponents and overflow are
// the tolerant path's to report.
func (s *scanner) int64(dst *int64) bool {
	if s.peek() == 'n' {
		*dst = 0
		return s.null()
	}
	num, integer, ok := s.number()
	if !ok || !integer {
		return false
	}
	neg := num[0] == '-'
	if neg {
		num = num[1:]
	}
	if len(num) > 18 { // 18 digits always fit in an int64
		return false
	}
	var n int64
	for _, c := range num {
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	*dst = n
	return true
}

func (s *scanner) int32(dst *int) bool {
	var n int64
	if !s.int64(&n) || n < -1<<31 || n > 1<<31-1 {
		return false
	}
	*dst = int(n)
	return true
}

func (s *scanner) float(dst *float64) bool {
	if s.peek() == 'n' {
		*dst = 0
		return s.null()
	}
	num, _, ok := s.number()
	if !ok {
		return false
	}
	// The grammar was checked above, so ParseFloat sees only JSON numbers;
	// out of range is an error for the tolerant path to word.
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil {
		return false
	}
	*dst = f
	return true
}

// excInfo decodes null, a string, or a list of strings, as rawExcInfo.
func (s *scanner) excInfo(dst *[]string) bool {
	switch s.peek() {
	case 'n':
		*dst = nil
		return s.null()
	case '"':
		b, ok := s.stringBytes()
		if ok {
			*dst = []string{string(b)}
		}
		return ok
	case '[':
	default:
		return false
	}
	s.i++
	lines := []string{} // an empty list stays a present, empty list
	s.space()
	if s.consume(']') {
		*dst = lines
		return true
	}
	for {
		b, ok := s.stringBytes()
		if !ok {
			return false
		}
		lines = append(lines, string(b))
		s.space()
		if s.consume(']') {
			*dst = lines
			return true
		}
		if !s.consume(',') {
			return false
		}
		s.space()
	}
}
