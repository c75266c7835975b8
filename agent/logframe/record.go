package logframe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"

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

// UnmarshalJSON decodes a record with DecodeLogRecord's tolerance.
func (r *LogRecord) UnmarshalJSON(data []byte) error {
	rec, err := DecodeLogRecord(data)
	if err != nil {
		return err
	}
	*r = *rec
	return nil
}

// maxBrackets is how many '[' and '{' a body may hold for gjson's validator
// to check it. That validator recurses once per nesting level, so a frame
// of nothing but brackets would grow the stack by hundreds of megabytes;
// below this count the nesting is also within encoding/json's own limit,
// so both validators accept the same bodies.
const maxBrackets = 10000

// DecodeLogRecord decodes one record body. It is tolerant the way Python's
// logging.makeLogRecord is: unknown keys are kept in Extra, a null value
// sets the field to its zero value, "args" is ignored (upstream always
// sends null), a missing asctime is rebuilt from created, and a missing
// levelname or levelno is derived from the other. Invalid JSON, or a value
// of the wrong type, is an error naming the key.
//
// The record's strings share one copy of body, so body may be reused as
// soon as DecodeLogRecord returns.
func DecodeLogRecord(body []byte) (*LogRecord, error) {
	valid := false
	if bytes.Count(body, []byte{'['})+bytes.Count(body, []byte{'{'}) <= maxBrackets {
		valid = gjson.ValidBytes(body)
	} else {
		valid = json.Valid(body)
	}
	if !valid {
		// encoding/json words the error, with the offset.
		var v any
		err := json.Unmarshal(body, &v)
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, fmt.Errorf("logframe: record: %w", err)
	}
	// Checked once for the whole body rather than per string: gjson's own
	// unescaping is then exact for every string (see str).
	plain := utf8.Valid(body) && !bytes.Contains(body, []byte(`\u`))
	doc := gjson.Parse(string(body))
	if !doc.IsObject() {
		return nil, fmt.Errorf("logframe: record: expected a JSON object, got %s", rawKind(doc.Raw))
	}
	r := &LogRecord{}
	var seen struct{ asctime, levelno, levelname bool }
	var err error
	var key string
	doc.ForEach(func(k, v gjson.Result) bool {
		if key, err = str(k, plain); err != nil {
			return false
		}
		raw := v.Raw
		switch key {
		case "name":
			err = stringField(v, plain, &r.Name)
		case "levelno":
			seen.levelno = true
			err = intField(raw, &r.Levelno)
		case "levelname":
			seen.levelname = true
			err = stringField(v, plain, &r.Levelname)
		case "pathname":
			err = stringField(v, plain, &r.Pathname)
		case "filename":
			err = stringField(v, plain, &r.Filename)
		case "module":
			err = stringField(v, plain, &r.Module)
		case "lineno":
			err = intField(raw, &r.Lineno)
		case "funcName":
			err = stringField(v, plain, &r.FuncName)
		case "created":
			err = floatField(v, &r.Created)
		case "asctime":
			seen.asctime = true
			err = stringField(v, plain, &r.Asctime)
		case "thread":
			err = int64Field(raw, &r.Thread)
		case "threadName":
			err = stringField(v, plain, &r.ThreadName)
		case "process":
			err = int64Field(raw, &r.Process)
		case "msg":
			// A sender that forwards record.msg instead of getMessage() may
			// send a non-string; Python's receiver would print str() of it.
			if v.Type == gjson.String || v.Type == gjson.Null {
				err = stringField(v, plain, &r.Msg)
			} else {
				r.Msg = raw
			}
		case "args":
		case "exc_info":
			err = excInfoField(v, plain, &r.ExcInfo)
		case "stack_info":
			err = stringField(v, plain, &r.StackInfo)
		default:
			r.Extra = append(r.Extra, ExtraField{Key: key, Value: json.RawMessage(raw)})
		}
		if err != nil {
			err = fmt.Errorf("logframe: record: key %q: %w", key, err)
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
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

// The helpers below read raw values of a document the validator accepted.

// rawKind names the JSON type of a raw value, for errors.
func rawKind(v string) string {
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

// str is the value of a JSON string. gjson has already unescaped it, and
// a plain one is a substring of the document. In a body with a \u escape
// or invalid UTF-8 (plain false) strings go through encoding/json instead,
// whose reading (U+FFFD for a lone surrogate or a bad byte) is what every
// other reader of these records sees and gjson's is not.
func str(v gjson.Result, plain bool) (string, error) {
	if !plain && (strings.Contains(v.Raw, `\u`) || !utf8.ValidString(v.Raw)) {
		var s string
		if err := json.Unmarshal([]byte(v.Raw), &s); err != nil {
			return "", err
		}
		return s, nil
	}
	return v.Str, nil
}

// stringField stores a string value; null stores "" (a later duplicate
// key wins, as in Python).
func stringField(v gjson.Result, plain bool, dst *string) error {
	switch rawKind(v.Raw) {
	case "null":
		*dst = ""
		return nil
	case "string":
		s, err := str(v, plain)
		if err == nil {
			*dst = s
		}
		return err
	}
	return fmt.Errorf("expected a string, got %s", rawKind(v.Raw))
}

func int64Field(v string, dst *int64) error {
	switch k := rawKind(v); k {
	case "null":
		*dst = 0
		return nil
	case "number":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("expected an integer, got %s", v)
		}
		*dst = n
		return nil
	default:
		return fmt.Errorf("expected a number, got %s", k)
	}
}

func intField(v string, dst *int) error {
	var n int64
	if err := int64Field(v, &n); err != nil {
		return err
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return fmt.Errorf("integer %d out of range", n)
	}
	*dst = int(n)
	return nil
}

func floatField(v gjson.Result, dst *float64) error {
	switch k := rawKind(v.Raw); k {
	case "null":
		*dst = 0
		return nil
	case "number":
		// gjson parsed it with strconv.ParseFloat already; out of range
		// is the one error a valid JSON number can give.
		if math.IsInf(v.Num, 0) {
			return fmt.Errorf("expected a float, got %s", v.Raw)
		}
		*dst = v.Num
		return nil
	default:
		return fmt.Errorf("expected a number, got %s", k)
	}
}

// excInfoField accepts upstream's list of strings, and a single string
// from senders that pre-join the traceback.
func excInfoField(v gjson.Result, plain bool, dst *[]string) error {
	switch k := rawKind(v.Raw); k {
	case "null":
		*dst = nil
		return nil
	case "string":
		s, err := str(v, plain)
		if err != nil {
			return err
		}
		*dst = []string{s}
		return nil
	case "array":
		lines := []string{}
		var err error
		v.ForEach(func(_, item gjson.Result) bool {
			i := len(lines)
			if k := rawKind(item.Raw); k != "string" {
				err = fmt.Errorf("[%d]: expected a string, got %s", i, k)
				return false
			}
			var s string
			if s, err = str(item, plain); err != nil {
				err = fmt.Errorf("[%d]: %w", i, err)
				return false
			}
			lines = append(lines, s)
			return true
		})
		if err != nil {
			return err
		}
		*dst = lines
		return nil
	default:
		return fmt.Errorf("expected a list of strings, got %s", k)
	}
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
