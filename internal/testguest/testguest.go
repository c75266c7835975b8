// Package testguest gives tests the tiny guest of scripts/guest.sh (make
// guest): Debian's kernel as an ELF vmlinux and a busybox initramfs. The
// script caches it under build/guest/<key>/; Get runs it at most once per
// test binary. A test skips, with the reason, on a machine without QEMU or
// apt (the script cannot build the guest there).
package testguest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent/pgroup"
)

// Guest is the built guest.
type Guest struct {
	Dir     string
	Vmlinux string // the kernel, booted through QEMU's PVH entry
	Initrd  string
}

// Cmdline is the kernel command line that gives the guest's eth0 address
// (e.g. "10.1.2.3/24").
func Cmdline(addr string) string {
	return "console=ttyS0 quiet panic=-1 vmip=" + addr
}

// Ready is the console line the guest prints once its network is up.
const Ready = `vtguest: net up`

var once = sync.OnceValues(build)

// Get returns the guest, building it if needed, or skips the test when
// this machine cannot run one.
func Get(tb testing.TB) Guest {
	tb.Helper()
	for _, p := range []string{"qemu-system-x86_64", "apt-get", "busybox"} {
		if !onPath(p) {
			tb.Skipf("no %s on this machine: the VM tests need qemu-system-x86, busybox-static and apt (scripts/system-packages.txt)", p)
		}
	}
	g, err := once()
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

func onPath(name string) bool {
	for _, d := range filepath.SplitList(os.Getenv("PATH") + ":/usr/sbin:/sbin") {
		if fi, err := os.Stat(filepath.Join(d, name)); err == nil && !fi.IsDir() {
			return true
		}
	}
	return false
}

func build() (Guest, error) {
	root, err := repoRoot()
	if err != nil {
		return Guest{}, err
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := pgroup.Run(ctx, []string{"bash", filepath.Join(root, "scripts", "guest.sh")}, pgroup.Options{Dir: root, Stdout: &out, Stderr: &errb})
	if err != nil || res.ExitCode != 0 {
		return Guest{}, fmt.Errorf("testguest: scripts/guest.sh failed (exit %d): %v\n%s", res.ExitCode, err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	dir := lines[len(lines)-1]
	g := Guest{Dir: dir, Vmlinux: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "initramfs.cpio.gz")}
	for _, p := range []string{g.Vmlinux, g.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return Guest{}, fmt.Errorf("testguest: scripts/guest.sh printed %s: %w", dir, err)
		}
	}
	return g, nil
}

// repoRoot is the directory with go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "guest.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testguest: scripts/guest.sh not found above the working directory")
		}
		dir = parent
	}
}
