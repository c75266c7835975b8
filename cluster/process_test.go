package cluster

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeRunResult(t *testing.T) {
	full := map[string]any{
		"exit_code": int64(-9), "stdout": []byte("out"), "stderr": "err",
		"stdout_truncated": true, "stderr_truncated": false, "timed_out": true, "duration": 1.5,
	}
	got, err := decodeRunResult(full)
	if err != nil {
		t.Fatal(err)
	}
	want := RunResult{ExitCode: -9, Stdout: []byte("out"), Stderr: []byte("err"), StdoutTruncated: true, TimedOut: true, Duration: 1500 * time.Millisecond}
	if got.ExitCode != want.ExitCode || string(got.Stdout) != "out" || string(got.Stderr) != "err" ||
		got.StdoutTruncated != want.StdoutTruncated || got.StderrTruncated || got.TimedOut != want.TimedOut || got.Duration != want.Duration {
		t.Errorf("got %+v, want %+v", got, want)
	}

	for _, tc := range []struct {
		name  string
		reply any
		want  string
	}{
		{"not a struct", []any{int64(0)}, "reply is list, want a struct"},
		{"no exit code", map[string]any{"stdout": []byte{}}, "exit_code is NoneType, want int"},
		{"exit code a string", map[string]any{"exit_code": "0"}, "exit_code is str, want int"},
		{"stdout an int", map[string]any{"exit_code": int64(0), "stdout": int64(3)}, "stdout is int, want bytes"},
		{"stderr not text", map[string]any{"exit_code": int64(0), "stderr": "\xff"}, "stderr is not valid text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeRunResult(tc.reply)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
}
