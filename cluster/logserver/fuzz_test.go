package logserver

import (
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent/logframe"
)

// FuzzLogLine: whatever a peer puts in a record's fields, its lines (the
// controller half, the worker half and the continuation lines after them)
// start with what this server wrote: one line of the record's own, every
// further line indented. Audit 3 L1 found a levelname with a newline.
func FuzzLogLine(f *testing.F) {
	f.Add("2026-12-01 00:00:00,000", "avocado.test", "INFO\nnode9(10.9.9.9) v", "msg", "", "")
	f.Add("a\rb", "n\u2028x", "WARNING", "x\nnode2(1.2.3.4) y ERROR | fake", "Traceback\n  x\n", "\n\n")
	f.Add("\x00", "\xff\xfe", "\x85", "\r\n", "\n", "stack\r")
	f.Fuzz(func(t *testing.T, asctime, name, level, msg, exc, stack string) {
		rec := &logframe.LogRecord{Asctime: asctime, Name: name, Levelname: level, Msg: msg, StackInfo: stack}
		if exc != "" {
			rec.ExcInfo = []string{exc}
		}
		now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		const head = "2026-12-01 00:00:00,000 logserver L"
		for _, half := range []bool{true, false} {
			var b []byte
			if half {
				b = appendControllerHalf(b, now, rec.Levelname)
			}
			b = appendUnifiedLine(b, "node1", "10.0.0.1", rec)
			lines := strings.Split(string(b), "\n")
			first := "node1(10.0.0.1) "
			if half {
				first = head
			}
			if !strings.HasPrefix(lines[0], first) {
				t.Fatalf("first line %q does not start with %q", lines[0], first)
			}
			if half && !strings.Contains(lines[0], " | node1(10.0.0.1) ") {
				t.Fatalf("the worker half is not on the first line: %q", lines[0])
			}
			for _, l := range lines[1:] {
				if !strings.HasPrefix(l, "    ") {
					t.Fatalf("a field started line %q of %q", l, b)
				}
			}
			if strings.ContainsAny(string(b), "\r\u2028\u2029\u0085") {
				t.Fatalf("a line separator is left in %q", b)
			}
		}
	})
}
