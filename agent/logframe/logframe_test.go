package logframe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
)

const logframesDir = "../../testdata/logframes"

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
		{"created", string(py.AppendJSONFloat(nil, rec.Created)), num("created")},
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
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "logframe: record: ") {
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
	for _, body := range edgeCases {
		f.Add([]byte(body))
	}
	f.Fuzz(checkAgainstStdlib)
}

// checkAgainstStdlib holds DecodeLogRecord to encoding/json, an
// independent reader: it accepts no document encoding/json rejects, rejects
// valid JSON only for its shape (not an object, a key of the wrong type),
// reads the fields as encoding/json does, and what it decodes re-encodes
// to something that decodes to the same record.
func checkAgainstStdlib(t *testing.T, body []byte) {
	rec, err := DecodeLogRecord(body)
	valid := json.Valid(body)
	if err != nil {
		if valid && !strings.Contains(err.Error(), "expected a JSON object") && !strings.Contains(err.Error(), "record: key ") {
			t.Fatalf("rejected JSON that encoding/json accepts: %v", err)
		}
		return
	}
	if !valid {
		t.Fatalf("decoded a record that encoding/json rejects")
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("encoding/json cannot read the object: %v", err)
	}
	for key, got := range map[string]string{"name": rec.Name, "pathname": rec.Pathname, "funcName": rec.FuncName, "threadName": rec.ThreadName, "stack_info": rec.StackInfo} {
		if want, _ := m[key].(string); got != want {
			t.Fatalf("key %q: got %q, encoding/json reads %q", key, got, want)
		}
	}
	if want, ok := m["msg"].(string); ok && rec.Msg != want {
		t.Fatalf("msg: got %q, encoding/json reads %q", rec.Msg, want)
	}
	for key, got := range map[string]string{"lineno": strconv.Itoa(rec.Lineno), "thread": strconv.FormatInt(rec.Thread, 10), "process": strconv.FormatInt(rec.Process, 10)} {
		if want, ok := m[key].(json.Number); ok {
			if n, err := want.Int64(); err != nil || strconv.FormatInt(n, 10) != got {
				t.Fatalf("key %q: got %s, encoding/json reads %s", key, got, want)
			}
		}
	}
	if want, ok := m["created"].(json.Number); ok {
		if f, err := want.Float64(); err != nil || f != rec.Created {
			t.Fatalf("created: got %v, encoding/json reads %s", rec.Created, want)
		}
	}
	switch want := m["exc_info"].(type) {
	case []any:
		if len(want) != len(rec.ExcInfo) {
			t.Fatalf("exc_info: got %q, encoding/json reads %q", rec.ExcInfo, want)
		}
		for i := range want {
			if want[i] != rec.ExcInfo[i] {
				t.Fatalf("exc_info[%d]: got %q, encoding/json reads %q", i, rec.ExcInfo[i], want[i])
			}
		}
	case string:
		if !reflect.DeepEqual(rec.ExcInfo, []string{want}) {
			t.Fatalf("exc_info: got %q, encoding/json reads %q", rec.ExcInfo, want)
		}
	}
	again, err := DecodeLogRecord(rec.AppendJSON(nil))
	if err != nil {
		t.Fatalf("re-encoded record does not decode: %v", err)
	}
	if a, b := rec.AppendJSON(nil), again.AppendJSON(nil); !bytes.Equal(a, b) {
		t.Fatalf("encoding is not stable:\n%s\n%s", a, b)
	}
}

// benchRecord is shaped like the records of scripts/bench/logload: about
// 470 bytes, plain ASCII, no traceback.
func benchRecord() *LogRecord {
	return &LogRecord{
		Name: "avocado.service.bench", Levelno: 20, Levelname: "INFO",
		Pathname: "/work/main/bin/bench/logload", Filename: "logload", Module: "bench",
		Lineno: 42, FuncName: "send", Created: 1763775795.1784096, Asctime: "2025-11-22 01:43:15,178",
		Thread: 140245301585728, ThreadName: "MainThread", Process: 4242,
		Msg: "vtcbench c=0 n=123456 " + strings.Repeat("x", 98),
	}
}

func BenchmarkDecodeLogRecord(b *testing.B) {
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"bench", benchRecord().AppendJSON(nil)},
		{"basic", readFixtureFrames(b, "basic.bin")[0][4:]},
		{"unicode", readFixtureFrames(b, "unicode.bin")[2][4:]},
		{"exception", readFixtureFrames(b, "exception.bin")[1][4:]},
		{"tolerant_dict", readFixtureFrames(b, "tolerant_dict.bin")[0][4:]},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeLogRecord(tc.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// edgeCases are bodies at the edges of JSON and of the record's shape:
// escapes, surrogates, invalid UTF-8, number grammar and range, nulls,
// duplicate keys, nesting deeper than the validators allow.
var edgeCases = []string{
	`{}`,
	` {"name" : "a" ,"msg":"b"} `,
	"{\t\"name\":\r\n\"a\"}",
	`{"name": "a", "name": "b", "levelno": 40, "levelno": 10}`,
	`{"msg": "tab\t"}`,
	`{"msg": "esc \" \\ \/ \b \f \n \r \t"}`,
	`{"msg": "\u00e9\u4e2d \ud83d\ude00 \u0000 \uFFFF \uDBFF\uDFFF"}`,
	`{"msg": "lone \ud83d"}`,
	`{"msg": "lone \ude00 low"}`,
	`{"msg": "pair reversed \ude00\ud83d"}`,
	`{"msg": "high then high \ud83d\ud83d"}`,
	`{"msg": "bad hex \u12g4"}`,
	`{"msg": "bad escape \x"}`,
	"{\"msg\": \"raw \xc3\xa9 and \\n\"}",
	"{\"msg\": \"invalid \xff utf8\"}",
	"{\"msg\": \"invalid \xff utf8 \\n escaped\"}",
	`{"msg": 12}`,
	`{"msg": null, "name": null, "asctime": null, "exc_info": null, "stack_info": null}`,
	`{"n\u0061me": "escaped key"}`,
	`{"lineno": -0, "thread": -999999999999999999, "process": 999999999999999999}`,
	`{"thread": -9223372036854775808}`,
	`{"thread": 9223372036854775807}`,
	`{"thread": 9223372036854775808}`,
	`{"lineno": 2147483647, "levelno": -2147483648}`,
	`{"lineno": 2147483648}`,
	`{"lineno": 1e2}`,
	`{"lineno": 01}`,
	`{"lineno": 1.0}`,
	`{"created": -0, "process": 7}`,
	`{"created": 1e400}`,
	`{"created": 1E-3}`,
	`{"created": 1.5e+2}`,
	`{"created": .5}`,
	`{"created": 1.}`,
	`{"created": -}`,
	`{"created": 0x10}`,
	`{"created": Infinity}`,
	`{"args": null}`,
	`{"args": [1, 2]}`,
	`{"exc_info": []}`,
	`{"exc_info": [ "a\n" , "b" ]}`,
	`{"exc_info": ["a", ]}`,
	`{"exc_info": "joined\n"}`,
	`{"exc_info": [1]}`,
	`{"levelname": "WARN"}`,
	`{"levelname": ""}`,
	`{"asctime": ""}`,
	`{"name": "a",}`,
	`{"name": "a"} x`,
	`{"name": "a"`,
	`{"name": nul}`,
	`{"name": nullx}`,
	`{"unknown": {"a": [1]}}`,
	`[]`,
	``,
	strings.Repeat("[", 20000),
	`{"x": ` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
	`{"x": ` + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + `}`,
}

func TestDecodeLogRecord_edgeCases(t *testing.T) {
	for _, body := range edgeCases {
		t.Run("", func(t *testing.T) { checkAgainstStdlib(t, []byte(body)) })
	}
}

// allFixtureFrames is every upstream-shaped fixture frame in one stream.
func allFixtureFrames(tb testing.TB) (stream []byte, frames [][]byte) {
	tb.Helper()
	for _, name := range []string{"basic.bin", "levels.bin", "unicode.bin", "exception.bin", "stack_info.bin", "long.bin", "created.bin", "go_streamer.bin", "basic.bin"} {
		for _, f := range readFixtureFrames(tb, name) {
			frames = append(frames, f)
			stream = append(stream, f...)
		}
	}
	return stream, frames
}

func TestFrameReader_Next_asReadFrame(t *testing.T) {
	stream, frames := allFixtureFrames(t)
	for _, tc := range []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(stream) }},
		// long.bin's frame is larger than the buffer, and every frame
		// arrives a byte at a time.
		{"byte by byte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := NewFrameReader(tc.r(), 4<<10, 0)
			ref := tc.r()
			for i, frame := range frames {
				got, body, err := fr.Next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(body, frame[4:]) {
					t.Fatalf("frame %d: body differs from the frame", i)
				}
				want, _, err := ReadFrame(ref, 0)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("frame %d: got\n%#v\nReadFrame reads\n%#v", i, got, want)
				}
			}
			if _, _, err := fr.Next(); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestFrameReader_Next_errors(t *testing.T) {
	good := AppendFrame(nil, &LogRecord{Name: "n", Msg: "after"})
	bad := []byte("\x00\x00\x00\x05{nope")
	fr := NewFrameReader(bytes.NewReader(slices.Concat(bad, good)), 0, 0)
	_, body, err := fr.Next()
	var de *FrameDecodeError
	if !errors.As(err, &de) || string(body) != "{nope" {
		t.Fatalf("invalid JSON frame: err %v body %q", err, body)
	}
	if rec, _, err := fr.Next(); err != nil || rec.Msg != "after" {
		t.Fatalf("frame after an invalid one: %v %v", rec, err)
	}

	_, _, err = NewFrameReader(bytes.NewReader(good), 0, 10).Next()
	var tl *FrameTooLargeError
	if !errors.As(err, &tl) || int(tl.Size) != len(good)-4 || tl.Max != 10 {
		t.Errorf("oversize frame: %v", err)
	}
	big := AppendFrame(nil, &LogRecord{Msg: strings.Repeat("x", 8<<10)})
	for name, stream := range map[string][]byte{
		"split header": good[:2], "truncated body": good[:len(good)-1], "header only": good[:4],
		"truncated frame larger than the buffer": big[:len(big)-1],
	} {
		if _, _, err := NewFrameReader(bytes.NewReader(stream), 0, 0).Next(); err != io.ErrUnexpectedEOF {
			t.Errorf("%s: %v, want io.ErrUnexpectedEOF", name, err)
		}
	}
	if _, _, err := NewFrameReader(bytes.NewReader(nil), 0, 0).Next(); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(good[:6]), iotest.ErrReader(boom))
	if _, _, err := NewFrameReader(r, 0, 0).Next(); !errors.Is(err, boom) {
		t.Errorf("read error inside a frame: %v, want %v", err, boom)
	}
}

func TestFrameReader_FrameBuffered(t *testing.T) {
	one := AppendFrame(nil, &LogRecord{Msg: "one"})
	two := AppendFrame(nil, &LogRecord{Msg: "two"})
	fr := NewFrameReader(bytes.NewReader(slices.Concat(one, two, two[:7])), 0, 0)
	if fr.FrameBuffered() {
		t.Fatal("a frame is buffered before anything was read")
	}
	for i, want := range []bool{true, false} {
		if _, _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
		if got := fr.FrameBuffered(); got != want {
			t.Errorf("after frame %d: FrameBuffered %v, want %v", i, got, want)
		}
	}
	// An announced oversize frame is "buffered": Next fails without waiting.
	fr = NewFrameReader(bytes.NewReader(slices.Concat(one, []byte{0, 1, 0, 0})), 0, 1000)
	if _, _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if !fr.FrameBuffered() {
		t.Error("a header above the limit is not reported as ready")
	}
}

func BenchmarkFrameReader_Next(b *testing.B) {
	frame := AppendFrame(nil, benchRecord())
	stream := bytes.Repeat(frame, 512)
	r := bytes.NewReader(stream)
	fr := NewFrameReader(r, 64<<10, 0)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := fr.Next(); err != nil {
			if err != io.EOF {
				b.Fatal(err)
			}
			r.Reset(stream)
		}
	}
}

// A header's claim costs nothing until the bytes arrive: a frame announced
// at the limit, of which 10 bytes came, allocates about the read buffer,
// for FrameReader and ReadFrame alike (the race detector adds some).
func TestFrameReader_Next_allocatesWhatArrived(t *testing.T) {
	partial := append(binary.BigEndian.AppendUint32(nil, uint32(DefaultMaxFrame)), "{\"msg\": \"x"...)
	for name, next := range map[string]func() error{
		"FrameReader": func() error {
			_, _, err := NewFrameReader(bytes.NewReader(partial), 4<<10, 0).Next()
			return err
		},
		"ReadFrame": func() error {
			_, _, err := ReadFrame(bytes.NewReader(partial), 0)
			return err
		},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const runs = 20
		for range runs {
			if err := next(); err != io.ErrUnexpectedEOF {
				t.Fatalf("%s: %v, want io.ErrUnexpectedEOF", name, err)
			}
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 256<<10 {
			t.Errorf("%s: %d bytes allocated per partial frame announcing %d, want at most 256 KiB", name, per, DefaultMaxFrame)
		}
	}
}

// FuzzFrameReader feeds arbitrary streams, cut into arbitrary reads, to a
// FrameReader with a small limit: it must never panic, never return a body
// above the limit, agree with ReadFrame frame by frame, and end.
func FuzzFrameReader(f *testing.F) {
	for _, name := range []string{"basic.bin", "exception.bin", "levels.bin"} {
		f.Add(slices.Concat(readFixtureFrames(f, name)...), uint16(7), uint16(1<<14))
	}
	f.Add([]byte("\x00\x00\x00\x05{nope\x00\x00\x00\x00\x00\x00\x00\x02{}"), uint16(1), uint16(64))
	f.Add(binary.BigEndian.AppendUint32(nil, 1<<31), uint16(3), uint16(100))
	f.Fuzz(func(t *testing.T, stream []byte, chunk, limit uint16) {
		if len(stream) > 256<<10 {
			return // nothing new past the buffer sizes, only slower
		}
		maxFrame := int(limit) + 1
		r := &chunkReader{b: stream, n: int(chunk)%97 + 1}
		fr := NewFrameReader(r, 4<<10, maxFrame)
		ref := bytes.NewReader(stream)
		for i := 0; ; i++ {
			if i > len(stream) {
				t.Fatalf("more frames than bytes")
			}
			rec, body, err := fr.Next()
			wrec, wbody, werr := ReadFrame(ref, maxFrame)
			if len(body) > maxFrame {
				t.Fatalf("body of %d bytes above the limit %d", len(body), maxFrame)
			}
			if (err == nil) != (werr == nil) || !bytes.Equal(body, wbody) || !reflect.DeepEqual(rec, wrec) {
				t.Fatalf("frame %d: FrameReader %v (%d bytes), ReadFrame %v (%d bytes)", i, err, len(body), werr, len(wbody))
			}
			var de *FrameDecodeError
			if err != nil && !errors.As(err, &de) {
				return // the stream cannot go on
			}
		}
	})
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[n:]
	return n, nil
}
