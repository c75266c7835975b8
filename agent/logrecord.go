package agent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vtcluster/vtcluster/agent/py"
)

// LogRecord is one log record as avocado-vt's agent sends it to the
// controller's LoggerServer: the dict that upstream's socket handler builds
// from a Python logging.LogRecord. Fields are declared, and encoded, in
// upstream's key order so that our frames are byte-identical to theirs.
type LogRecord struct {
	Name       string  // logger name, e.g. "avocado.service.process"
	Levelno    int     // Python level number: 10, 20, 30, 40, 50
	Levelname  string  // "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"
	Pathname   string  // source file path of the call site
	Filename   string  // base name of Pathname
	Module     string  // Filename without its extension
	Lineno     int     // line of the call site
	FuncName   string  // function of the call site
	Created    float64 // epoch seconds
	Asctime    string  // "YYYY-MM-DD HH:MM:SS,mmm" in the sender's local time
	Thread     int64   // Python thread ident
	ThreadName string  // Python thread name
	Process    int64   // process id
	Msg        string  // the fully formatted message

	// ExcInfo holds traceback.format_exception's lines; nil means the key is
	// absent (upstream only sends it when there is an exception).
	ExcInfo []string
	// StackInfo is sent only when non-empty, as upstream does.
	StackInfo string
	// Extra keeps keys that upstream's handler does not send, in arrival
	// order, so a record from another sender survives a decode/encode trip.
	Extra []ExtraField
}

// ExtraField is an unknown key of a decoded record with its raw JSON value.
type ExtraField struct {
	Key   string
	Value json.RawMessage
}

// DefaultMaxFrame bounds a frame's JSON body when the caller gives no limit.
// Upstream has no limit; ours sends at most MaxForwardFrame, and the margin
// above it is for other senders' extra keys.
const DefaultMaxFrame = MaxForwardFrame + 100<<10

// asctimeLayout is Python logging's default "%Y-%m-%d %H:%M:%S"; the
// ",mmm" milliseconds suffix is appended separately.
const asctimeLayout = "2006-01-02 15:04:05"

// FrameTooLargeError reports a frame whose announced length exceeds the
// reader's limit. The stream cannot be resynchronised after it.
type FrameTooLargeError struct {
	Size uint32 // announced length
	Max  int    // the limit in force
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("agent: log frame: length %d exceeds limit %d", e.Size, e.Max)
}

// FrameDecodeError reports a frame that was read completely but whose body
// is not a valid record. The frame boundary is intact, so the reader may
// carry on with the next frame.
type FrameDecodeError struct {
	Err error
}

func (e *FrameDecodeError) Error() string { return e.Err.Error() }
func (e *FrameDecodeError) Unwrap() error { return e.Err }

// Python's standard levels, for records built from slog.
const (
	PyDebug    = 10
	PyInfo     = 20
	PyWarning  = 30
	PyError    = 40
	PyCritical = 50
)

// LevelCritical is the slog level that maps to Python's CRITICAL; slog has
// no name for it.
const LevelCritical = slog.LevelError + 4

// PyLevel maps a slog level to Python's level number and name. Levels
// between the standard ones round down, as Python's level checks would.
func PyLevel(l slog.Level) (int, string) {
	switch {
	case l >= LevelCritical:
		return PyCritical, "CRITICAL"
	case l >= slog.LevelError:
		return PyError, "ERROR"
	case l >= slog.LevelWarn:
		return PyWarning, "WARNING"
	case l >= slog.LevelInfo:
		return PyInfo, "INFO"
	default:
		return PyDebug, "DEBUG"
	}
}

// SlogLevel maps a Python level number to the slog level a receiver logs at.
func SlogLevel(levelno int) slog.Level {
	switch {
	case levelno >= PyCritical:
		return LevelCritical
	case levelno >= PyError:
		return slog.LevelError
	case levelno >= PyWarning:
		return slog.LevelWarn
	case levelno >= PyInfo:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// pyLevelName is Python's logging.getLevelName for a level number.
func pyLevelName(levelno int) string {
	switch levelno {
	case 0:
		return "NOTSET"
	case PyDebug:
		return "DEBUG"
	case PyInfo:
		return "INFO"
	case PyWarning:
		return "WARNING"
	case PyError:
		return "ERROR"
	case PyCritical:
		return "CRITICAL"
	}
	return fmt.Sprintf("Level %d", levelno)
}

// PyLevelNo is the number of a Python logging level name (upper case,
// as logging.getLevelName takes it), and whether the name is known.
func PyLevelNo(name string) (int, bool) {
	switch name {
	case "NOTSET":
		return 0, true
	case "DEBUG":
		return PyDebug, true
	case "INFO":
		return PyInfo, true
	case "WARNING", "WARN":
		return PyWarning, true
	case "ERROR":
		return PyError, true
	case "CRITICAL", "FATAL":
		return PyCritical, true
	}
	return 0, false
}

// FormatAsctime renders t as Python logging's default asctime,
// "YYYY-MM-DD HH:MM:SS,mmm", in local time.
func FormatAsctime(t time.Time) string {
	t = t.Local()
	b := make([]byte, 0, 23)
	b = t.AppendFormat(b, asctimeLayout)
	ms := t.Nanosecond() / int(time.Millisecond)
	return string(append(b, ',', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10)))
}

// asctimeFromCreated does what Python's Formatter does with record.created:
// local time of the whole seconds, then the truncated milliseconds.
func asctimeFromCreated(created float64) string {
	if math.IsNaN(created) || math.IsInf(created, 0) || math.Abs(created) > 1e15 {
		return ""
	}
	sec := math.Floor(created)
	ms := int((created - sec) * 1000)
	if ms > 999 {
		ms = 999
	}
	return FormatAsctime(time.Unix(int64(sec), int64(ms)*int64(time.Millisecond)))
}

// MarshalJSON encodes r exactly as Python's json.dumps encodes upstream's
// record dict. Call it (or AppendJSON) directly: json.Marshal would compact
// the output and lose the ", " and ": " separators.
func (r *LogRecord) MarshalJSON() ([]byte, error) {
	return r.AppendJSON(nil), nil
}

// AppendJSON appends r's Python-compatible JSON encoding to dst.
func (r *LogRecord) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"name": `...)
	dst = py.AppendJSONString(dst, r.Name)
	dst = append(dst, `, "levelno": `...)
	dst = strconv.AppendInt(dst, int64(r.Levelno), 10)
	dst = append(dst, `, "levelname": `...)
	dst = py.AppendJSONString(dst, r.Levelname)
	dst = append(dst, `, "pathname": `...)
	dst = py.AppendJSONString(dst, r.Pathname)
	dst = append(dst, `, "filename": `...)
	dst = py.AppendJSONString(dst, r.Filename)
	dst = append(dst, `, "module": `...)
	dst = py.AppendJSONString(dst, r.Module)
	dst = append(dst, `, "lineno": `...)
	dst = strconv.AppendInt(dst, int64(r.Lineno), 10)
	dst = append(dst, `, "funcName": `...)
	dst = py.AppendJSONString(dst, r.FuncName)
	dst = append(dst, `, "created": `...)
	dst = py.AppendJSONFloat(dst, r.Created)
	dst = append(dst, `, "asctime": `...)
	dst = py.AppendJSONString(dst, r.Asctime)
	dst = append(dst, `, "thread": `...)
	dst = strconv.AppendInt(dst, r.Thread, 10)
	dst = append(dst, `, "threadName": `...)
	dst = py.AppendJSONString(dst, r.ThreadName)
	dst = append(dst, `, "process": `...)
	dst = strconv.AppendInt(dst, r.Process, 10)
	dst = append(dst, `, "msg": `...)
	dst = py.AppendJSONString(dst, r.Msg)
	dst = append(dst, `, "args": null`...)
	if r.ExcInfo != nil {
		dst = append(dst, `, "exc_info": [`...)
		for i, line := range r.ExcInfo {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = py.AppendJSONString(dst, line)
		}
		dst = append(dst, ']')
	}
	if r.StackInfo != "" {
		dst = append(dst, `, "stack_info": `...)
		dst = py.AppendJSONString(dst, r.StackInfo)
	}
	for _, f := range r.Extra {
		dst = append(dst, ", "...)
		dst = py.AppendJSONString(dst, f.Key)
		dst = append(dst, ": "...)
		dst = appendPyRaw(dst, f.Value)
	}
	return append(dst, '}')
}

// EncodeFrame writes r as one frame: a 4-byte big-endian length, then the
// JSON body. The frame goes out in a single Write so that concurrent writers
// on a shared connection cannot interleave halves of two frames.
func EncodeFrame(w io.Writer, r *LogRecord) error {
	buf := AppendFrame(make([]byte, 0, 512), r)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("agent: log frame: write: %w", err)
	}
	return nil
}

// AppendFrame appends r's frame (length header and JSON body) to dst.
func AppendFrame(dst []byte, r *LogRecord) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = r.AppendJSON(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// ReadFrame reads one frame from r and decodes its body. max bounds the
// body length (0 or less means DefaultMaxFrame). It returns the decoded
// record and the raw body.
//
// Errors: io.EOF when r ends cleanly between frames; io.ErrUnexpectedEOF
// when it ends inside a frame; *FrameTooLargeError (the body is not read);
// *FrameDecodeError when the body was read but is not a record (the raw
// body is still returned and the next frame can be read).
func ReadFrame(r io.Reader, max int) (*LogRecord, []byte, error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, nil, &FrameTooLargeError{Size: n, Max: max}
	}
	body, err := readBody(r, nil, int(n))
	if err != nil {
		return nil, nil, fullReadErr(err, 1)
	}
	rec, err := DecodeLogRecord(body)
	if err != nil {
		return nil, body, &FrameDecodeError{Err: err}
	}
	return rec, body, nil
}

// FrameReader reads a stream of frames through one buffer and decodes each
// body where it lies in that buffer, with the strings of the stream's
// previous record at hand to reuse. It is ReadFrame for a long-lived
// connection: no allocation for the body, and most fields of a record from
// the same sender as the last one cost nothing.
type FrameReader struct {
	br    *bufio.Reader
	max   int
	cache strCache
}

// NewFrameReader reads frames from r with a buffer of bufSize bytes (at
// least 4 KiB); frames above maxFrame bytes (0 or less: DefaultMaxFrame)
// are errors as for ReadFrame. Frames larger than the buffer are read whole
// into memory of their own.
func NewFrameReader(r io.Reader, bufSize, maxFrame int) *FrameReader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &FrameReader{br: bufio.NewReaderSize(r, max(bufSize, 4<<10)), max: maxFrame}
}

// Next reads and decodes the next frame, with ReadFrame's results and
// errors. The returned body is only valid until the next call.
func (fr *FrameReader) Next() (*LogRecord, []byte, error) {
	hdr, err := fr.br.Peek(4)
	if err != nil {
		return nil, nil, fullReadErr(err, len(hdr))
	}
	n := binary.BigEndian.Uint32(hdr)
	if uint64(n) > uint64(fr.max) {
		return nil, nil, &FrameTooLargeError{Size: n, Max: fr.max}
	}
	var body []byte
	if size := 4 + int(n); size <= fr.br.Size() {
		frame, err := fr.br.Peek(size)
		if err != nil {
			return nil, nil, fullReadErr(err, 1)
		}
		body = frame[4:]
		// Discard only moves the buffer's read index: the bytes stay where
		// they are until the next read into the buffer.
		_, _ = fr.br.Discard(size)
	} else {
		_, _ = fr.br.Discard(4)
		if body, err = readBody(fr.br, nil, int(n)); err != nil {
			return nil, nil, fullReadErr(err, 1)
		}
	}
	rec, err := decodeLogRecord(body, &fr.cache)
	if err != nil {
		return nil, body, &FrameDecodeError{Err: err}
	}
	return rec, body, nil
}

// readBody reads an n-byte frame body into buf, growing it only as bytes
// arrive (at most doubling what is already there), so that a header
// claiming a large frame costs nothing until the sender actually sends it.
func readBody(r io.Reader, buf []byte, n int) ([]byte, error) {
	const minChunk = 64 << 10
	buf = buf[:0]
	for len(buf) < n {
		chunk := min(n-len(buf), max(len(buf), minChunk))
		buf = slices.Grow(buf, chunk)
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+got]
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// Buffered returns how many bytes were read from the underlying reader
// but not yet consumed as frames: the start of the next frame, if any.
func (fr *FrameReader) Buffered() int { return fr.br.Buffered() }

// FrameBuffered reports whether a whole frame (or a header announcing a
// frame above the limit) is already buffered, so that Next returns without
// reading from the underlying reader, that is, without waiting.
func (fr *FrameReader) FrameBuffered() bool {
	b := fr.br.Buffered()
	if b < 4 {
		return false
	}
	hdr, _ := fr.br.Peek(4)
	n := binary.BigEndian.Uint32(hdr)
	return uint64(n) > uint64(fr.max) || uint64(b) >= 4+uint64(n)
}

// fullReadErr turns a short read of got bytes into io.ReadFull's errors:
// io.EOF only when nothing of the frame was read.
func fullReadErr(err error, got int) error {
	if errors.Is(err, io.EOF) && got > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}

// UnmarshalJSON decodes a record with DecodeLogRecord's tolerance.
func (r *LogRecord) UnmarshalJSON(data []byte) error {
	rec, err := DecodeLogRecord(data)
	if err != nil {
		return err
	}
	*r = *rec
	return nil
}

// DecodeLogRecord decodes one record body. It is tolerant the way Python's
// logging.makeLogRecord is: unknown keys are kept in Extra, a null value
// sets the field to its zero value, "args" is ignored (upstream always
// sends null), a missing asctime is rebuilt from created, and a missing
// levelname or levelno is derived from the other. Invalid JSON, or a value
// of the wrong type, is an error naming the key.
func DecodeLogRecord(body []byte) (*LogRecord, error) {
	return decodeLogRecord(body, nil)
}

// decodeLogRecord is DecodeLogRecord with the strings of the previous
// record of the same stream at hand (cache may be nil).
func decodeLogRecord(body []byte, cache *strCache) (*LogRecord, error) {
	// Records of upstream's shape, nearly all of them, take one pass; a
	// controller ingests every agent's records.
	if r, ok := decodeFast(body, cache); ok {
		return r, nil
	}
	return decodeTolerant(body)
}

// decodeTolerant decodes any JSON object, and words the error for anything
// that is not a record.
func decodeTolerant(body []byte) (*LogRecord, error) {
	// Validating first lets the walk below trust the structure; walking by
	// hand is several times faster than json.Decoder's token API.
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, fmt.Errorf("agent: log record: %w", err)
	}
	i := skipSpace(body, 0)
	if body[i] != '{' {
		return nil, fmt.Errorf("agent: log record: expected a JSON object, got %s", rawKind(body[i:]))
	}
	r := &LogRecord{}
	var seen struct{ asctime, levelno, levelname bool }
	i = skipSpace(body, i+1)
	for i < len(body) && body[i] != '}' {
		end := skipValue(body, i)
		key, err := decodeRawString(body[i:end])
		if err != nil {
			return nil, fmt.Errorf("agent: log record: %w", err)
		}
		i = skipSpace(body, end)
		i = skipSpace(body, i+1) // the colon
		end = skipValue(body, i)
		v := body[i:end]
		switch key {
		case "name":
			err = rawString(v, &r.Name)
		case "levelno":
			seen.levelno = true
			err = rawInt(v, &r.Levelno)
		case "levelname":
			seen.levelname = true
			err = rawString(v, &r.Levelname)
		case "pathname":
			err = rawString(v, &r.Pathname)
		case "filename":
			err = rawString(v, &r.Filename)
		case "module":
			err = rawString(v, &r.Module)
		case "lineno":
			err = rawInt(v, &r.Lineno)
		case "funcName":
			err = rawString(v, &r.FuncName)
		case "created":
			err = rawFloat(v, &r.Created)
		case "asctime":
			seen.asctime = true
			err = rawString(v, &r.Asctime)
		case "thread":
			err = rawInt64(v, &r.Thread)
		case "threadName":
			err = rawString(v, &r.ThreadName)
		case "process":
			err = rawInt64(v, &r.Process)
		case "msg":
			// A sender that forwards record.msg instead of getMessage() may
			// send a non-string; Python's receiver would print str() of it.
			if v[0] == '"' || v[0] == 'n' {
				err = rawString(v, &r.Msg)
			} else {
				r.Msg = string(v)
			}
		case "args":
		case "exc_info":
			err = rawExcInfo(v, &r.ExcInfo)
		case "stack_info":
			err = rawString(v, &r.StackInfo)
		default:
			r.Extra = append(r.Extra, ExtraField{Key: key, Value: append(json.RawMessage(nil), v...)})
		}
		if err != nil {
			return nil, fmt.Errorf("agent: log record: key %q: %w", key, err)
		}
		i = skipSpace(body, end)
		if i < len(body) && body[i] == ',' {
			i = skipSpace(body, i+1)
		}
	}
	if !seen.asctime || r.Asctime == "" {
		r.Asctime = asctimeFromCreated(r.Created)
	}
	if !seen.levelname || r.Levelname == "" {
		r.Levelname = pyLevelName(r.Levelno)
	}
	if !seen.levelno {
		r.Levelno, _ = PyLevelNo(r.Levelname)
	}
	return r, nil
}

// The helpers below walk JSON that json.Valid has accepted; they still
// check bounds so that a mistake can never become a panic.

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for i < len(b) && !strings.ContainsRune(",:}] \t\r\n", rune(b[i])) {
		i++
	}
	return i
}

func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// rawKind names the JSON type of a raw value, for errors.
func rawKind(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

func decodeRawString(v []byte) (string, error) {
	if len(v) >= 2 && v[0] == '"' && bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
		return string(v[1 : len(v)-1]), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", err
	}
	return s, nil
}

// rawString stores a string value; null stores "" (a later duplicate key
// wins, as in Python).
func rawString(v []byte, dst *string) error {
	switch v[0] {
	case 'n':
		*dst = ""
		return nil
	case '"':
		s, err := decodeRawString(v)
		if err == nil {
			*dst = s
		}
		return err
	}
	return fmt.Errorf("expected a string, got %s", rawKind(v))
}

func rawInt64(v []byte, dst *int64) error {
	switch k := rawKind(v); k {
	case "null":
		*dst = 0
		return nil
	case "number":
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return fmt.Errorf("expected an integer, got %s", v)
		}
		*dst = n
		return nil
	default:
		return fmt.Errorf("expected a number, got %s", k)
	}
}

func rawInt(v []byte, dst *int) error {
	var n int64
	if err := rawInt64(v, &n); err != nil {
		return err
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return fmt.Errorf("integer %d out of range", n)
	}
	*dst = int(n)
	return nil
}

func rawFloat(v []byte, dst *float64) error {
	switch k := rawKind(v); k {
	case "null":
		*dst = 0
		return nil
	case "number":
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return fmt.Errorf("expected a float, got %s", v)
		}
		*dst = f
		return nil
	default:
		return fmt.Errorf("expected a number, got %s", k)
	}
}

// rawExcInfo accepts upstream's list of strings, and a single string from
// senders that pre-join the traceback.
func rawExcInfo(v []byte, dst *[]string) error {
	switch v[0] {
	case 'n':
		*dst = nil
		return nil
	case '"':
		var s string
		if err := rawString(v, &s); err != nil {
			return err
		}
		*dst = []string{s}
		return nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			return err
		}
		lines := make([]string, len(items))
		for i, item := range items {
			if item[0] != '"' {
				return fmt.Errorf("[%d]: expected a string, got %s", i, rawKind(item))
			}
			if err := rawString(item, &lines[i]); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		*dst = lines
		return nil
	}
	return fmt.Errorf("expected a list of strings, got %s", rawKind(v))
}

// appendPyRaw re-encodes an arbitrary JSON value in json.dumps style, keeping
// object key order, so Extra fields from any sender come out as Python would
// have written them. A value outside py's model (an integer beyond 64 bits)
// is written as null: Extra only ever holds values the decoder has already
// accepted as JSON.
func appendPyRaw(dst []byte, raw json.RawMessage) []byte {
	v, err := py.Loads(raw)
	if err == nil {
		var out []byte
		if out, err = py.AppendJSON(dst, v, py.Options{}); err == nil {
			return out
		}
	}
	return append(dst, "null"...)
}
