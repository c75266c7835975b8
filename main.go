// Command vtcluster is the multi-host test orchestrator for Avocado: the
// controller CLI, the node agent and, when invoked as
// avocado-runner-multihost, the nrunner runner. Everything lives in bridge.
package main

import (
	"context"
	"os"

	"github.com/vtcluster/vtcluster/bridge"
)

func main() {
	os.Exit(bridge.Main(context.Background(), os.Args, os.Stdin, os.Stdout, os.Stderr))
}
