package bridge

import (
	"context"
	"fmt"
)

// runnerMain is the avocado-runner-multihost personality.
func runnerMain(_ context.Context, e *env, _ []string) int {
	fmt.Fprintln(e.stderr, "avocado-runner-multihost: not built yet")
	return 1
}
