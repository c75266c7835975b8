// Package cluster is the vtcluster controller: the cluster config file,
// nodes reached over SSH, the state that survives between processes,
// partitions with leases, node properties and selectors, and the central
// log server that receives every agent's log records.
//
// A partition may hold claims besides its nodes (Partition.Claims, e.g.
// the resource manager's volumes and tap ports), reserved in the same
// locked Update as the nodes through AllocRequest.Reserve. When a dead
// owner's partition is reclaimed, or released with claims left, they move
// to State.Released for the package that made them to remove
// (State.TakeReleased). State.Resources is that package's opaque record.
// cluster never interprets either, so it does not depend on resmgr.
package cluster
