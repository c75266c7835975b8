package logframe

import (
	"fmt"
	"log/slog"
	"math"
	"time"
)

// asctimeLayout is Python logging's default "%Y-%m-%d %H:%M:%S"; the
// ",mmm" milliseconds suffix is appended separately.
const asctimeLayout = "2006-01-02 15:04:05"

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
