package cluster

import (
	"os"
	"path/filepath"
)

// DefaultClusterName is the cluster a command works on when none is named.
const DefaultClusterName = "default"

// DefaultStateDir is Avocado's default data dir plus "vtcluster"
// (~/avocado/data/vtcluster); empty when the home directory is unknown.
func DefaultStateDir() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, "avocado", "data", "vtcluster")
}
