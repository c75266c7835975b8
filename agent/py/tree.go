package py

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Files people write by hand (cluster configs, test specs, recipes) are
// read through a tree rather than decoded into structs, because the
// checks need what encoding/json hides: where each value stands (errors
// give line and column), the order of keys (node tags are allocated in
// file order) and keys given twice (Python keeps the last one and Go's
// tools the first, so such a file means two things and is refused).

// NodeKind is the JSON type of a Node.
type NodeKind int

// The JSON types.
const (
	JSONNull NodeKind = iota
	JSONBool
	JSONNumber
	JSONString
	JSONArray
	JSONObject
)

// Node is one JSON value with its place in the document.
type Node struct {
	Kind       NodeKind
	Start, End int    // byte offsets of the value's text
	Path       string // as TreeOptions.Path built it; "" for the document
	Bool       bool
	Num        json.Number
	Str        string
	Elems      []*Node
	Members    []Member // in document order; a repeated key keeps its first place
}

// Member is one key of a JSON object.
type Member struct {
	Key   string
	Start int // byte offset of the key
	Value *Node
}

// Get returns the value of key, or nil.
func (n *Node) Get(key string) *Node {
	for _, m := range n.Members {
		if m.Key == key {
			return m.Value
		}
	}
	return nil
}

// Describe names the node's type for "expected ..., got ..." messages.
func (n *Node) Describe() string {
	switch n.Kind {
	case JSONNull:
		return "null"
	case JSONBool:
		return "a boolean"
	case JSONNumber:
		return "a number"
	case JSONString:
		return "a string"
	case JSONArray:
		return "a list"
	}
	return "an object"
}

// Value converts the node to the model: objects become Dicts in document
// order, numbers follow Number.
func (n *Node) Value() (any, error) {
	switch n.Kind {
	case JSONBool:
		return n.Bool, nil
	case JSONNumber:
		return Number(string(n.Num))
	case JSONString:
		return n.Str, nil
	case JSONArray:
		out := make([]any, len(n.Elems))
		for i, e := range n.Elems {
			v, err := e.Value()
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case JSONObject:
		out := make(Dict, len(n.Members))
		for i, m := range n.Members {
			v, err := m.Value.Value()
			if err != nil {
				return nil, err
			}
			out[i] = Item{m.Key, v}
		}
		return out, nil
	}
	return nil, nil
}

// TreeError is a problem at a place in a JSON document. Column counts
// characters, not bytes, as an editor does.
type TreeError struct {
	Offset       int
	Line, Column int
	Path         string // "" when the problem is not inside a value
	Msg          string
}

func (e *TreeError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("line %d, column %d: %s: %s", e.Line, e.Column, e.Path, e.Msg)
}

// Locate writes a problem in a file the way compilers do, so editors
// jump to it: "file:line:column: path: msg", without the place when line
// is 0 and without the path when it is "".
func Locate(file string, line, col int, path, msg string) string {
	var b strings.Builder
	b.WriteString(file)
	if line > 0 {
		fmt.Fprintf(&b, ":%d:%d", line, col)
	}
	b.WriteString(": ")
	if path != "" {
		b.WriteString(path)
		b.WriteString(": ")
	}
	b.WriteString(msg)
	return b.String()
}

// TreeOptions configure ParseTree.
type TreeOptions struct {
	// MaxDepth bounds nesting (default 64).
	MaxDepth int
	// Path joins a parent path and an object key (string) or array index
	// (int); nil gives JSONPath's form.
	Path func(parent string, key any) string
}

// JSONPath joins paths as tests[1].nodes.src, quoting keys that are not
// plain words: tests[0]."odd key".
func JSONPath(parent string, key any) string {
	switch k := key.(type) {
	case int:
		return fmt.Sprintf("%s[%d]", parent, k)
	case string:
		simple := k != ""
		for _, r := range k {
			if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				simple = false
			}
		}
		if !simple {
			k = fmt.Sprintf("%q", k)
		}
		if parent == "" {
			return k
		}
		return parent + "." + k
	}
	return parent
}

// ParseTree reads one JSON document. A syntax error is the error (a
// *TreeError); keys given twice are all reported in dups, each at its
// second place, and the tree keeps the first.
func ParseTree(data []byte, o TreeOptions) (root *Node, dups []*TreeError, err error) {
	if o.MaxDepth <= 0 {
		o.MaxDepth = 64
	}
	if o.Path == nil {
		o.Path = JSONPath
	}
	p := &treeParser{data: data, o: o}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, nil, p.errAt(0, "", "file starts with a UTF-8 byte order mark, which JSON does not allow (Python's json.load refuses it too); save it without BOM")
	}
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, size := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			off += size
		}
		return nil, nil, p.errAt(off, "", "invalid UTF-8: the file must be UTF-8 text")
	}
	p.dec = json.NewDecoder(bytes.NewReader(data))
	p.dec.UseNumber()
	root, terr := p.value("", 0)
	if terr != nil {
		return nil, nil, terr
	}
	if _, err := p.dec.Token(); err != io.EOF {
		if err != nil {
			return nil, nil, p.syntaxError(err)
		}
		return nil, nil, p.errAt(root.End+skipSpace(data[root.End:]), "", "unexpected data after the top-level JSON value")
	}
	return root, p.dups, nil
}

type treeParser struct {
	data []byte
	dec  *json.Decoder
	o    TreeOptions
	dups []*TreeError
}

// LineCol converts a byte offset in data to a 1-based line and character
// column.
func LineCol(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	before := data[:off]
	line = 1 + bytes.Count(before, []byte("\n"))
	start := bytes.LastIndexByte(before, '\n') + 1
	return line, utf8.RuneCount(before[start:]) + 1
}

func (p *treeParser) errAt(off int, path, format string, args ...any) *TreeError {
	line, col := LineCol(p.data, off)
	return &TreeError{Offset: off, Line: line, Column: col, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// pos is the offset of the next token: the decoder reports the end of the
// previous one, and separators and blanks lie in between.
func (p *treeParser) pos() int {
	off := int(p.dec.InputOffset())
	for off < len(p.data) && strings.IndexByte(" \t\r\n,:", p.data[off]) >= 0 {
		off++
	}
	return off
}

func (p *treeParser) value(path string, depth int) (*Node, *TreeError) {
	if depth > p.o.MaxDepth {
		return nil, p.errAt(p.pos(), "", "nested deeper than %d levels", p.o.MaxDepth)
	}
	n := &Node{Start: p.pos(), Path: path}
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntaxError(err)
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			n.Kind = JSONObject
			seen := make(map[string]int)
			for p.dec.More() {
				kpos := p.pos()
				ktok, err := p.dec.Token()
				if err != nil {
					return nil, p.syntaxError(err)
				}
				key, _ := ktok.(string) // the decoder only yields strings as keys
				mp := p.o.Path(path, key)
				val, terr := p.value(mp, depth+1)
				if terr != nil {
					return nil, terr
				}
				if first, dup := seen[key]; dup {
					fl, fc := LineCol(p.data, first)
					p.dups = append(p.dups, p.errAt(kpos, mp,
						"duplicate key %q (first at line %d, column %d): Python uses the last one and Go tools the first, so the file is ambiguous; remove one",
						key, fl, fc))
					continue
				}
				seen[key] = kpos
				n.Members = append(n.Members, Member{Key: key, Start: kpos, Value: val})
			}
		} else {
			n.Kind = JSONArray
			for p.dec.More() {
				elem, terr := p.value(p.o.Path(path, len(n.Elems)), depth+1)
				if terr != nil {
					return nil, terr
				}
				n.Elems = append(n.Elems, elem)
			}
		}
		if _, err := p.dec.Token(); err != nil { // the closing delimiter
			return nil, p.syntaxError(err)
		}
	case string:
		n.Kind, n.Str = JSONString, t
	case json.Number:
		n.Kind, n.Num = JSONNumber, t
	case bool:
		n.Kind, n.Bool = JSONBool, t
	case nil:
		n.Kind = JSONNull
	}
	n.End = int(p.dec.InputOffset())
	return n, nil
}

func (p *treeParser) syntaxError(err error) *TreeError {
	// json.Decoder's SyntaxError.Offset is relative to its internal buffer,
	// not the input; its InputOffset stops just before the offending token.
	off := int(p.dec.InputOffset())
	off += skipSpace(p.data[off:])
	var se *json.SyntaxError
	if errors.As(err, &se) {
		rest := string(p.data[off:])
		for _, word := range []string{"NaN", "Infinity", "-Infinity"} {
			if strings.HasPrefix(rest, word) {
				return p.errAt(off, "", "%s is not valid JSON (Python's json.dump writes it unless allow_nan=False); use a number or a string", word)
			}
		}
		return p.errAt(off, "", "invalid JSON: %s", se.Error())
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if len(bytes.TrimSpace(p.data)) == 0 {
			return p.errAt(len(p.data), "", "empty document: expected a JSON value")
		}
		return p.errAt(len(p.data), "", "invalid JSON: unexpected end of file (an unclosed object, array or string?)")
	}
	return p.errAt(off, "", "invalid JSON: %v", err)
}

func skipSpace(b []byte) int {
	n := 0
	for n < len(b) && strings.IndexByte(" \t\r\n", b[n]) >= 0 {
		n++
	}
	return n
}
