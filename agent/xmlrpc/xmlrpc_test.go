package xmlrpc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const fixtureDir = "../../testdata/xmlrpc"

// tagged is the type-tagged JSON written by testdata/xmlrpc/gen_fixtures.py.
type tagged struct {
	T string          `json:"t"`
	V json.RawMessage `json:"v"`
}

func fromTagged(tb testing.TB, raw []byte) any {
	tb.Helper()
	var t tagged
	if err := json.Unmarshal(raw, &t); err != nil {
		tb.Fatalf("bad fixture json: %v", err)
	}
	str := func() string {
		var s string
		if err := json.Unmarshal(t.V, &s); err != nil {
			tb.Fatalf("bad %s: %v", t.T, err)
		}
		return s
	}
	switch t.T {
	case "nil":
		return nil
	case "bool":
		return string(t.V) == "true"
	case "int":
		n, err := strconv.ParseInt(str(), 10, 64)
		if err != nil {
			tb.Fatal(err)
		}
		return n
	case "float":
		f, err := parsePyFloat(str())
		if err != nil {
			tb.Fatal(err)
		}
		return f
	case "str":
		return str()
	case "bytes":
		p, err := base64.StdEncoding.DecodeString(str())
		if err != nil {
			tb.Fatal(err)
		}
		return p
	case "datetime":
		d, err := time.Parse(dateTimeLayout, str())
		if err != nil {
			tb.Fatal(err)
		}
		return d
	case "list":
		var items []json.RawMessage
		if err := json.Unmarshal(t.V, &items); err != nil {
			tb.Fatal(err)
		}
		out := []any{}
		for _, it := range items {
			out = append(out, fromTagged(tb, it))
		}
		return out
	case "dict":
		var pairs [][2]json.RawMessage
		if err := json.Unmarshal(t.V, &pairs); err != nil {
			tb.Fatal(err)
		}
		out := map[string]any{}
		for _, p := range pairs {
			var k string
			if err := json.Unmarshal(p[0], &k); err != nil {
				tb.Fatal(err)
			}
			out[k] = fromTagged(tb, p[1])
		}
		return out
	}
	tb.Fatalf("unknown tag %q", t.T)
	return nil
}

// equalValues compares decoded values treating NaN and -0.0 exactly.
func equalValues(a, b any) bool {
	if fa, ok := a.(float64); ok {
		fb, ok := b.(float64)
		return ok && (math.Float64bits(fa) == math.Float64bits(fb) || (math.IsNaN(fa) && math.IsNaN(fb)))
	}
	return reflect.DeepEqual(a, b)
}

func fixtureCases(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.response.xml"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no fixtures in %s (run gen_fixtures.py): %v", fixtureDir, err)
	}
	var names []string
	for _, f := range files {
		n := strings.TrimSuffix(filepath.Base(f), ".response.xml")
		if n != "fault" {
			names = append(names, n)
		}
	}
	return names
}

func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	p, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Python's own dumps output must decode to what Python's loads read, and
// our encoder must reproduce Python's bytes exactly.
func TestCodec_PythonFixtures(t *testing.T) {
	for _, name := range fixtureCases(t) {
		t.Run(name, func(t *testing.T) {
			want := fromTagged(t, readFixture(t, name+".json"))
			resp := readFixture(t, name+".response.xml")
			got, err := DecodeResponse(resp)
			if err != nil {
				t.Fatalf("DecodeResponse: %v", err)
			}
			if !equalValues(got, want) {
				t.Fatalf("decoded %#v, want %#v", got, want)
			}
			enc, err := EncodeResponse(want)
			if err != nil {
				t.Fatalf("EncodeResponse: %v", err)
			}
			if !bytes.Equal(enc, resp) {
				t.Fatalf("encoding differs from Python's\n got: %q\nwant: %q", enc, resp)
			}
			call := readFixture(t, name+".call.xml")
			method, params, err := DecodeCall(call)
			if err != nil {
				t.Fatalf("DecodeCall: %v", err)
			}
			if method != "test.method" || len(params) != 1 || !equalValues(params[0], want) {
				t.Fatalf("DecodeCall = %q %#v", method, params)
			}
			encCall, err := EncodeCall("test.method", []any{want})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(encCall, call) {
				t.Fatalf("call encoding differs\n got: %q\nwant: %q", encCall, call)
			}
		})
	}
}

func TestCodec_DecodeOnlyFixtures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "decode_*.xml"))
	if len(files) == 0 {
		t.Fatal("no decode-only fixtures")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".xml")
		t.Run(name, func(t *testing.T) {
			want := fromTagged(t, readFixture(t, name+".json"))
			got, err := DecodeResponse(readFixture(t, name+".xml"))
			if err != nil {
				t.Fatal(err)
			}
			if !equalValues(got, want) {
				t.Fatalf("got %#v, want %#v", got, want)
			}
		})
	}
}

func TestCodec_FaultFixture(t *testing.T) {
	var want struct {
		Code   int    `json:"code"`
		String string `json:"string"`
	}
	if err := json.Unmarshal(readFixture(t, "fault.json"), &want); err != nil {
		t.Fatal(err)
	}
	doc := readFixture(t, "fault.response.xml")
	_, err := DecodeResponse(doc)
	var wf *WireFault
	if !errors.As(err, &wf) || wf.Code != want.Code || wf.String != want.String {
		t.Fatalf("got %v, want fault %d %q", err, want.Code, want.String)
	}
	if enc := EncodeFaultResponse(want.Code, want.String); !bytes.Equal(enc, doc) {
		t.Fatalf("fault encoding differs\n got: %q\nwant: %q", enc, doc)
	}
	f, ok := AsFault(err)
	if !ok || f.ExcType != "ValueError" || f.ExcValue != "port must be 1..65535" {
		t.Fatalf("AsFault = %+v, %v", f, ok)
	}
}

func TestCodec_MultiParamCall(t *testing.T) {
	method, params, err := DecodeCall(readFixture(t, "multi.call.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if method != "core.start_log_redirection" || !reflect.DeepEqual(params, []any{"127.0.0.1", int64(8888), nil}) {
		t.Fatalf("got %q %#v", method, params)
	}
	method, params, err = DecodeCall(readFixture(t, "noargs.call.xml"))
	if err != nil || method != "core.is_alive" || len(params) != 0 {
		t.Fatalf("got %q %#v %v", method, params, err)
	}
}

func TestCodec_EncodeBigIntAsI8(t *testing.T) {
	enc, err := EncodeResponse(int64(20) << 30)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(enc, []byte("<value><i8>21474836480</i8></value>")) {
		t.Fatalf("got %s", enc)
	}
	v, err := DecodeResponse(enc)
	if err != nil || v != int64(21474836480) {
		t.Fatalf("round trip = %v, %v", v, err)
	}
}

func TestCodec_OrderedStructAndGoTypes(t *testing.T) {
	enc, err := EncodeResponse(Struct{{Key: "z", Value: 1}, {Key: "a", Value: []string{"x"}}, {Key: "m", Value: map[string]string{"k": "v"}}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Index(string(enc), "<name>z</name>") > strings.Index(string(enc), "<name>a</name>") {
		t.Fatalf("order not kept: %s", enc)
	}
	v, err := DecodeResponse(enc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"z": int64(1), "a": []any{"x"}, "m": map[string]any{"k": "v"}}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("got %#v", v)
	}
}

func TestCodec_RefusesUnencodable(t *testing.T) {
	for name, v := range map[string]any{
		"control char": "esc\x1b[0m",
		"bad utf8":     "a\xffb",
		"uint64 huge":  uint64(math.MaxUint64),
		"chan":         make(chan int),
		"int keys":     map[int]string{1: "a"},
		"member name":  map[string]any{"a\x00": 1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := EncodeResponse(v)
			if !errors.Is(err, ErrMarshal) {
				t.Fatalf("err = %v, want ErrMarshal", err)
			}
		})
	}
	var te *XMLTextError
	_, err := EncodeResponse("ok\x01")
	if !errors.As(err, &te) || te.Offset != 2 || te.Rune != 1 {
		t.Fatalf("err = %v", err)
	}
	// A fault must always be deliverable, whatever its text.
	if _, err := DecodeResponse(EncodeFaultResponse(1, "bad \x01 char")); err == nil {
		t.Fatal("fault decoded as success")
	} else if _, ok := err.(*WireFault); !ok {
		t.Fatalf("fault with control char not decodable: %v", err)
	}
}

func TestCodec_RejectsMalformed(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":          "",
		"not xml":        "hello",
		"wrong root":     "<foo/>",
		"bad bool":       "<methodResponse><params><param><value><boolean>true</boolean></value></param></params></methodResponse>",
		"bad int":        "<methodResponse><params><param><value><int>1.5</int></value></param></params></methodResponse>",
		"int overflow":   "<methodResponse><params><param><value><i8>99999999999999999999</i8></value></param></params></methodResponse>",
		"unknown type":   "<methodResponse><params><param><value><foo>1</foo></value></param></params></methodResponse>",
		"two params":     "<methodResponse><params><param><value>a</value></param><param><value>b</value></param></params></methodResponse>",
		"truncated":      "<methodResponse><params><param><value><string>abc",
		"bad base64":     "<methodResponse><params><param><value><base64>!!!</base64></value></param></params></methodResponse>",
		"bad date":       "<methodResponse><params><param><value><dateTime.iso8601>yesterday</dateTime.iso8601></value></param></params></methodResponse>",
		"member no name": "<methodResponse><params><param><value><struct><member><value>1</value></member></struct></value></param></params></methodResponse>",
		"doctype":        "<!DOCTYPE x [<!ENTITY a 'b'>]><methodResponse/>",
		"fault no code":  "<methodResponse><fault><value><struct><member><name>faultString</name><value>x</value></member></struct></value></fault></methodResponse>",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeResponse([]byte(doc))
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("err = %v, want ErrSyntax", err)
			}
		})
	}
	deep := strings.Repeat("<value><array><data>", maxDepth+5)
	if _, err := DecodeResponse([]byte("<methodResponse><params><param>" + deep)); !errors.Is(err, ErrSyntax) {
		t.Fatalf("deep nesting: %v", err)
	}
}

func TestFault_FaultStringIsPythonJSON(t *testing.T) {
	f := &Fault{ExcType: "ValueError", ExcValue: "caf\u00e9 \"q\" \U0001F600\x01", TbInfo: "tb\n"}
	want := `{"exc_type": "ValueError", "exc_value": "caf\u00e9 \"q\" \ud83d\ude00\u0001", "tb_info": "tb\n"}`
	if got := f.FaultString("m"); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !IsUnsupportedMethod(&WireFault{Code: 1, String: UnsupportedMethodFault("x.y").FaultString("x.y")}) {
		t.Fatal("IsUnsupportedMethod false for an unsupported-method fault")
	}
}

// FuzzDecode: no input may panic the decoder or send it into a loop, and
// anything it accepts must re-encode and decode to the same value.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.xml"))
	for _, file := range files {
		p, err := os.ReadFile(file)
		if err == nil {
			f.Add(p)
		}
	}
	f.Add([]byte("<methodResponse><params><param><value><struct><member><name>a</name><value><i8>-1</i8></value></member></struct></value></param></params></methodResponse>"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		v, err := DecodeResponse(doc)
		if err == nil {
			enc, err := EncodeResponse(v)
			if err != nil {
				// Decoding is more lenient than encoding for strings
				// with characters XML 1.0 forbids only in some places.
				if errors.Is(err, ErrMarshal) {
					return
				}
				t.Fatalf("re-encode: %v", err)
			}
			v2, err := DecodeResponse(enc)
			if err != nil || !equalValues(v, v2) && !strings.Contains(string(enc), "<double>nan</double>") {
				t.Fatalf("round trip changed %#v -> %#v (%v)", v, v2, err)
			}
		}
		_, _, _ = DecodeCall(doc)
	})
}
