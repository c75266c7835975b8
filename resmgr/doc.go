// Package resmgr is the resource manager's controller side: storage pools
// (filesystem, NFS), networks (Linux bridges), the file volumes and tap
// ports in them, across nodes and per test, with avocado-vt's vt_resmgr
// API and wire. The node side, the agent's "resource" service, is
// resmgr/node.
//
// The controller side (manager.go, config.go) keeps pools and resources in
// cluster.State.Resources, the same store and lock as the partitions. A
// test's resources are reserved in the same Update as its nodes (Reserve,
// partition.go), recorded as the partition's claims, made real on the
// nodes by Acquire and removed by ReleasePartition; the claims of a
// partition reclaimed from a dead owner are removed by Sweep.
package resmgr
