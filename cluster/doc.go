// Package cluster is the vtcluster controller: the cluster config file,
// nodes reached over SSH, the state that survives between processes,
// partitions with leases, node properties and selectors, and the central
// log server that receives every agent's log records.
package cluster
