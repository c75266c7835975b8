package xmlrpc

import (
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sameValue is reflect.DeepEqual with a NaN equal to the same NaN, at any
// depth, and times compared as instants and locations.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y) && x.Location() == y.Location()
	}
	return reflect.DeepEqual(a, b)
}

// checkFastAgrees fails when fastCall accepts doc and the full decoder
// does not, or reads it differently.
func checkFastAgrees(t *testing.T, doc []byte, lim CallLimits) (fast bool) {
	t.Helper()
	m, p, ok := fastCall(doc, lim)
	if !ok {
		return false
	}
	fm, fp, err := fullCall(doc, lim)
	if err != nil {
		t.Fatalf("fast path accepted what the full decoder refuses (%v):\n%q", err, doc)
	}
	if m != fm || !sameValue(p, fp) {
		t.Fatalf("fast path read %q %#v, full decoder %q %#v, from:\n%q", m, p, fm, fp, doc)
	}
	return true
}

// Every call CPython's xmlrpc.client wrote for the fixtures takes the fast
// path and reads as the full decoder reads it; if the fast path stopped
// taking them, the agent would silently be back on encoding/xml.
func TestFastCall_PythonFixturesTakeFastPath(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.call.xml"))
	if err != nil || len(files) < 20 {
		t.Fatalf("expected the CPython call fixtures in %s: %v", fixtureDir, err)
	}
	for _, f := range files {
		doc := readFixture(t, filepath.Base(f))
		if !checkFastAgrees(t, doc, CallLimits{}) {
			t.Errorf("%s: not taken by the fast path", filepath.Base(f))
		}
	}
	// And what our own encoder writes, with every type it writes.
	doc, err := EncodeCall("t.all", []any{nil, true, int64(-3), 1.5, "a&b<c>\"'", []byte{0, 1}, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		[]any{"x", int64(1)}, map[string]any{"k": []any{}, "e": map[string]any{}}, math.Inf(-1)})
	if err != nil {
		t.Fatal(err)
	}
	if !checkFastAgrees(t, doc, CallLimits{}) {
		t.Errorf("EncodeCall's document not taken by the fast path:\n%s", doc)
	}
}

// What the fast path leaves to the full decoder: the answer is the full
// decoder's, refusals included.
func TestFastCall_FallsBack(t *testing.T) {
	head := "<?xml version='1.0'?>\n<methodCall>\n<methodName>t.echo</methodName>\n<params>\n<param>\n"
	tail := "</param>\n</params>\n</methodCall>\n"
	for name, tc := range map[string]struct {
		value string
		want  any // nil with refused
		bad   bool
	}{
		"char reference":      {value: "<value><string>&#65;</string></value>", want: "A"},
		"bad char reference":  {value: "<value><string>&#xD800;</string></value>", bad: true},
		"CDATA":               {value: "<value><string><![CDATA[<x>]]></string></value>", want: "<x>"},
		"carriage return":     {value: "<value><string>a\r\nb</string></value>", want: "a\nb"},
		"self-closing value":  {value: "<value/>", want: ""},
		"namespaced nil":      {value: "<value><ex:nil/></value>", want: nil},
		"comment":             {value: "<value><!-- c --><int>1</int></value>", want: int64(1)},
		"bad int":             {value: "<value><int>1.5</int></value>", bad: true},
		"unknown type":        {value: "<value><foo>1</foo></value>", bad: true},
		"unescaped ]]>":       {value: "<value><string>a]]>b</string></value>", bad: true},
		"mismatched end":      {value: "<value><string>a</int></value>", bad: true},
		"control character":   {value: "<value><string>a\x01</string></value>", bad: true},
		"unknown entity":      {value: "<value><string>&nbsp;</string></value>", bad: true},
		"text beside a type":  {value: "<value>x<int>1</int></value>", bad: true},
		"attribute":           {value: "<value><int a='1'>2</int></value>", want: int64(2)},
		"spaces in int":       {value: "<value><int> 7 </int></value>", want: int64(7)},
		"two types in value":  {value: "<value><int>1</int><int>2</int></value>", bad: true},
		"member value first":  {value: "<value><struct><member><value>v</value><name>k</name></member></struct></value>", want: map[string]any{"k": "v"}},
		"array without data":  {value: "<value><array></array></value>", want: []any{}},
		"invalid utf-8":       {value: "<value><string>\xff</string></value>", bad: true},
		"non-ascii string":    {value: "<value><string>héllo ✓</string></value>", want: "héllo ✓"},
		"named entities":      {value: "<value>&lt;&amp;&gt;&quot;&apos;</value>", want: "<&>\"'"},
		"entity, no ;":        {value: "<value>&amp</value>", bad: true},
		"document ends early": {value: "<value><string>abc", bad: true},
	} {
		t.Run(name, func(t *testing.T) {
			doc := []byte(head + tc.value + "\n" + tail)
			if strings.HasSuffix(name, "early") {
				doc = []byte(head + tc.value)
			}
			checkFastAgrees(t, doc, CallLimits{})
			m, p, err := DecodeCall(doc)
			if tc.bad {
				if err == nil {
					t.Fatalf("accepted: %q %#v", m, p)
				}
				return
			}
			if err != nil || m != "t.echo" || len(p) != 1 || !sameValue(p[0], tc.want) {
				t.Fatalf("got %q %#v, %v; want %#v", m, p, err, tc.want)
			}
		})
	}
}

// The limits hold on the fast path, counted as the full decoder counts them
// (the method name and the integers' text too): a call over them falls back, and the
// full decoder refuses it with ErrCallTooLarge.
func TestFastCall_LimitsFallBack(t *testing.T) {
	doc, err := EncodeCall("t.echo", []any{strings.Repeat("x", 65), []any{int64(1), int64(2)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := fastCall(doc, CallLimits{MaxStringBytes: 64}); ok {
		t.Error("65 bytes of strings taken by the fast path under a 64-byte limit")
	}
	if _, _, ok := fastCall(doc, CallLimits{MaxValues: 3}); ok {
		t.Error("4 values taken by the fast path under a 3-value limit")
	}
	if _, _, ok := fastCall(doc, CallLimits{MaxValues: 4, MaxStringBytes: 73}); !ok {
		t.Error("a call exactly at both limits not taken by the fast path")
	}
	unknown := CallLimits{Known: func(string) bool { return false }}
	if _, _, ok := fastCall(doc, unknown); ok {
		t.Error("an unknown method taken by the fast path")
	}
	deep := "<methodCall><methodName>t</methodName><params><param>" + strings.Repeat("<value><array><data>", maxDepth) +
		strings.Repeat("</data></array></value>", maxDepth) + "</param></params></methodCall>"
	if _, _, ok := fastCall([]byte(deep), CallLimits{}); !ok {
		t.Errorf("%d levels (the limit) not taken by the fast path", maxDepth)
	}
	deeper := "<methodCall><methodName>t</methodName><params><param>" + strings.Repeat("<value><array><data>", maxDepth+1) +
		strings.Repeat("</data></array></value>", maxDepth+1) + "</param></params></methodCall>"
	if _, _, ok := fastCall([]byte(deeper), CallLimits{}); ok {
		t.Errorf("%d levels taken by the fast path", maxDepth+1)
	}
}

// FuzzFastCall is the differential test: whatever the fast path accepts,
// under any limits, the full decoder (encoding/xml) accepts and reads the
// same.
func FuzzFastCall(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.xml"))
	for _, p := range files {
		f.Add(readFixture(f, filepath.Base(p)), uint16(0), uint16(0))
	}
	f.Add([]byte("<methodCall><methodName>a</methodName><params><param><value>&lt;x&gt;</value></param></params></methodCall>"), uint16(3), uint16(8))
	f.Fuzz(func(t *testing.T, doc []byte, maxValues, maxStrings uint16) {
		checkFastAgrees(t, doc, CallLimits{MaxValues: int(maxValues), MaxStringBytes: int(maxStrings)})
	})
}
