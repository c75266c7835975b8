package runner

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseCommandLine: no argument list panics the parser, and every
// refusal is a *usageError, which the binary turns into exit status 2 and
// a usage line.
func FuzzParseCommandLine(f *testing.F) {
	for _, seed := range []string{
		"capabilities", "--help", "runnable-run -h",
		"runnable-run -k multihost/test -u spec.json:name -a x -c {\"a\":1}",
		"task-run -i 1 -j job -s 127.0.0.1:8888 -k multihost/test -u s.json:t",
		"runnable-run-recipe -- -x.json", "task-run-recipe r.json", "-x", "runnable-run --uri=",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		// NUL separates arguments, as in /proc/PID/cmdline.
		argv := append([]string{"avocado-runner-multihost"}, strings.Split(line, "\x00")...)
		if !strings.Contains(line, "\x00") {
			argv = append(argv[:1], strings.Fields(line)...)
		}
		inv, err := parseCommandLine(argv)
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("%q: error %v (%T) is not a *UsageError", argv, err, err)
			}
			return
		}
		if inv == nil {
			t.Fatalf("%q: no invocation and no error", argv)
		}
	})
}

// FuzzParseSpec: no spec text panics the loader, and every refusal is made
// of *specError values naming the file.
func FuzzParseSpec(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "multihost", "*.json"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(twoNodeSpec))
	f.Add([]byte(syncSpec))
	f.Add([]byte(`{"name": "t", "nodes": {"a": null}, "body": {"command": ["true"]}}`))
	f.Add([]byte(`{"tests": []}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "fuzz/spec.json"
		sf, err := parseSpec(path, data)
		if err != nil {
			var se *specError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v (%T) is not a *SpecError naming the file", err, err)
			}
			return
		}
		if sf == nil {
			t.Fatal("no spec and no error")
		}
	})
}
