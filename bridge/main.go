// Package bridge is the composition root of vtcluster: the command line,
// the agent daemon shell, and the Avocado-facing commands (bootstrap, job
// hooks). It wires the other packages together; nothing imports it.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/urfave/cli/v3"
)

// Version is the vtcluster release, printed by --version.
var Version = "0.1.0"

// RunnerName is the executable name under which the binary behaves as an
// Avocado nrunner runner instead of the vtcluster CLI.
const RunnerName = "avocado-runner-multihost"

// env carries what every command needs from the process, so that commands
// run in-process in tests with their own writers and environment.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// argv0 is the path the binary was started as; the agent deployer
	// uploads the binary found there.
	argv0 string
}

// usageError marks errors in how a command was invoked; they exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitError carries a specific exit code chosen by a command.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e exitError) Unwrap() error { return e.err }

// Main runs vtcluster with args (args[0] is the program path) and returns
// the process exit code: 0 success, 1 error, 2 usage error (or, for
// commands that say so, "nothing matched").
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		args = []string{"vtcluster"}
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, argv0: args[0]}
	if filepath.Base(args[0]) == RunnerName {
		return runnerMain(ctx, e, args)
	}
	if _, ok := syncAliases[filepath.Base(args[0])]; ok {
		return syncAliasMain(ctx, e, filepath.Base(args[0]), args[1:])
	}
	root := rootCommand(e)
	routeUsageErrors(root)
	err := root.Run(ctx, args)
	closeStores(root)
	return exitCode(e, err)
}

func exitCode(e *env, err error) int {
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(e.stderr, "vtcluster: %v\n", ee.err)
		}
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "vtcluster: %v\n", ue.err)
		return 2
	}
	// The library's own exit errors come from its help command (help
	// TOPIC for no such topic): a usage error.
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		fmt.Fprintf(e.stderr, "vtcluster: %v (see vtcluster --help)\n", err)
		return 2
	}
	fmt.Fprintf(e.stderr, "vtcluster: %v\n", err)
	return 1
}
