package agent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const logframesDir = "../testdata/logframes"

// readFixtureFrames splits a fixture file into raw frames (header included)
// without using ReadFrame, so the fixture check does not depend on the code
// under test.
func readFixtureFrames(tb testing.TB, name string) [][]byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(logframesDir, name))
	if err != nil {
		tb.Fatalf("read fixture (regenerate with gen_logframes.py): %v", err)
	}
	var frames [][]byte
	for len(data) > 0 {
		if len(data) < 4 {
			tb.Fatalf("%s: %d stray bytes at the end", name, len(data))
		}
		n := int(binary.BigEndian.Uint32(data))
		if len(data) < 4+n {
			tb.Fatalf("%s: frame of %d bytes truncated", name, n)
		}
		frames = append(frames, data[:4+n])
		data = data[4+n:]
	}
	return frames
}

// genericFields decodes a body with encoding/json alone, as an independent
// view of what the record must hold.
func genericFields(tb testing.TB, body []byte) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("generic decode: %v", err)
	}
	return m
}

func checkAgainstGeneric(tb testing.TB, rec *LogRecord, m map[string]any) {
	tb.Helper()
	str := func(key string) string { s, _ := m[key].(string); return s }
	num := func(key string) string { n, _ := m[key].(json.Number); return string(n) }
	checks := []struct {
		key       string
		got, want string
	}{
		{"name", rec.Name, str("name")},
		{"levelno", strconv.Itoa(rec.Levelno), num("levelno")},
		{"levelname", rec.Levelname, str("levelname")},
		{"pathname", rec.Pathname, str("pathname")},
		{"filename", rec.Filename, str("filename")},
		{"module", rec.Module, str("module")},
		{"lineno", strconv.Itoa(rec.Lineno), num("lineno")},
		{"funcName", rec.FuncName, str("funcName")},
		{"created", string(appendPyFloat(nil, rec.Created)), num("created")},
		{"asctime", rec.Asctime, str("asctime")},
		{"thread", strconv.FormatInt(rec.Thread, 10), num("thread")},
		{"threadName", rec.ThreadName, str("threadName")},
		{"process", strconv.FormatInt(rec.Process, 10), num("process")},
		{"msg", rec.Msg, str("msg")},
		{"stack_info", rec.StackInfo, str("stack_info")},
	}
	for _, c := range checks {
		if c.got != c.want {
			tb.Errorf("key %q: got %q, want %q", c.key, c.got, c.want)
		}
	}
	var wantExc []string
	if list, ok := m["exc_info"].([]any); ok {
		for _, e := range list {
			wantExc = append(wantExc, e.(string))
		}
	}
	if !reflect.DeepEqual(rec.ExcInfo, wantExc) && (len(rec.ExcInfo) != 0 || len(wantExc) != 0) {
		tb.Errorf("exc_info: got %q, want %q", rec.ExcInfo, wantExc)
	}
}

func TestReadFrame_upstreamFixtures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames int
		check  func(t *testing.T, recs []*LogRecord)
	}{
		{"basic", 1, func(t *testing.T, recs []*LogRecord) {
			r := recs[0]
			if r.Name != "avocado.service.emit" || r.Levelno != 20 || r.Levelname != "INFO" || r.Msg != "svc hello 5" {
				t.Errorf("basic record: %+v", r)
			}
			if r.Asctime != "2025-11-22 01:43:15,178" || r.Created != 1763775795.1784096 {
				t.Errorf("basic time: asctime %q created %v", r.Asctime, r.Created)
			}
			if r.Filename != "demo.py" || r.Module != "demo" || r.Lineno != 42 || r.FuncName != "emit" {
				t.Errorf("basic call site: %+v", r)
			}
			if r.ExcInfo != nil || r.StackInfo != "" || r.Extra != nil {
				t.Errorf("basic optional keys present: %+v", r)
			}
		}},
		{"levels", 5, func(t *testing.T, recs []*LogRecord) {
			want := []string{"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
			for i, r := range recs {
				if r.Levelname != want[i] || r.Levelno != 10*(i+1) || r.Msg != "level "+want[i] {
					t.Errorf("record %d: %q %d %q", i, r.Levelname, r.Levelno, r.Msg)
				}
			}
		}},
		{"unicode", 7, func(t *testing.T, recs []*LogRecord) {
			wants := []string{
				"quotes \" and \\ backslash, tab\tnl\ncr\rbs\bff\f",
				"controls \x00\x01\x1f del\x7f nbsp\u00a0 end",
				"bmp \u00e9\u4e2d\u6587 \u2028\u2029 \ufeff \uffff",
				"astral \U0001F600 \U00010000 \U0010FFFF",
				"html </script> & <b>",
				"args \u00e9 '\U0001F600' 7%",
				"",
			}
			for i, r := range recs {
				if r.Msg != wants[i] {
					t.Errorf("record %d msg: got %q, want %q", i, r.Msg, wants[i])
				}
			}
			if recs[4].Name != "avocado.service.\u00fcnicode" || recs[4].FuncName != "f\u00fcnc" || recs[4].Filename != "svc.py" {
				t.Errorf("non-ASCII name/func: %+v", recs[4])
			}
			if recs[6].ThreadName != "Thread-1 (worker)" {
				t.Errorf("threadName: %q", recs[6].ThreadName)
			}
		}},
		{"exception", 2, func(t *testing.T, recs []*LogRecord) {
			plain := strings.Join(recs[0].ExcInfo, "")
			if !strings.HasPrefix(plain, "Traceback (most recent call last):\n") || !strings.HasSuffix(plain, "ValueError: invalid literal for int() with base 10: 'x'\n") {
				t.Errorf("plain traceback: %q", plain)
			}
			chained := strings.Join(recs[1].ExcInfo, "")
			if !strings.Contains(chained, "The above exception was the direct cause") || !strings.Contains(chained, "\u00e9t\u00e9 \U0001F600") {
				t.Errorf("chained traceback: %q", chained)
			}
		}},
		{"stack_info", 1, func(t *testing.T, recs []*LogRecord) {
			if !strings.HasPrefix(recs[0].StackInfo, "Stack (most recent call last):\n") {
				t.Errorf("stack_info: %q", recs[0].StackInfo)
			}
		}},
		{"long", 1, func(t *testing.T, recs []*LogRecord) {
			if want := "long " + strings.Repeat("0123456789abcdef\u00e9", 8192); recs[0].Msg != want {
				t.Errorf("long msg: %d bytes, want %d", len(recs[0].Msg), len(want))
			}
		}},
		{"created", 8, func(t *testing.T, recs []*LogRecord) {
			want := []string{"2025-11-22 01:43:15,178", "2001-09-09 01:46:40,000", "2025-11-22 01:43:15,000",
				"2025-11-22 01:43:15,099", "2025-11-22 01:43:15,999", "1970-01-01 00:00:00,001",
				"2025-11-22 01:43:15,500", "2038-01-19 03:14:07,875"}
			for i, r := range recs {
				if r.Asctime != want[i] {
					t.Errorf("record %d asctime: got %q, want %q", i, r.Asctime, want[i])
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames := readFixtureFrames(t, tc.name+".bin")
			if len(frames) != tc.frames {
				t.Fatalf("fixture has %d frames, want %d", len(frames), tc.frames)
			}
			r := bytes.NewReader(bytes.Join(frames, nil))
			var recs []*LogRecord
			for i, frame := range frames {
				rec, body, err := ReadFrame(r, 0)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(body, frame[4:]) {
					t.Fatalf("frame %d: returned body differs from the frame", i)
				}
				checkAgainstGeneric(t, rec, genericFields(t, body))
				if got := AppendFrame(nil, rec); !bytes.Equal(got, frame) {
					t.Errorf("frame %d: re-encoding is not byte-identical\n got %s\nwant %s", i, got[4:], frame[4:])
				}
				recs = append(recs, rec)
			}
			if _, _, err := ReadFrame(r, 0); err != io.EOF {
				t.Fatalf("after the last frame: err %v, want io.EOF", err)
			}
			tc.check(t, recs)
		})
	}
}

func TestDecodeLogRecord_wholeDict(t *testing.T) {
	frames := readFixtureFrames(t, "tolerant_dict.bin")
	rec, err := DecodeLogRecord(frames[0][4:])
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstGeneric(t, rec, genericFields(t, frames[0][4:]))
	var keys []string
	for _, f := range rec.Extra {
		keys = append(keys, f.Key)
	}
	// record.__dict__ order, minus the keys the struct holds.
	wantKeys := []string{"exc_text", "msecs", "relativeCreated", "processName", "message", "extra_map"}
	if !reflect.DeepEqual(keys, wantKeys) && !reflect.DeepEqual(keys, append(wantKeys[:5:5], "taskName", "extra_map")) {
		t.Errorf("extra keys %q, want %q", keys, wantKeys)
	}
	out := string(rec.AppendJSON(nil))
	for _, want := range []string{
		`"extra_map": {"b": [1, 2.5, null, true], "a": "\u00e9"}`,
		`"msecs": 178.40957641601562`,
		`"exc_text": "Traceback (most recent call last):\n`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("re-encoded record lacks %s:\n%s", want, out)
		}
	}
	again, err := DecodeLogRecord([]byte(out))
	if err != nil || !reflect.DeepEqual(again.Extra[len(again.Extra)-1].Key, "extra_map") {
		t.Errorf("re-encoded record does not decode back: %v", err)
	}
}

func TestDecodeLogRecord_missingAsctime(t *testing.T) {
	frames := readFixtureFrames(t, "tolerant_noasctime.bin")
	rec, err := DecodeLogRecord(frames[0][4:])
	if err != nil {
		t.Fatal(err)
	}
	at, err := time.ParseInLocation("2006-01-02 15:04:05,000", rec.Asctime, time.Local)
	if err != nil {
		t.Fatalf("filled asctime %q: %v", rec.Asctime, err)
	}
	if want := int64(rec.Created * 1000); at.UnixMilli() != want {
		t.Errorf("filled asctime %q is %d ms, want %d ms from created %v", rec.Asctime, at.UnixMilli(), want, rec.Created)
	}
}

func TestDecodeLogRecord_derivedAndNull(t *testing.T) {
	rec, err := DecodeLogRecord([]byte(`{"name": "x", "levelname": "WARNING", "thread": null, "threadName": null, "funcName": null, "created": 0.5, "msg": 12, "args": [1, 2], "exc_info": "Traceback\n"}`))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Levelno != 30 || rec.Thread != 0 || rec.ThreadName != "" || rec.Msg != "12" {
		t.Errorf("decoded %+v", rec)
	}
	if !reflect.DeepEqual(rec.ExcInfo, []string{"Traceback\n"}) {
		t.Errorf("exc_info %q", rec.ExcInfo)
	}
	rec, err = DecodeLogRecord([]byte(`{"levelno": 35}`))
	if err != nil || rec.Levelname != "Level 35" {
		t.Errorf("levelname from levelno 35: %q, %v", rec.Levelname, err)
	}
}

func TestDecodeLogRecord_errors(t *testing.T) {
	for _, tc := range []struct {
		body string
		want string
	}{
		{``, "unexpected end of JSON input"},
		{`[1, 2]`, "expected a JSON object"},
		{`"text"`, "expected a JSON object"},
		{`{"lineno": "12"}`, `key "lineno": expected a number, got string`},
		{`{"lineno": 1.5}`, `key "lineno": expected an integer, got 1.5`},
		{`{"lineno": 99999999999}`, `key "lineno": integer 99999999999 out of range`},
		{`{"name": 5}`, `key "name": expected a string, got number`},
		{`{"created": "now"}`, `key "created": expected a number, got string`},
		{`{"exc_info": ["a", 3]}`, `key "exc_info": [1]: expected a string, got number`},
		{`{"exc_info": {}}`, `key "exc_info": expected a list of strings, got object`},
		{`{"name": "x"} {}`, "after top-level value"},
		{`{"name": "x"`, "unexpected end of JSON input"},
		{`{"name": }`, "invalid character"},
	} {
		_, err := DecodeLogRecord([]byte(tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "agent: log record: ") {
			t.Errorf("DecodeLogRecord(%s): err %v, want it to contain %q", tc.body, err, tc.want)
		}
	}
}

func TestReadFrame_errors(t *testing.T) {
	good := AppendFrame(nil, &LogRecord{Name: "n", Msg: "after"})
	bad := []byte("\x00\x00\x00\x05{nope")

	r := bufio.NewReader(bytes.NewReader(append(append([]byte{}, bad...), good...)))
	_, body, err := ReadFrame(r, 0)
	var de *FrameDecodeError
	if !errors.As(err, &de) || string(body) != "{nope" {
		t.Fatalf("invalid JSON frame: err %v body %q", err, body)
	}
	if rec, _, err := ReadFrame(r, 0); err != nil || rec.Msg != "after" {
		t.Fatalf("frame after an invalid one: %v %v", rec, err)
	}

	_, _, err = ReadFrame(bytes.NewReader(good), 10)
	var tl *FrameTooLargeError
	if !errors.As(err, &tl) || int(tl.Size) != len(good)-4 || tl.Max != 10 {
		t.Errorf("oversize frame: %v", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(good[:2]), 0); err != io.ErrUnexpectedEOF {
		t.Errorf("split header: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(good[:len(good)-1]), 0); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated body: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(good[:4]), 0); err != io.ErrUnexpectedEOF {
		t.Errorf("header only: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(nil), 0); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
}

func TestAppendPyFloat_pythonTable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(logframesDir, "float_repr.txt"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		hexBits, want, ok := strings.Cut(line, " ")
		bits, err := strconv.ParseUint(hexBits, 16, 64)
		if !ok || err != nil {
			t.Fatalf("float_repr.txt:%d: bad line %q", i+1, line)
		}
		if got := string(appendPyFloat(nil, math.Float64frombits(bits))); got != want {
			t.Errorf("float_repr.txt:%d: bits %s: got %s, want %s", i+1, hexBits, got, want)
		}
		n++
	}
	if n < 4000 {
		t.Fatalf("only %d values checked", n)
	}
}

func TestLogRecord_AppendJSON_goStrings(t *testing.T) {
	// Strings Python cannot hold (invalid UTF-8) come out as U+FFFD.
	r := &LogRecord{Msg: "bad \xff\xfe utf8 \U0001F600 \x7f", Created: 1.5}
	got := string(r.AppendJSON(nil))
	want := `"msg": "bad \ufffd\ufffd utf8 \ud83d\ude00 \u007f"`
	if !strings.Contains(got, want) {
		t.Errorf("got %s, want it to contain %s", got, want)
	}
	if out, _ := r.MarshalJSON(); string(out) != got {
		t.Errorf("MarshalJSON differs from AppendJSON")
	}
	var back LogRecord
	if err := json.Unmarshal([]byte(got), &back); err != nil || back.Created != 1.5 {
		t.Errorf("UnmarshalJSON: %v %+v", err, back)
	}
}

func TestPyLevel_mapping(t *testing.T) {
	for _, tc := range []struct {
		in   slog.Level
		no   int
		name string
	}{
		{slog.LevelDebug - 4, 10, "DEBUG"},
		{slog.LevelDebug, 10, "DEBUG"},
		{slog.LevelInfo - 1, 10, "DEBUG"},
		{slog.LevelInfo, 20, "INFO"},
		{slog.LevelWarn, 30, "WARNING"},
		{slog.LevelError, 40, "ERROR"},
		{LevelCritical, 50, "CRITICAL"},
		{LevelCritical + 10, 50, "CRITICAL"},
	} {
		no, name := PyLevel(tc.in)
		if no != tc.no || name != tc.name {
			t.Errorf("PyLevel(%v) = %d %s, want %d %s", tc.in, no, name, tc.no, tc.name)
		}
		if back := SlogLevel(no); pyLevelOf(back) != no {
			t.Errorf("SlogLevel(%d) = %v does not map back", no, back)
		}
	}
}

// pyLevelOf is the level number of a slog level.
func pyLevelOf(l slog.Level) int { n, _ := PyLevel(l); return n }

func FuzzLogRecordDecode(f *testing.F) {
	for _, name := range []string{"basic.bin", "unicode.bin", "exception.bin", "tolerant_dict.bin"} {
		for _, frame := range readFixtureFrames(f, name) {
			f.Add(frame[4:])
		}
	}
	f.Add([]byte(`{"x": [1, {"y": 1e400}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec, err := DecodeLogRecord(body)
		if err != nil {
			return
		}
		// What we accept, encoding/json accepts, and the plain string keys
		// agree with its (also last-wins) reading.
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("decoded a record that encoding/json rejects: %v", err)
		}
		for key, got := range map[string]string{"name": rec.Name, "pathname": rec.Pathname, "funcName": rec.FuncName, "threadName": rec.ThreadName} {
			if want, _ := m[key].(string); got != want {
				t.Fatalf("key %q: got %q, encoding/json reads %q", key, got, want)
			}
		}
		if want, ok := m["msg"].(string); ok && rec.Msg != want {
			t.Fatalf("msg: got %q, encoding/json reads %q", rec.Msg, want)
		}
		// Whatever decodes must re-encode to something that decodes to the
		// same record: the encoder is the decoder's inverse.
		again, err := DecodeLogRecord(rec.AppendJSON(nil))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		a, b := rec.AppendJSON(nil), again.AppendJSON(nil)
		if !bytes.Equal(a, b) {
			t.Fatalf("encoding is not stable:\n%s\n%s", a, b)
		}
	})
}
