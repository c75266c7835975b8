// Package testbin gives tests the vtcluster binary. Several packages' tests
// run it (agents on lab hosts, the runner, the CLI); building it in each
// would cost one link per package and per run. Path builds it at most once
// per source tree: the binary is cached under build/test/<hash of the
// sources>/, and a file lock makes concurrent test binaries of one `go
// test ./...` wait for the first build instead of repeating it.
//
// VTCLUSTER_BIN, when set (the Makefile sets it to bin/vtcluster, which it
// has just built), is used as is.
package testbin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Env is the variable that names a prebuilt binary.
const Env = "VTCLUSTER_BIN"

// RunnerName is the name under which the binary acts as the nrunner
// runner; Path's directory holds a symlink of that name.
const RunnerName = "avocado-runner-multihost"

var once = sync.OnceValues(build)

// Path returns the vtcluster binary, building it if needed; a build
// failure fails the test.
func Path(tb testing.TB) string {
	tb.Helper()
	p, err := once()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Build is Path for code that has no testing.TB, such as TestMain.
func Build() (string, error) { return once() }

// Main is TestMain's body for the packages whose code starts the vtcluster
// binary it runs as (os.Executable) again. Such code must be pointed at
// Build's binary in tests; if it is not, this test binary is started with
// vtcluster's arguments and would run the whole suite again, detached and
// unwatched. Main makes that a loud failure instead: it exits at once with
// status 97, naming the command line.
func Main(m *testing.M) {
	if !startedByGoTest(os.Args) {
		fmt.Fprintf(os.Stderr, "testbin: this test binary was started as %q: test code ran it as vtcluster; point the code at testbin.Build() instead\n", os.Args)
		os.Exit(97)
	}
	os.Exit(m.Run())
}

// startedByGoTest: go test names test binaries NAME.test and gives them
// only -test.* flags.
func startedByGoTest(argv []string) bool {
	if len(argv) == 0 || !strings.HasSuffix(filepath.Base(argv[0]), ".test") {
		return false
	}
	return len(argv) == 1 || strings.HasPrefix(argv[1], "-") && strings.HasPrefix(strings.TrimLeft(argv[1], "-"), "test.")
}

// RunnerPath returns the avocado-runner-multihost symlink to the binary.
func RunnerPath(tb testing.TB) string {
	tb.Helper()
	p := Path(tb)
	link := filepath.Join(filepath.Dir(p), RunnerName)
	if _, err := os.Lstat(link); err != nil {
		tb.Fatalf("%s: no %s beside it (%v); make build creates it", p, RunnerName, err)
	}
	return link
}

func build() (string, error) {
	if p := os.Getenv(Env); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if fi, err := os.Stat(abs); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s=%s: not an executable file (%v)", Env, p, err)
		}
		return abs, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	sum, err := sourceHash(root)
	if err != nil {
		return "", err
	}
	base := filepath.Join(root, "build", "test")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(base, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	dir := filepath.Join(base, sum[:16])
	bin := filepath.Join(dir, "vtcluster")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// Binaries of older sources are of no use any more.
	if old, _ := filepath.Glob(filepath.Join(base, "*")); len(old) > 0 {
		for _, o := range old {
			if fi, err := os.Stat(o); err == nil && fi.IsDir() {
				os.RemoveAll(o)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := bin + ".tmp"
	cmd := exec.Command("go", "build", "-trimpath", "-o", tmp, ".")
	cmd.Dir = root
	// Static, as make build makes it: it is uploaded to lab hosts.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("building vtcluster: %v\n%s", err, out)
	}
	if err := os.Symlink("vtcluster", filepath.Join(dir, RunnerName)); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	return bin, os.Rename(tmp, bin)
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testbin: no go.mod above the working directory")
		}
		dir = parent
	}
}

// sourceHash digests what the binary is built from: the non-test Go files,
// go.mod, go.sum and VERSION, with their paths.
func sourceHash(root string) (string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "build" || name == "bin" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if (strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")) ||
			(filepath.Dir(path) == root && (name == "go.mod" || name == "go.sum" || name == "VERSION")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s\x00", rel)
		fh, err := os.Open(f)
		if err != nil {
			return "", err
		}
		n, err := io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "\x00%d\x00", n)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
