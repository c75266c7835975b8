package resmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Commander runs one external command on the node: argv only, never a
// shell. It is the node side's one seam to the operating system's tools
// (qemu-img, ip, mount, umount, cp), so tests can stand in for what this
// machine cannot do (NFS mounts) and the supervisor can be swapped in one
// place.
type Commander func(ctx context.Context, argv []string) error

// commandTimeout bounds one command: none of them should take long, and a
// hung mount must not hold an RPC forever.
const commandTimeout = 2 * time.Minute

// maxCommandOutput is how much of a failing command's output is kept for
// the error message.
const maxCommandOutput = 4 << 10

// CommandError is an external command that could not run or failed.
type CommandError struct {
	Argv   []string
	Output string
	Err    error
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s failed: %v", strings.Join(e.Argv, " "), e.Err)
	if e.Output != "" {
		msg += ": " + e.Output
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

// ErrToolMissing is wrapped when the command's program is not installed.
var ErrToolMissing = errors.New("not installed on this node")

// runCommand is the Commander used on real nodes. The child gets its own
// process group, so a timeout kills whatever it started too.
// TODO(house-proc): switch to agent/pgroup once it lands.
func runCommand(ctx context.Context, argv []string) error {
	if len(argv) == 0 {
		return errors.New("empty command")
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return &CommandError{Argv: argv, Err: fmt.Errorf("%s: %w", argv[0], ErrToolMissing)}
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out capped
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if err := cmd.Run(); err != nil {
		return &CommandError{Argv: argv, Output: strings.TrimSpace(out.String()), Err: err}
	}
	return nil
}

// capped keeps the first maxCommandOutput bytes written to it.
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxCommandOutput - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
