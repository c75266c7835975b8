package bridge

import (
	"context"

	"github.com/vtcluster/vtcluster/runner"
)

// runnerMain is the avocado-runner-multihost personality: Avocado's nrunner
// protocol for kind "multihost".
func runnerMain(ctx context.Context, e *env, args []string) int {
	exe, _ := executable()
	return runner.Main(ctx, runner.Options{
		Executable: exe,
		Args:       args,
		Stdout:     e.stdout,
		Stderr:     e.stderr,
		NewCluster: runner.OpenBackend,
	})
}
