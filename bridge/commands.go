package bridge

import (
	"context"

	"github.com/urfave/cli/v3"
)

// rootCommand assembles the whole command tree in one place, so that names
// stay unique and every command is reachable from --help.
func rootCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "vtcluster",
		Usage:     "multi-host test orchestration for Avocado",
		Version:   Version,
		Writer:    e.stdout,
		ErrWriter: e.stderr,
		Reader:    e.stdin,
		// Errors are turned into exit codes by Main, never by os.Exit deep
		// inside the library, so commands can run in-process in tests.
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
		OnUsageError: func(_ context.Context, _ *cli.Command, err error, _ bool) error {
			return usageError{err}
		},
		// --state-dir and --cluster, persistent: valid before or after the command.
		Flags: globalFlags(),
		Commands: []*cli.Command{
			// COMMANDS: one line per command group; keep sorted by name.
			agentCommand(e),
			agentsCommand(e),
			bootstrapCommand(e),
			buildInfoCommand(e),
			callCommand(e),
			cpCommand(e),
			execCommand(e),
			hooksCommand(e),
			labCommand(e),
			logsCommand(e),
			nodeCommand(e),
			partitionCommand(e),
			poolCommand(e),
			queueCommand(e),
			resourceCommand(e),
			selectCommand(e),
			stateCommand(e),
			statusCommand(e),
			syncCommand(e),
			testsCommand(e),
			vmCommand(e),
		},
	}
}
