package bridge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The attacks of audit 3 H1 on "vtcluster cp": a tree on a node that links
// out, copied twice to the controller, and a destination under a
// world-writable directory prepared by another user on the node. Lab hosts
// share this machine's file system, so the "other user" is nobody's
// ownership (set here as root, as su nobody would have made it) and
// "/etc" is a directory of the test's own.
func TestCLI_cp_destinationLinksAreNotFollowed(t *testing.T) {
	c := newCLICluster(t, 1, nil)
	c.bootstrap(t)
	const nobody = 65534
	base := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(p string, mode os.FileMode, uid int) {
		t.Helper()
		must(os.Mkdir(p, mode))
		must(os.Chmod(p, mode)) // past the umask
		must(os.Lchown(p, uid, uid))
	}
	write := func(p, data string, mode os.FileMode, uid int) {
		t.Helper()
		must(os.WriteFile(p, []byte(data), mode))
		must(os.Chmod(p, mode))
		must(os.Lchown(p, uid, uid))
	}
	etc := func(name string) (string, map[string]cpEntry) {
		d := filepath.Join(base, name)
		mkdir(d, 0o755, 0)
		write(filepath.Join(d, "passwd"), "root:x:0:0::/root:/bin/bash\n", 0o644, 0)
		write(filepath.Join(d, "run.sh"), "original\n", 0o755, 0)
		return d, cpSnapshot(t, d)
	}

	// Node -> controller: nobody's tree on the node links to the
	// controller's "/etc"; the first copy brings the link, the second,
	// with a directory of that name on the node, must not write through it.
	ctlEtc, ctlWant := etc("ctl_etc")
	results := filepath.Join(base, "node_results")
	mkdir(results, 0o1777, 0)
	tree := filepath.Join(results, "t")
	mkdir(tree, 0o777, nobody)
	must(os.Symlink(ctlEtc, filepath.Join(tree, "link")))
	must(os.Lchown(filepath.Join(tree, "link"), nobody, nobody))
	write(filepath.Join(tree, "log.txt"), "ok\n", 0o644, nobody)
	out := filepath.Join(base, "ctlout")
	mkdir(out, 0o755, 0)
	c.mustCLI(t, "cp", "-r", "node1:"+tree, out+"/")
	if st, err := os.Stat(filepath.Join(out, "t")); err != nil || st.Mode().Perm()&0o022 != 0 {
		t.Errorf("a 0777 directory of the node came here writable by others: %v %v", st.Mode(), err)
	}
	must(os.Remove(filepath.Join(tree, "link")))
	mkdir(filepath.Join(tree, "link"), 0o777, nobody)
	write(filepath.Join(tree, "link", "passwd"), "evil::0:0::/root:/bin/sh\n", 0o666, nobody)
	code, _, errOut := c.cli(t, "cp", "-r", "node1:"+tree, out+"/")
	if code != 1 || !strings.Contains(errOut, "is a symlink where a directory goes") {
		t.Errorf("second copy over a planted link: exit %d, %s", code, errOut)
	}
	sameTree(t, "the controller's /etc after cp -r from the node", ctlWant, cpSnapshot(t, ctlEtc))

	// Controller -> node: nobody made the destination under a 1777
	// directory, with a link to the node's "/etc" inside; and a
	// destination of root's own with a planted link one level down.
	nodeEtc, nodeWant := etc("node_etc")
	src := filepath.Join(base, "src", "testdata")
	must(os.MkdirAll(filepath.Join(src, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(src, "sub", "run.sh"), []byte("copied\n"), 0o755))
	must(os.WriteFile(filepath.Join(src, "sub", "passwd"), []byte("copied\n"), 0o644))
	vartmp := filepath.Join(base, "vartmp")
	mkdir(vartmp, 0o1777, 0)
	mkdir(filepath.Join(vartmp, "testdata"), 0o777, nobody)
	must(os.Symlink(nodeEtc, filepath.Join(vartmp, "testdata", "sub")))
	code, _, errOut = c.cli(t, "cp", "-r", src, "node1:"+vartmp+"/")
	if code != 1 || !strings.Contains(errOut, "owned by uid 65534") || strings.Contains(errOut, "copied 0 files") {
		t.Errorf("copy into nobody's directory: exit %d, %s", code, errOut)
	}
	must(os.RemoveAll(filepath.Join(vartmp, "testdata")))
	mkdir(filepath.Join(vartmp, "testdata"), 0o755, 0)
	must(os.Symlink(nodeEtc, filepath.Join(vartmp, "testdata", "sub")))
	code, _, errOut = c.cli(t, "cp", "-r", src, "node1:"+vartmp+"/")
	if code != 1 || !strings.Contains(errOut, "is a symlink where a directory goes") {
		t.Errorf("copy over a planted link on the node: exit %d, %s", code, errOut)
	}
	sameTree(t, "the node's /etc after cp -r to the node", nodeWant, cpSnapshot(t, nodeEtc))

	// A file named by the copy that is a link is replaced, not written
	// through; and --max-size bounds what one file may be.
	must(os.Symlink(filepath.Join(nodeEtc, "passwd"), filepath.Join(vartmp, "one")))
	c.mustCLI(t, "cp", filepath.Join(src, "sub", "passwd"), "node1:"+filepath.Join(vartmp, "one"))
	if st, err := os.Lstat(filepath.Join(vartmp, "one")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("the link at the destination file was not replaced: %v", err)
	}
	sameTree(t, "the node's /etc after cp over a link", nodeWant, cpSnapshot(t, nodeEtc))
	code, _, errOut = c.cli(t, "cp", "--max-size", "4", filepath.Join(src, "sub", "passwd"), "node1:"+filepath.Join(vartmp, "two"))
	if code != 1 || !strings.Contains(errOut, "raise --max-size") || strings.Contains(errOut, "copied 0 files") {
		t.Errorf("--max-size: exit %d, %s", code, errOut)
	}
}
