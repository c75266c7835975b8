package runner

import (
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/agent/logframe"
	"github.com/vtcluster/vtcluster/agent/py"
)

// Results a finished message may carry (avocado/core/teststatus.py).
const (
	resultPass        = "pass"
	resultFail        = "fail"
	resultError       = "error"
	resultSkip        = "skip"
	resultWarn        = "warn"
	resultCancel      = "cancel"
	resultInterrupted = "interrupted"
)

// maxChunk is the largest payload put in one stdout/stderr message. Avocado
// drops a connection on a line over 32 MiB (after base64), and then the job
// hangs; 1 MiB keeps far away from that.
const maxChunk = 1 << 20

// field is one key of a message.
type field = py.Item

// message is one status message. It is a dict in insertion order because
// Avocado's runners print their dicts that way and the printed form
// (py.Repr) is compared by Avocado's selftests. Values are in py's model;
// []byte travels as {"__base64_encoded__": ...}.
type message = py.Dict

// messageJSON is how Avocado's status client writes a message:
// json.dumps's defaults, bytes as base64 objects, finite floats only.
var messageJSON = py.Options{Default: func(v any) (any, error) {
	if b, ok := v.([]byte); ok {
		return py.Dict{{Key: "__base64_encoded__", Value: base64.StdEncoding.EncodeToString(b)}}, nil
	}
	return nil, &py.NotSerializableError{Type: py.TypeName(v)}
}}

// marshalMessage encodes m as one JSON object in key order.
func marshalMessage(m message) ([]byte, error) {
	b, err := py.AppendJSON(nil, m, messageJSON)
	if err != nil {
		return nil, fmt.Errorf("runner: message: %w", err)
	}
	return b, nil
}

// encodeLine returns m as one newline-terminated JSON line for the status
// server.
func encodeLine(m message) ([]byte, error) {
	b, err := marshalMessage(m)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// monotonic returns CLOCK_MONOTONIC in seconds, the clock behind Python's
// time.monotonic(). Avocado mixes its own monotonic readings with the
// runner's (it injects finished messages on timeouts), so no other clock
// will do; Go's time package does not expose this value.
func monotonic() float64 {
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

// startedMessage is the first message of a test.
func startedMessage() message { return message{{Key: "status", Value: "started"}} }

// heartbeatMessage is a typeless running message: progress only.
func heartbeatMessage() message { return message{{Key: "status", Value: "running"}} }

// outputMessage carries raw bytes of the body's stdout or stderr (stream is
// "stdout" or "stderr"). Without an encoding Avocado copies the bytes
// unchanged into the stdout/stderr files.
func outputMessage(stream string, data []byte) message {
	return message{{Key: "type", Value: stream}, {Key: "log", Value: data}, {Key: "status", Value: "running"}}
}

// textOutputMessage carries a final, unterminated piece of output that is
// valid UTF-8. The encoding makes Avocado terminate the line in debug.log;
// without it the partial line would stay in a line buffer that Avocado
// shares between all tests of a job and leak into the next test's log.
func textOutputMessage(stream string, text string) message {
	return message{{Key: "type", Value: stream}, {Key: "log", Value: []byte(text)}, {Key: "encoding", Value: "utf-8"}, {Key: "status", Value: "running"}}
}

// logMessage is a line for the test's debug.log. logger and level are
// optional; when logger is set Avocado also re-emits the line on that
// Python logger, which requires both the encoding and the level name (it
// crashes its status updater otherwise), so they always come together.
func logMessage(logger, level, text string) message {
	var m message
	if logger != "" {
		if level == "" {
			level = "INFO"
		}
		m = append(m, field{Key: "log_name", Value: logger}, field{Key: "log_level", Value: pyLogLevel(level)}, field{Key: "log_levelname", Value: level})
	}
	return append(m, field{Key: "type", Value: "log"}, field{Key: "log", Value: []byte(text)}, field{Key: "encoding", Value: "utf-8"}, field{Key: "status", Value: "running"})
}

// pyLogLevel maps a Python level name to its number; an unknown name is
// INFO, the level logMessage defaults to.
func pyLogLevel(name string) int {
	if n, ok := logframe.PyLevelNo(strings.ToUpper(name)); ok {
		return n
	}
	return logframe.PyInfo
}

// finishedMessage is the last message of a test. reason and returnCode are
// left out when empty / nil, as Avocado's helpers drop None values.
func finishedMessage(result, reason string, returnCode *int) message {
	m := message{{Key: "result", Value: result}}
	if reason != "" {
		m = append(m, field{Key: "fail_reason", Value: reason})
	}
	if returnCode != nil {
		m = append(m, field{Key: "returncode", Value: *returnCode})
	}
	return append(m, field{Key: "status", Value: "finished"})
}
