package resmgr

import (
	"sort"

	"github.com/vtcluster/vtcluster/resmgr/node"
)

// Pool kinds and resource types: the node's names (resmgr/node/wire.go).
const (
	PoolFilesystem  = node.PoolFilesystem
	PoolNFS         = node.PoolNFS
	PoolLinuxBridge = node.PoolLinuxBridge
	TypeVolume      = node.TypeVolume
	TypePort        = node.TypePort
)

// MaxVolumeSize is the largest volume accepted.
const MaxVolumeSize = node.MaxVolumeSize

// ParseSize reads a size as upstream's normalize_data_size does; see
// node.ParseSize.
func ParseSize(s string) (int64, error) { return node.ParseSize(s) }

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
