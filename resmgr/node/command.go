package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vtcluster/vtcluster/agent/pgroup"
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

// runCommand is the Commander used on real nodes, on the one process-group
// supervisor the agent's process service uses: a timeout stops whatever
// the command started, and the command dies with the agent.
func runCommand(ctx context.Context, argv []string) error {
	if len(argv) == 0 {
		return errors.New("empty command")
	}
	path, err := lookPath(argv[0])
	if err != nil {
		return &CommandError{Argv: argv, Err: fmt.Errorf("%s: %w", argv[0], ErrToolMissing)}
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	var out capped
	res, err := pgroup.Run(ctx, argv, pgroup.Options{
		Path: path, Stdout: &out, Stderr: &out, DieWithParent: true,
		Env: []string{"PATH=" + toolPath, "LC_ALL=C"},
	})
	switch {
	case err != nil:
		return &CommandError{Argv: argv, Err: err}
	case res.Err != nil:
		return &CommandError{Argv: argv, Output: strings.TrimSpace(out.String()), Err: res.Err}
	case res.Stopped != nil:
		return &CommandError{Argv: argv, Output: strings.TrimSpace(out.String()), Err: fmt.Errorf("stopped: %w", res.Stopped)}
	case res.Signal != 0:
		return &CommandError{Argv: argv, Output: strings.TrimSpace(out.String()), Err: fmt.Errorf("killed by %v", res.Signal)}
	case res.ExitCode != 0:
		return &CommandError{Argv: argv, Output: strings.TrimSpace(out.String()), Err: fmt.Errorf("exit status %d", res.ExitCode)}
	}
	return nil
}

// toolPath is where node tools are looked for: the system's directories,
// whatever PATH the agent was started with.
const toolPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath finds name in toolPath (a name with a slash is used as given).
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		if st, err := os.Stat(name); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s: not an executable file", name)
		}
		return name, nil
	}
	for _, dir := range filepath.SplitList(toolPath) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in %s", name, toolPath)
}

// capped keeps the first maxCommandOutput bytes written to it.
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxCommandOutput - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
