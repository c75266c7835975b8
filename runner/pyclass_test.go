package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func pyRunnable(kwargs map[string]any) runnable {
	return runnable{Kind: kind, Kwargs: kwargs}
}

func TestPythonClassSpec(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "t_test.py")
	if err := os.WriteFile(file, []byte("# test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := pyRunnable(map[string]any{
		"test":    "Transfer.test_copy",
		"nodes":   []any{[]any{"src", ""}, []any{"dst", "[{'key': 'kvm', 'operator': '==', 'values': True}]"}},
		"timeout": int64(90),
		"python":  "/venv/bin/python",
	})
	spec, err := pythonClassSpec(r, file, "Transfer.test_copy")
	if err != nil {
		t.Fatal(err)
	}
	test := spec.Tests[0]
	if got := strings.Join(test.NodeTags(), " "); got != "src dst" {
		t.Errorf("node order %q, want %q", got, "src dst")
	}
	if test.Timeout != 90*time.Second {
		t.Errorf("timeout %v", test.Timeout)
	}
	want := []string{"/venv/bin/python", "-m", "avocado_multihost.mhtest", "--", file, "Transfer.test_copy"}
	if strings.Join(test.Body.Command, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("command %q, want %q", test.Body.Command, want)
	}
	if test.ResultFile != pyResultFile || spec.Identifier(test) != file+":Transfer.test_copy" {
		t.Errorf("result file %q, identifier %q", test.ResultFile, spec.Identifier(test))
	}
}

func TestPythonClassSpec_rejects(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "t_test.py")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good := []any{[]any{"src", ""}}
	for _, tc := range []struct {
		name, test string
		kwargs     map[string]any
		want       string
	}{
		{"not a method", "Transfer", map[string]any{"nodes": good}, "want Class.test_method"},
		{"no nodes", "T.test_a", map[string]any{}, "nodes: want a non-empty list"},
		{"bad pair", "T.test_a", map[string]any{"nodes": []any{"src"}}, "nodes[0]: want [tag, selectors]"},
		// No line:column: it would point into the JSON built from the
		// class, not into the Python file.
		{"bad selectors", "T.test_a", map[string]any{"nodes": []any{[]any{"src", "[{'key': 1"}}}, "spec " + file + ": nodes.src: "},
		{"bad tag", "T.test_a", map[string]any{"nodes": []any{[]any{"a b", ""}}}, "a b"},
		{"bad timeout", "T.test_a", map[string]any{"nodes": good, "timeout": "soon"}, "timeout: want a number"},
		{"resources go through the spec loader", "T.test_a", map[string]any{"nodes": good, "resources": "disk"}, "resources"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pythonClassSpec(pyRunnable(tc.kwargs), file, tc.test)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := pythonClassSpec(pyRunnable(map[string]any{"nodes": good}), filepath.Join(dir, "gone.py"), "T.test_a"); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

func TestPyClassOutcome(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, pyResultFile)
	if o, _ := readPyResult(path, commandResult{exitCode: 2}); o.Result != resultError || !strings.Contains(o.Reason, "exited with status 2 without reporting a result") {
		t.Errorf("no file: %+v", o)
	}
	for status, want := range map[string]string{"PASS": resultPass, "FAIL": resultFail, "CANCEL": resultCancel, "SKIP": resultSkip, "ERROR": resultError} {
		if err := os.WriteFile(path, []byte(`{"status": "`+status+`", "fail_reason": "why", "whiteboard": "wb"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if o, wb := readPyResult(path, commandResult{}); o.Result != want || o.Reason != "why" || wb != "wb" {
			t.Errorf("%s: %+v, whiteboard %q", status, o, wb)
		}
	}
	if err := os.WriteFile(path, []byte(`{"status": "MAYBE"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if o, _ := readPyResult(path, commandResult{}); o.Result != resultError || !strings.Contains(o.Reason, "unknown status 'MAYBE'") {
		t.Errorf("unknown status: %+v", o)
	}
}
