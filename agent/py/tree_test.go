package py

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTree_positionsOrderAndDuplicates(t *testing.T) {
	doc := "{\n  \"b\": [1, {\"é\": true}],\n  \"a\": \"x\",\n  \"b\": null\n}"
	root, dups, err := ParseTree([]byte(doc), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(root.Members) != 2 || root.Members[0].Key != "b" || root.Members[1].Key != "a" {
		t.Fatalf("members %+v: order lost or duplicate kept", root.Members)
	}
	inner := root.Get("b").Elems[1]
	if inner.Path != `b[1]` || inner.Members[0].Value.Path != `b[1]."é"` {
		t.Errorf("paths %q, %q", inner.Path, inner.Members[0].Value.Path)
	}
	if l, c := LineCol([]byte(doc), inner.Members[0].Value.Start); l != 2 || c != 18 {
		t.Errorf("true at line %d, column %d; want 2, 18 (columns count characters)", l, c)
	}
	if len(dups) != 1 || dups[0].Error() != `line 4, column 3: b: duplicate key "b" (first at line 2, column 3): Python uses the last one and Go tools the first, so the file is ambiguous; remove one` {
		t.Errorf("dups = %v", dups)
	}
	v, err := root.Value()
	if err != nil || Repr(v) != "{'b': [1, {'é': True}], 'a': 'x'}" {
		t.Errorf("Value = %s, %v", Repr(v), err)
	}
}

func TestParseTree_errors(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"", "line 1, column 1: empty document: expected a JSON value"},
		{"\xef\xbb\xbf{}", "line 1, column 1: file starts with a UTF-8 byte order mark"},
		{"{\"a\": \"\xff\"}", "line 1, column 8: invalid UTF-8"},
		{"{\n \"a\": NaN}", "line 2, column 7: NaN is not valid JSON"},
		{"[1,\n 2", "line 2, column 3: invalid JSON: unexpected end of file"},
		{"[1] x", "line 1, column 5: invalid JSON: invalid character 'x'"},
		{"{} {}", "line 1, column 4: unexpected data after the top-level JSON value"},
		{"{\"a\" 1}", "line 1, column 6: invalid JSON: invalid character '1' after object key"},
		{strings.Repeat("[", 70), "line 1, column 66: nested deeper than 64 levels"},
	}
	for _, c := range cases {
		_, _, err := ParseTree([]byte(c.doc), TreeOptions{})
		var te *TreeError
		if !errors.As(err, &te) || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("ParseTree(%q) = %v, want %s…", c.doc, err, c.want)
		}
	}
	root, _, _ := ParseTree([]byte(`[99999999999999999999]`), TreeOptions{})
	if _, err := root.Value(); err == nil {
		t.Error("an integer beyond int64 converted without error")
	}
}
