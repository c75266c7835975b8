package bridge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cpFileJSON runs "cp --json SRC DST" and returns its one file item.
func cpFileJSON(t *testing.T, c *cliCluster, src, dst string) cpItemJSON {
	t.Helper()
	var sum cpSummaryJSON
	if err := json.Unmarshal([]byte(c.mustCLI(t, "cp", "--json", src, dst)), &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.Items) != 1 || sum.Items[0].Kind != "file" {
		t.Fatalf("cp %s %s: items %+v, want one file", src, dst, sum.Items)
	}
	return sum.Items[0]
}

func randomFile(t *testing.T, p string, n int, mode os.FileMode) []byte {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	copy(data[n/2:], make([]byte, 256<<10)) // a zero run in the middle
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	return data
}

func sameFile(t *testing.T, p string, want []byte, mode os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes differ from the %d copied", p, len(got), len(want))
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != mode {
		t.Errorf("%s: mode %v (%v), want %v", p, st.Mode().Perm(), err, mode)
	}
}

// With vtcluster deployed on the node, a file goes up and down streamed
// through it (not SFTP), whole, with its mode, and replaces a symlink
// planted at the destination instead of writing through it.
func TestCLI_cp_streamedThroughTheNodeBinary(t *testing.T) {
	c := newCLICluster(t, 1, nil)
	c.bootstrap(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	data := randomFile(t, src, 9<<20+123, 0o640)
	node := filepath.Join(dir, "node")
	if err := os.Mkdir(node, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(node, "up.bin")); err != nil {
		t.Fatal(err)
	}

	up := cpFileJSON(t, c, src, "node1:"+filepath.Join(node, "up.bin"))
	if up.Via != "stream" || len(up.SHA256) != 64 || up.Written >= int64(len(data)) {
		t.Errorf("up: %+v, want via stream, a SHA-256, the zero run not written", up)
	}
	sameFile(t, filepath.Join(node, "up.bin"), data, 0o640)
	if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
		t.Errorf("the copy wrote through the planted link: victim is %q", b)
	}

	down := cpFileJSON(t, c, "node1:"+filepath.Join(node, "up.bin"), filepath.Join(dir, "down.bin"))
	if down.Via != "stream" || down.SHA256 != up.SHA256 {
		t.Errorf("down: %+v, want via stream and the SHA-256 %s", down, up.SHA256)
	}
	sameFile(t, filepath.Join(dir, "down.bin"), data, 0o640)

	// The node's end failing (no such directory) is said, with its reason.
	missing := filepath.Join(dir, "no-such-dir", "f")
	code, _, errOut := c.cli(t, "cp", src, "node1:"+missing)
	if code == 0 || !strings.Contains(errOut, missing) || !strings.Contains(errOut, "no such file or directory") {
		t.Errorf("cp into a missing directory on the node: exit %d, %s", code, errOut)
	}
}

// A node whose vtcluster does not know the streamed modes (an older one,
// here a stand-in that refuses every command line as one would) or has
// none gets the file over SFTP, still checked.
func TestCLI_cp_fallsBackToSFTP(t *testing.T) {
	base := t.TempDir()
	c := newCLICluster(t, 1, func(_ string, h map[string]any) { h["agent_base_dir"] = filepath.Join(base, "agents") })
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	data := randomFile(t, src, 2<<20, 0o600)
	c.bootstrap(t)
	bin := filepath.Join(base, "agents", "node1", "vtcluster")
	if err := os.Remove(bin); err != nil {
		t.Fatalf("bootstrap put no binary where expected: %v", err)
	}

	if it := cpFileJSON(t, c, src, "node1:"+filepath.Join(dir, "none.bin")); it.Via != "sftp" || len(it.SHA256) != 64 {
		t.Errorf("no binary on the node: %+v, want via sftp with a SHA-256", it)
	}
	sameFile(t, filepath.Join(dir, "none.bin"), data, 0o600)

	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'flag provided but not defined' >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range [][2]string{
		{src, "node1:" + filepath.Join(dir, "old.bin")},
		{"node1:" + filepath.Join(dir, "old.bin"), filepath.Join(dir, "back.bin")},
	} {
		if it := cpFileJSON(t, c, tc[0], tc[1]); it.Via != "sftp" || len(it.SHA256) != 64 {
			t.Errorf("cp %s %s with an older node binary: %+v, want via sftp with a SHA-256", tc[0], tc[1], it)
		}
	}
	sameFile(t, filepath.Join(dir, "back.bin"), data, 0o600)
}

// The node's end of a streamed copy checks what it wrote against the hash
// its sender read: a stream corrupted on the way is refused, the partial
// file removed, and a stream cut short likewise.
func TestCLI_cp_receiveRefusesACorruptedStream(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	randomFile(t, src, 5<<20, 0o644)
	code, stream, errOut := runMainStdin(t, "", "cp", "--send", "--", src)
	if code != 0 || len(stream) < 4<<20 {
		t.Fatalf("cp --send: exit %d, %d bytes: %s", code, len(stream), errOut)
	}
	dst := filepath.Join(dir, "dst.bin")
	receive := func(s string) (int, string, string) {
		t.Helper()
		return runMainStdin(t, s, "cp", "--receive", "--size", "5242880", "--mode", "0644", "--", dst)
	}
	if code, out, errOut := receive(stream); code != 0 || len(strings.TrimSpace(out)) != 64 {
		t.Fatalf("an intact stream: exit %d, %q, %s", code, out, errOut)
	}
	b := []byte(stream)
	b[13+1000] ^= 1 // a byte of the first frame's data
	for what, s := range map[string]string{"corrupted": string(b), "cut short": stream[:3<<20]} {
		code, out, errOut := receive(s)
		if code == 0 || out != "" {
			t.Errorf("a %s stream: exit %d, %q", what, code, out)
		}
		if what == "corrupted" && !strings.Contains(errOut, "SHA-256 mismatch") {
			t.Errorf("a corrupted stream: %s, want a SHA-256 mismatch", errOut)
		}
		if _, err := os.Lstat(dst); !os.IsNotExist(err) {
			t.Errorf("a %s stream left %s behind (%v)", what, dst, err)
		}
	}
}

// runMainStdin runs vtcluster in this process with stdin.
func runMainStdin(tb testing.TB, stdin string, args ...string) (int, string, string) {
	tb.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), append([]string{"vtcluster"}, args...), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}
