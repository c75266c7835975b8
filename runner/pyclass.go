package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vtcluster/vtcluster/agent/py"
)

// Multi-host tests written as Python classes (avocado_multihost's
// MultiHostTest) arrive as runnables whose uri is the .py file and whose
// keyword arguments carry what the class declared, read by the resolver
// without importing the file:
//
//	test=Class.method  nodes=[[tag, selectors], ...]  timeout=SECONDS|None
//	resources=[...] vms=[...] (as a spec's)  python=INTERPRETER (the one with
//	avocado_multihost installed)
//
// Such a test becomes a Test whose body command is that interpreter
// running "-m avocado_multihost.mhtest FILE Class.method"; everything else
// (allocation, logs, collection, teardown) is the spec path's. The child
// reports its own status in pyResultFile, since a Python test can end as
// SKIP or CANCEL, which an exit status cannot say.

// pyResultFile is written by the child in the test's output directory.
const pyResultFile = "multihost-result.json"

// isPythonTestFile tells a Python test class file from a JSON spec.
func isPythonTestFile(path string) bool { return strings.HasSuffix(path, ".py") }

// unplaced drops the line and column of spec errors about a class's
// attributes: they would point into the JSON built from them, not into
// the Python file; the path (nodes.dst) names the attribute.
func unplaced(err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		if se, ok := e.(*specError); ok {
			se.Line, se.Column = 0, 0
		}
	}
	return err
}

// pythonClassSpec builds the one-test spec of a Python class test. The
// declaration goes through parseSpec, so tags and selectors are checked
// exactly as in a JSON spec.
func pythonClassSpec(r runnable, file, name string) (*SpecFile, error) {
	bad := func(format string, args ...any) error {
		return &specError{File: file, Msg: fmt.Sprintf(format, args...)}
	}
	if cls, method, ok := strings.Cut(name, "."); !ok || cls == "" || !strings.HasPrefix(method, "test") {
		return nil, bad("test=%s: want Class.test_method", py.Repr(name))
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, bad("%v", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, bad("%v", unwrapPathError(err))
	}
	python := "python3"
	if v, ok := r.Kwargs["python"].(string); ok && v != "" {
		python = v
	}
	raw, ok := r.Kwargs["nodes"].([]any)
	if !ok || len(raw) == 0 {
		return nil, bad("nodes: want a non-empty list of [tag, selectors] (from the class's nodes attribute)")
	}
	// Members are written one by one: the spec's node order is the
	// object's order, which a Go map would lose.
	var nodes strings.Builder
	nodes.WriteByte('{')
	for i, e := range raw {
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			return nil, bad("nodes[%d]: want [tag, selectors]", i)
		}
		tag, ok1 := pair[0].(string)
		sel, ok2 := pair[1].(string)
		if !ok1 || !ok2 {
			return nil, bad("nodes[%d]: tag and selectors must be strings", i)
		}
		if i > 0 {
			nodes.WriteByte(',')
		}
		k, _ := json.Marshal(tag)
		v, _ := json.Marshal(sel)
		nodes.Write(k)
		nodes.WriteByte(':')
		nodes.Write(v)
	}
	nodes.WriteByte('}')
	test := map[string]json.RawMessage{"nodes": json.RawMessage(nodes.String())}
	put := func(key string, v any) {
		b, _ := json.Marshal(v)
		test[key] = b
	}
	put("name", name)
	put("body", map[string]any{"command": []string{python, "-m", "avocado_multihost.mhtest", "--", abs, name}})
	if res, ok := r.Kwargs["resources"]; ok {
		// Checked by the spec loader exactly as a JSON spec's resources.
		put("resources", res)
	}
	if vms, ok := r.Kwargs["vms"]; ok {
		// Checked by the spec loader exactly as a JSON spec's VMs.
		put("vms", vms)
	}
	switch t := r.Kwargs["timeout"].(type) {
	case nil:
	case int64, float64:
		put("timeout", t)
	default:
		return nil, bad("timeout: want a number of seconds, got %s", py.Repr(t))
	}
	data, err := json.Marshal(test)
	if err != nil {
		return nil, bad("%v", err)
	}
	spec, err := parseSpec(file, data)
	if err != nil {
		return nil, unplaced(err)
	}
	spec.Tests[0].ResultFile = pyResultFile
	return spec, nil
}

// pyClassOutcome is the outcome of a Python class test's body: the status
// its child reported, and its whiteboard sent on to Avocado.
func (r *testRun) pyClassOutcome(ctx context.Context, res commandResult) outcome {
	o, whiteboard := readPyResult(filepath.Join(r.outputDir, r.test.ResultFile), res)
	if whiteboard != "" {
		// Avocado keeps it in results.json and <task dir>/whiteboard.
		r.rep.Send(ctx, message{{Key: "type", Value: "whiteboard"}, {Key: "log", Value: []byte(whiteboard)}, {Key: "encoding", Value: "utf-8"}, {Key: "status", Value: "running"}})
	}
	return o
}

// readPyResult reads the status and whiteboard the Python child wrote; a
// child that wrote none (it crashed, or could not load the test) is an
// ERROR.
func readPyResult(path string, res commandResult) (outcome, string) {
	rc := res.exitCode
	data, err := os.ReadFile(path)
	if err != nil {
		why := fmt.Sprintf("exited with status %d", rc)
		if res.signal != 0 {
			why = "was killed by signal " + signalName(res.signal)
		}
		if !errors.Is(err, os.ErrNotExist) {
			why += fmt.Sprintf(" (%v)", err)
		}
		return outcome{Result: resultError, Reason: "the Python test process " + why + " without reporting a result; see its stderr", ReturnCode: &rc}, ""
	}
	var out struct {
		Status     string  `json:"status"`
		FailReason *string `json:"fail_reason"`
		Whiteboard string  `json:"whiteboard"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return outcome{Result: resultError, Reason: fmt.Sprintf("%s: %v", path, err), ReturnCode: &rc}, ""
	}
	results := map[string]string{
		"PASS": resultPass, "FAIL": resultFail, "ERROR": resultError, "SKIP": resultSkip,
		"CANCEL": resultCancel, "WARN": resultWarn, "INTERRUPTED": resultInterrupted,
	}
	result, ok := results[out.Status]
	if !ok {
		return outcome{Result: resultError, Reason: fmt.Sprintf("%s: unknown status %s", path, py.Repr(out.Status)), ReturnCode: &rc}, out.Whiteboard
	}
	o := outcome{Result: result, ReturnCode: &rc}
	if out.FailReason != nil {
		o.Reason = *out.FailReason
	}
	return o, out.Whiteboard
}
