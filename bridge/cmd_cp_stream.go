package bridge

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
)

// cpStreamed is the node's end of a streamed copy: "cp --receive --size N
// --mode M -- PATH" writes the file framed on stdin to PATH and prints its
// SHA-256; "cp --send -- PATH" frames PATH on stdout. --max-size and
// --timeout bound both, as they bound the controller's side.
func cpStreamed(ctx context.Context, e *env, cmd *cli.Command, args []string) error {
	if len(args) != 1 {
		return usageError{errors.New("cp --receive/--send: want one PATH")}
	}
	ctx, cancel, maxSize, err := cpLimits(ctx, cmd)
	if err != nil {
		return err
	}
	defer cancel()
	if cmd.Bool("send") {
		if cmd.Bool("receive") {
			return usageError{errors.New("cp: --receive and --send exclude each other")}
		}
		if err := cluster.SendFile(ctx, e.stdout, args[0], maxSize); err != nil {
			return fmt.Errorf("cp --send: %w", err)
		}
		return nil
	}
	mode, err := strconv.ParseUint(cmd.String("mode"), 8, 32)
	if err != nil || mode > 0o777 {
		return flagError("mode", "want octal permission bits such as 0644, not %q", cmd.String("mode"))
	}
	sum, err := cluster.ReceiveFile(ctx, e.stdin, args[0], cmd.Int64("size"), fs.FileMode(mode), maxSize)
	if err != nil {
		return fmt.Errorf("cp --receive: %w", err)
	}
	_, err = fmt.Fprintln(e.stdout, sum)
	return err
}
