package bridge

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v3"
)

// routeUsageErrors makes every command of the tree report how it was
// misused as a usageError (exit 2, one line on stderr naming the --help
// to read): urfave/cli calls OnUsageError for bad and missing flags and
// arguments, but only on the command that has it, so each gets one. A
// command group run without a known subcommand (vtcluster, vtcluster node
// foo) is a usage error too, not help and exit 0. The exit code is thus
// chosen by type, never by the library's wording.
func routeUsageErrors(cmd *cli.Command) {
	cmd.OnUsageError = func(_ context.Context, c *cli.Command, err error, _ bool) error {
		return usageError{fmt.Errorf("%s%v (see %s --help)", commandPrefix(c), err, c.FullName())}
	}
	if len(cmd.Commands) > 0 && cmd.Action == nil {
		cmd.Action = groupAction
	}
	for _, sub := range cmd.Commands {
		routeUsageErrors(sub)
	}
}

// commandPrefix is "node add: " for vtcluster node add, "" for the root,
// whose name Main prints anyway.
func commandPrefix(c *cli.Command) string {
	if c.Root() == c {
		return ""
	}
	return strings.TrimPrefix(c.FullName(), c.Root().Name+" ") + ": "
}

// groupAction runs for a command group given no subcommand, or one it
// does not have.
func groupAction(_ context.Context, cmd *cli.Command) error {
	if cmd.Args().Len() == 0 {
		return usageError{fmt.Errorf("%sa command is needed (see %s --help)", commandPrefix(cmd), cmd.FullName())}
	}
	arg := cmd.Args().First()
	msg := fmt.Sprintf("%sunknown command %q", commandPrefix(cmd), arg)
	if s := cli.SuggestCommand(cmd.Commands, arg); s != "" {
		msg += fmt.Sprintf(", did you mean %q?", s)
	}
	return usageError{fmt.Errorf("%s (see %s --help)", msg, cmd.FullName())}
}
