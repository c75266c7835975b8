package xmlrpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/vtcluster/vtcluster/agent/py"
)

// Fault is an error in avocado-vt's convention: every exception raised by
// an agent method travels as XML-RPC fault code 1 whose faultString is the
// JSON object {"exc_type", "exc_value", "tb_info"}. avocado-vt's controller
// json.loads that string unconditionally, so every fault we send has it.
type Fault struct {
	// ExcType is a Python exception class name ("ValueError") or a
	// module-qualified one; builtins are not qualified.
	ExcType string
	// ExcValue is str(exception).
	ExcValue string
	// TbInfo is the formatted traceback; ours describes the agent call.
	TbInfo string
}

func (f *Fault) Error() string {
	return fmt.Sprintf("%s: %s", f.ExcType, f.ExcValue)
}

// Faultf returns a Fault of the given Python exception type.
func Faultf(excType, format string, args ...any) *Fault {
	return &Fault{ExcType: excType, ExcValue: fmt.Sprintf(format, args...)}
}

// FaultString renders f as avocado-vt's JSON fault string, byte for byte
// what Python's json.dumps produces for the same dict (key order, ", " and
// ": " separators, ASCII escapes).
func (f *Fault) FaultString(method string) string {
	tb := f.TbInfo
	if tb == "" {
		tb = fmt.Sprintf("Traceback (most recent call last):\n  File \"vtcluster-agent\", line 1, in %s\n%s: %s\n", method, f.ExcType, f.ExcValue)
	}
	var b []byte
	b = append(b, `{"exc_type": `...)
	b = py.AppendJSONString(b, f.ExcType)
	b = append(b, `, "exc_value": `...)
	b = py.AppendJSONString(b, f.ExcValue)
	b = append(b, `, "tb_info": `...)
	b = py.AppendJSONString(b, tb)
	b = append(b, '}')
	return string(b)
}

// FaultFromError turns any error a method returned into the Fault that goes
// on the wire: a *Fault anywhere in the chain is used as is, anything else
// becomes a plain Python "Exception" carrying the error text.
func FaultFromError(err error) *Fault {
	var f *Fault
	if errors.As(err, &f) {
		return f
	}
	return &Fault{ExcType: "Exception", ExcValue: err.Error()}
}

// AsFault reports whether err is (or wraps) a fault whose string is
// avocado-vt's JSON form, and decodes it. A wire fault with any other
// string is not an avocado-vt Fault.
func AsFault(err error) (*Fault, bool) {
	var f *Fault
	if errors.As(err, &f) {
		return f, true
	}
	var w *WireFault
	if !errors.As(err, &w) {
		return nil, false
	}
	var raw struct {
		ExcType  *string `json:"exc_type"`
		ExcValue any     `json:"exc_value"`
		TbInfo   string  `json:"tb_info"`
	}
	if json.Unmarshal([]byte(w.String), &raw) != nil || raw.ExcType == nil {
		return nil, false
	}
	out := &Fault{ExcType: *raw.ExcType, TbInfo: raw.TbInfo}
	switch v := raw.ExcValue.(type) {
	case string:
		out.ExcValue = v
	case nil:
	default:
		p, _ := json.Marshal(v)
		out.ExcValue = string(p)
	}
	return out, true
}

// IsUnsupportedMethod reports whether err is the fault an agent (ours or
// upstream's) returns for a method it does not have.
func IsUnsupportedMethod(err error) bool {
	f, ok := AsFault(err)
	return ok && f.ExcType == "Exception" && strings.HasPrefix(f.ExcValue, "method \"") && strings.HasSuffix(f.ExcValue, "\" is not supported")
}

// UnsupportedMethodFault is the fault for an unknown method, worded as
// Python's SimpleXMLRPCServer words it.
func UnsupportedMethodFault(method string) *Fault {
	return &Fault{ExcType: "Exception", ExcValue: fmt.Sprintf("method \"%s\" is not supported", method)}
}
