package resmgr

import (
	"maps"
	"slices"

	"github.com/tidwall/gjson"

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

// poolKind is what the controller knows of one kind of pool; each kind
// registers itself from its own file (kind_fs.go, kind_nfs.go,
// kind_bridge.go), and its node half is resmgr/node's registry.
type poolKind struct {
	// holds is the type of resource the pool's backings are.
	holds string
	// fromParams reads the kind's members of upstream's pool parameters
	// into c.Spec.
	fromParams func(c *PoolConfig, p gjson.Result) error
	// nodeConfig is the pool config one node is sent (upstream's
	// customize_pool_config); pick chooses a per-node value. Nil: the
	// config as it is.
	nodeConfig func(c PoolConfig, pick func(map[string]any) any) map[string]any
	// attached records what a node answered create_pool_connection with;
	// nil: nothing to record.
	attached func(p *Pool, node string, out node.PoolReply)
}

var poolKinds = map[string]poolKind{}

func registerPoolKind(name string, k poolKind) { poolKinds[name] = k }

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
