package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// A small ordered JSON tree. Spec and recipe files are decoded through it
// instead of straight into structs so that every error can name the JSON
// path (tests[1].nodes.src), object key order is kept (node tags are
// allocated in file order), and duplicate keys are refused (Python keeps
// the last one, gjson the first: the same file would mean two things).

type jsonKind int

const (
	jsonNull jsonKind = iota
	jsonBool
	jsonNumber
	jsonString
	jsonArray
	jsonObject
)

type jsonValue struct {
	kind jsonKind
	b    bool
	num  json.Number
	str  string
	arr  []*jsonValue
	obj  []jsonMember
}

type jsonMember struct {
	key string
	val *jsonValue
}

func (v *jsonValue) describe() string {
	switch v.kind {
	case jsonNull:
		return "null"
	case jsonBool:
		return "a boolean"
	case jsonNumber:
		return "a number"
	case jsonString:
		return "a string"
	case jsonArray:
		return "a list"
	default:
		return "an object"
	}
}

func (v *jsonValue) get(key string) *jsonValue {
	for _, m := range v.obj {
		if m.key == key {
			return m.val
		}
	}
	return nil
}

// toAny converts v to plain Go values: map[string]any, []any, string,
// bool, nil, and int64 or float64 for numbers. Avocado's
// {"__encoded_set__": [...]} becomes the list of its members.
func (v *jsonValue) toAny() any {
	switch v.kind {
	case jsonBool:
		return v.b
	case jsonNumber:
		if i, err := strconv.ParseInt(v.num.String(), 10, 64); err == nil {
			return i
		}
		f, _ := v.num.Float64()
		return f
	case jsonString:
		return v.str
	case jsonArray:
		out := make([]any, len(v.arr))
		for i, e := range v.arr {
			out[i] = e.toAny()
		}
		return out
	case jsonObject:
		if len(v.obj) == 1 && v.obj[0].key == "__encoded_set__" && v.obj[0].val.kind == jsonArray {
			return v.obj[0].val.toAny()
		}
		out := make(map[string]any, len(v.obj))
		for _, m := range v.obj {
			out[m.key] = m.val.toAny()
		}
		return out
	}
	return nil
}

// jsonPath joins a parent path and an object key or array index.
func jsonPath(parent string, key any) string {
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
			k = strconv.Quote(k)
		}
		if parent == "" {
			return k
		}
		return parent + "." + k
	}
	return parent
}

// jsonError is a problem in a JSON document at a path ("" for the
// document itself).
type jsonError struct {
	path string
	msg  string
}

const maxJSONDepth = 64

// parseJSONTree decodes one JSON document.
func parseJSONTree(data []byte) (*jsonValue, *jsonError) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, "", 0)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = &jsonError{msg: "unexpected data after the JSON document"}
		}
	}
	if err == nil && !gjson.ValidBytes(data) {
		// Go's decoder and gjson agree on every document seen so far; if
		// they ever do not, refuse rather than guess.
		err = &jsonError{msg: "invalid JSON"}
	}
	if err != nil && err.path == "" && strings.HasPrefix(err.msg, "offset ") {
		err.msg = positionOf(data, err.msg)
	}
	return v, err
}

func decodeValue(dec *json.Decoder, path string, depth int) (*jsonValue, *jsonError) {
	if depth > maxJSONDepth {
		return nil, &jsonError{path: path, msg: fmt.Sprintf("nested deeper than %d levels", maxJSONDepth)}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(dec, err)
	}
	switch t := tok.(type) {
	case nil:
		return &jsonValue{kind: jsonNull}, nil
	case bool:
		return &jsonValue{kind: jsonBool, b: t}, nil
	case json.Number:
		return &jsonValue{kind: jsonNumber, num: t}, nil
	case string:
		return &jsonValue{kind: jsonString, str: t}, nil
	case json.Delim:
		if t == '[' {
			v := &jsonValue{kind: jsonArray}
			for dec.More() {
				e, jerr := decodeValue(dec, jsonPath(path, len(v.arr)), depth+1)
				if jerr != nil {
					return nil, jerr
				}
				v.arr = append(v.arr, e)
			}
			if _, err := dec.Token(); err != nil {
				return nil, syntaxError(dec, err)
			}
			return v, nil
		}
		v := &jsonValue{kind: jsonObject}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, syntaxError(dec, err)
			}
			key, _ := kt.(string)
			if v.get(key) != nil {
				return nil, &jsonError{path: jsonPath(path, key), msg: "duplicate key"}
			}
			e, jerr := decodeValue(dec, jsonPath(path, key), depth+1)
			if jerr != nil {
				return nil, jerr
			}
			v.obj = append(v.obj, jsonMember{key, e})
		}
		if _, err := dec.Token(); err != nil {
			return nil, syntaxError(dec, err)
		}
		return v, nil
	}
	return nil, &jsonError{path: path, msg: fmt.Sprintf("unexpected token %v", tok)}
}

func syntaxError(dec *json.Decoder, err error) *jsonError {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &jsonError{msg: "invalid JSON: unexpected end of file"}
	}
	off := dec.InputOffset()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	return &jsonError{msg: fmt.Sprintf("offset %d: invalid JSON: %v", off, err)}
}

// positionOf rewrites "offset N: ..." into "line L column C: ...".
func positionOf(data []byte, msg string) string {
	rest := strings.TrimPrefix(msg, "offset ")
	nstr, tail, _ := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(nstr)
	if err != nil || n > len(data) {
		return msg
	}
	line := 1 + bytes.Count(data[:n], []byte("\n"))
	col := n - bytes.LastIndexByte(data[:n], '\n')
	return fmt.Sprintf("line %d column %d: %s", line, col, tail)
}

// compact renders v back as JSON text (numbers as written).
func (v *jsonValue) compact() string {
	var b bytes.Buffer
	v.writeCompact(&b)
	return b.String()
}

func (v *jsonValue) writeCompact(b *bytes.Buffer) {
	switch v.kind {
	case jsonNull:
		b.WriteString("null")
	case jsonBool:
		b.WriteString(strconv.FormatBool(v.b))
	case jsonNumber:
		b.WriteString(v.num.String())
	case jsonString:
		data, _ := json.Marshal(v.str)
		b.Write(data)
	case jsonArray:
		b.WriteByte('[')
		for i, e := range v.arr {
			if i > 0 {
				b.WriteString(", ")
			}
			e.writeCompact(b)
		}
		b.WriteByte(']')
	case jsonObject:
		b.WriteByte('{')
		for i, m := range v.obj {
			if i > 0 {
				b.WriteString(", ")
			}
			data, _ := json.Marshal(m.key)
			b.Write(data)
			b.WriteString(": ")
			m.val.writeCompact(b)
		}
		b.WriteByte('}')
	}
}
