package bridge

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtcluster/vtcluster/runner"
)

// The LAVA cache file is replaced in place, never through a link someone
// planted where it is expected.
func TestLavaCacheRefusesPlantedLinks(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache.txt")
	t.Setenv("LAVA_MULTI_NODE_CACHE", cache)
	if err := os.WriteFile(cache, []byte("old=1\nolder=2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeLavaCache([]string{"k=v"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(cache); string(got) != "k=v\n" {
		t.Errorf("cache %q", got)
	}
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	os.Remove(cache)
	if err := os.Symlink(victim, cache); err != nil {
		t.Fatal(err)
	}
	if err := writeLavaCache([]string{"k=v"}); err == nil {
		t.Error("wrote through a symlink")
	}
	if got, _ := os.ReadFile(victim); string(got) != "keep" {
		t.Errorf("the link's target was changed: %q", got)
	}
}

// Outside a test's process the commands say why and exit 1; wrong
// arguments are usage errors (2) with the alias's usage line.
func TestSyncAliasesOutsideATestAndUsage(t *testing.T) {
	t.Setenv(runner.EnvSyncSocket, "")
	t.Setenv(runner.EnvSyncToken, "")
	for _, c := range []struct {
		argv []string
		code int
		want string
	}{
		{[]string{"lava-send", "hello", "a=b"}, 1, "lava-send: not started by a multihost test"},
		{[]string{"lava-send"}, 2, "usage: lava-send MESSAGE-ID [KEY=VALUE ...]"},
		{[]string{"lava-send", "id", "no-equals"}, 2, "is not KEY=VALUE"},
		{[]string{"lava-role", "bogus"}, 2, `the only argument is "list"`},
		{[]string{"rhts-sync-block", "-s", "READY"}, 2, "at least one -s STATE and one HOST"},
		{[]string{"rhts-sync-block", "-s", "READY", "--timeout", "x", "h"}, 2, "--timeout takes seconds"},
		{[]string{"rhts-sync-set"}, 2, "expected -s STATE"},
		{[]string{"/some/dir/lava-wait", "a", "b"}, 2, "expected one message id"},
		{[]string{"vtcluster", "sync", "barrier", "x"}, 1, "not started by a multihost test"},
		{[]string{"vtcluster", "sync", "send", "k"}, 2, "expected KEY VALUE"},
	} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), c.argv, strings.NewReader(""), &out, &errOut)
		stderr := errOut.String()
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.argv, code, stderr, c.code, c.want)
		}
	}
}

func TestInstallSyncAliases(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bin")
	for range 2 { // again over what the first call placed
		if err := installSyncAliases(dir); err != nil {
			t.Fatal(err)
		}
	}
	exe, _ := executable()
	for _, name := range append(syncAliasNames(), "vtcluster") {
		if got, err := os.Readlink(filepath.Join(dir, name)); err != nil || got != exe {
			t.Errorf("%s -> %q, %v", name, got, err)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v", fi.Mode())
	}
}
