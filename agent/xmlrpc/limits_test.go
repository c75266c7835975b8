package xmlrpc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeCallLimited(t *testing.T) {
	vals := func(n int) []byte {
		return []byte(`<methodCall><methodName>t.echo</methodName><params><param><value><array><data>` +
			strings.Repeat("<value/>", n) + `</data></array></value></param></params></methodCall>`)
	}
	lim := CallLimits{MaxValues: 100, MaxStringBytes: 64}
	if _, _, err := DecodeCallLimited(vals(99), lim); err != nil {
		t.Fatalf("99 values + the array: %v", err)
	}
	if _, _, err := DecodeCallLimited(vals(100), lim); !errors.Is(err, ErrCallTooLarge) || !strings.Contains(err.Error(), "more than 100 values") {
		t.Fatalf("101 values: %v, want ErrCallTooLarge", err)
	}
	long := []byte(`<methodCall><methodName>t.echo</methodName><params><param><value><string>` + strings.Repeat("x", 65) + `</string></value></param></params></methodCall>`)
	if _, _, err := DecodeCallLimited(long, lim); !errors.Is(err, ErrCallTooLarge) {
		t.Fatalf("65-byte string: %v, want ErrCallTooLarge", err)
	}
	// An unknown method is refused before its (here malformed) params.
	known := CallLimits{Known: func(m string) bool { return m == "t.echo" }}
	bad := []byte(`<methodCall><methodName>t.nope</methodName><params><param><value><int>x</int></value></param></params></methodCall>`)
	var unknown *UnknownMethodError
	if m, _, err := DecodeCallLimited(bad, known); !errors.As(err, &unknown) || m != "t.nope" {
		t.Fatalf("unknown method: %q, %v; want UnknownMethodError", m, err)
	}
	late := []byte(`<methodCall><params></params><methodName>t.echo</methodName></methodCall>`)
	if _, _, err := DecodeCallLimited(late, known); !errors.Is(err, ErrSyntax) {
		t.Fatalf("params before the name: %v, want ErrSyntax", err)
	}
}

func TestDecodeCall_invalidCharRefsRefused(t *testing.T) {
	for _, ref := range []string{"&#xD800;", "&#55296;", "&#x110000;", "&#1;", "&#xFFFE;"} {
		doc := []byte(`<methodCall><methodName>m</methodName><params><param><value><string>a` + ref + `</string></value></param></params></methodCall>`)
		if _, _, err := DecodeCall(doc); !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: %v, want ErrSyntax as Python's expat", ref, err)
		}
	}
	doc := []byte(`<methodCall><methodName>m</methodName><params><param><value><string>&#x263A;&#9;&amp;#xD800;</string></value></param></params></methodCall>`)
	_, p, err := DecodeCall(doc)
	if err != nil || p[0] != "\u263a\t&#xD800;" {
		t.Fatalf("valid references: %q, %v", p, err)
	}
}

// FuzzDecodeCallLimited: limits only ever refuse; what they let through
// decodes exactly as without them, and a refusal names its limit.
func FuzzDecodeCallLimited(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.call.xml"))
	for _, file := range files {
		if p, err := os.ReadFile(file); err == nil {
			f.Add(p, uint8(8), uint16(64))
		}
	}
	f.Add([]byte(`<methodCall><methodName>t.echo</methodName><params><param><value><array><data><value/><value>a&#x263A;</value></data></array></value></param></params></methodCall>`), uint8(2), uint16(3))
	f.Fuzz(func(t *testing.T, doc []byte, maxValues uint8, maxStrings uint16) {
		lim := CallLimits{MaxValues: int(maxValues) + 1, MaxStringBytes: int(maxStrings) + 1,
			Known: func(m string) bool { return !strings.HasPrefix(m, "x") }}
		m, p, err := DecodeCallLimited(doc, lim)
		var unknown *UnknownMethodError
		switch {
		case err == nil:
			m2, p2, err2 := DecodeCall(doc)
			if err2 != nil || m2 != m || !equalValues(p, p2) {
				t.Fatalf("limited %q %#v, unlimited %q %#v (%v)", m, p, m2, p2, err2)
			}
		case errors.As(err, &unknown):
			if !strings.HasPrefix(unknown.Method, "x") {
				t.Fatalf("known method %q refused as unknown", unknown.Method)
			}
		case errors.Is(err, ErrCallTooLarge):
			if !strings.Contains(err.Error(), "more than") {
				t.Fatalf("limit error does not name the limit: %v", err)
			}
		case !errors.Is(err, ErrSyntax):
			t.Fatalf("error %v is neither a limit, an unknown method nor ErrSyntax", err)
		}
	})
}
