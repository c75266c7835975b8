package runner

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Results a finished message may carry (avocado/core/teststatus.py).
const (
	ResultPass        = "pass"
	ResultFail        = "fail"
	ResultError       = "error"
	ResultSkip        = "skip"
	ResultWarn        = "warn"
	ResultCancel      = "cancel"
	ResultInterrupted = "interrupted"
)

// MaxChunk is the largest payload put in one stdout/stderr message. Avocado
// drops a connection on a line over 32 MiB (after base64), and then the job
// hangs; 1 MiB keeps far away from that.
const MaxChunk = 1 << 20

// Field is one key of a Message.
type Field struct {
	Key   string
	Value any
}

// Message is one status message. It is an ordered list of keys because
// Avocado's runners print their dicts in insertion order and the printed
// form is compared by Avocado's selftests. Values are nil, bool, int,
// int64, float64, string or []byte; []byte travels as
// {"__base64_encoded__": ...}.
type Message []Field

// Get returns the value of key and whether it is present.
func (m Message) Get(key string) (any, bool) {
	for _, f := range m {
		if f.Key == key {
			return f.Value, true
		}
	}
	return nil, false
}

// With returns m with key set to v: replaced in place when present,
// appended otherwise.
func (m Message) With(key string, v any) Message {
	for i, f := range m {
		if f.Key == key {
			out := append(Message(nil), m...)
			out[i].Value = v
			return out
		}
	}
	return append(m[:len(m):len(m)], Field{key, v})
}

// MarshalJSON encodes m as one JSON object in key order, the way Avocado's
// status client does (bytes as base64 objects, finite floats only).
func (m Message) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	if err := writeJSONValue(&b, m); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// EncodeLine returns m as one newline-terminated JSON line for the status
// server.
func (m Message) EncodeLine() ([]byte, error) {
	var b bytes.Buffer
	if err := writeJSONValue(&b, m); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func writeJSONValue(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case uint64:
		b.WriteString(strconv.FormatUint(x, 10))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("runner: message value %v is not valid JSON", x)
		}
		// Python's repr digits are valid JSON for finite numbers and keep
		// the wire identical to what Avocado's own runners send.
		b.WriteString(pyFloat(x))
	case string:
		writeJSONString(b, x)
	case []byte:
		b.WriteString(`{"__base64_encoded__": "`)
		b.WriteString(base64.StdEncoding.EncodeToString(x))
		b.WriteString(`"}`)
	case Message:
		b.WriteByte('{')
		for i, f := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeJSONString(b, f.Key)
			b.WriteString(": ")
			if err := writeJSONValue(b, f.Value); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := writeJSONValue(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case []string:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeJSONString(b, e)
		}
		b.WriteByte(']')
	default:
		// Other types (maps decoded from recipes) go through encoding/json.
		data, err := json.Marshal(x)
		if err != nil {
			return fmt.Errorf("runner: message value of type %T: %w", v, err)
		}
		b.Write(data)
	}
	return nil
}

// writeJSONString writes s with Python's ensure_ascii escaping. Invalid
// UTF-8 becomes U+FFFD: raw data belongs in []byte values, never in str.
func writeJSONString(b *bytes.Buffer, s string) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(b, `\u%04x`, r)
		case r < 0x80:
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		}
	}
	b.WriteByte('"')
}

// Monotonic returns CLOCK_MONOTONIC in seconds, the clock behind Python's
// time.monotonic(). Avocado mixes its own monotonic readings with the
// runner's (it injects finished messages on timeouts), so no other clock
// will do; Go's time package does not expose this value.
func Monotonic() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// Cannot happen on Linux; a zero time would make Avocado ignore
		// the message, so fail loudly instead.
		panic(fmt.Sprintf("runner: clock_gettime(CLOCK_MONOTONIC): %v", err))
	}
	ns := ts.Nano()
	if ns%1e9 == 0 {
		return float64(ns / 1e9)
	}
	// Same arithmetic as CPython (_PyTime_AsSecondsDouble), so the printed
	// digits look like Python's.
	return float64(ns) / 1e9
}

// StartedMessage is the first message of a test.
func StartedMessage() Message { return Message{{"status", "started"}} }

// HeartbeatMessage is a typeless running message: progress only.
func HeartbeatMessage() Message { return Message{{"status", "running"}} }

// OutputMessage carries raw bytes of the body's stdout or stderr (stream is
// "stdout" or "stderr"). Without an encoding Avocado copies the bytes
// unchanged into the stdout/stderr files.
func OutputMessage(stream string, data []byte) Message {
	return Message{{"type", stream}, {"log", data}, {"status", "running"}}
}

// TextOutputMessage carries a final, unterminated piece of output that is
// valid UTF-8. The encoding makes Avocado terminate the line in debug.log;
// without it the partial line would stay in a line buffer that Avocado
// shares between all tests of a job and leak into the next test's log.
func TextOutputMessage(stream string, text string) Message {
	return Message{{"type", stream}, {"log", []byte(text)}, {"encoding", "utf-8"}, {"status", "running"}}
}

// LogMessage is a line for the test's debug.log. logger and level are
// optional; when logger is set Avocado also re-emits the line on that
// Python logger, which requires both the encoding and the level name (it
// crashes its status updater otherwise), so they always come together.
func LogMessage(logger, level, text string) Message {
	var m Message
	if logger != "" {
		if level == "" {
			level = "INFO"
		}
		m = append(m, Field{"log_name", logger}, Field{"log_level", pyLogLevel(level)}, Field{"log_levelname", level})
	}
	return append(m, Field{"type", "log"}, Field{"log", []byte(text)}, Field{"encoding", "utf-8"}, Field{"status", "running"})
}

// pyLogLevel maps a Python level name to its number.
func pyLogLevel(name string) int {
	switch strings.ToUpper(name) {
	case "CRITICAL", "FATAL":
		return 50
	case "ERROR":
		return 40
	case "WARNING", "WARN":
		return 30
	case "INFO":
		return 20
	case "DEBUG":
		return 10
	}
	return 20
}

// FinishedMessage is the last message of a test. reason and returnCode are
// left out when empty / nil, as Avocado's helpers drop None values.
func FinishedMessage(result, reason string, returnCode *int) Message {
	m := Message{{"result", result}}
	if reason != "" {
		m = append(m, Field{"fail_reason", reason})
	}
	if returnCode != nil {
		m = append(m, Field{"returncode", *returnCode})
	}
	return append(m, Field{"status", "finished"})
}
