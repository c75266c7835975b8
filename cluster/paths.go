package cluster

import (
	"os"
	"path/filepath"
)

// DefaultClusterName is the cluster a command works on when none is named.
const DefaultClusterName = "default"

// Environment variables shared by the CLI, the runner and test bodies. The
// runner inherits the first two from the avocado process and sets all
// three for a test body, so that a body's vtcluster commands work on the
// cluster and partition the test runs on.
const (
	// EnvStateDir overrides DefaultStateDir.
	EnvStateDir = "VTCLUSTER_STATE_DIR"
	// EnvCluster overrides DefaultClusterName.
	EnvCluster = "VTCLUSTER_CLUSTER"
	// EnvPartitionFile names the partition file of the running test; the
	// CLI resolves partition tags (vtcluster exec TAG, cp TAG:PATH) through it.
	EnvPartitionFile = "VTCLUSTER_PARTITION_FILE"
	// EnvPartitionID names the running test's partition; commands a body
	// starts on nodes carry it as their owner, so the next test's
	// hand-over stops what outlives the test.
	EnvPartitionID = "VTCLUSTER_PARTITION_ID"
)

// DefaultStateDir is Avocado's default data dir plus "vtcluster"
// (~/avocado/data/vtcluster); empty when the home directory is unknown.
func DefaultStateDir() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, "avocado", "data", "vtcluster")
}
