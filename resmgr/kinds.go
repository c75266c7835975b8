package resmgr

import (
	"maps"
	"slices"

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

// poolKind is what the controller knows of one kind of pool: the type
// of resource it holds. (Its node half is resmgr/node's registry.)
type poolKind struct {
	holds string
}

var poolKinds = map[string]poolKind{
	PoolFilesystem:  {holds: TypeVolume},
	PoolNFS:         {holds: TypeVolume},
	PoolLinuxBridge: {holds: TypePort},
}

// resourceTypes are the types of resource, in the order errors list them.
var resourceTypes = []string{TypeVolume, TypePort}

// supports says whether a kind of pool holds a type of resource.
func supports(poolType, resType string) bool {
	k, ok := poolKinds[poolType]
	return ok && k.holds == resType
}

func checkResourceType(t string) error {
	if !slices.Contains(resourceTypes, t) {
		return &UnknownResourceTypeError{Type: t}
	}
	return nil
}

// sortedKeys are m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
