// Package resmgr is the resource manager's controller side: storage pools
// (filesystem, NFS), networks (Linux bridges), the file volumes and tap
// ports in them, across nodes and per test, with avocado-vt's vt_resmgr
// API and wire. The node side, the agent's "resource" service, is
// resmgr/node; this package imports it for the wire's names and types.
//
// Where to start:
//   - manager.go: Manager, its node connections, and the read (snapshot),
//     call (call, callInto) and write (update, commit) steps every
//     operation is made of.
//   - pools.go, resources.go: the public operations (upstream's vt_resmgr
//     API and the job hooks); each reads the state once, calls the nodes,
//     and writes once (clone and Acquire twice, so a crash leaves what was
//     made recorded).
//   - record.go: the persisted model (Pool, Resource, Binding) and the
//     claims that tie resources to partitions.
//   - partition.go: a test's resources. Reserve picks pools and records
//     the resources in the same cluster Update as the partition's nodes
//     (its claims); Acquire binds and allocates them and returns
//     []Acquired; ReleasePartition removes them; Sweep removes those of
//     partitions reclaimed from dead owners.
//   - config.go: upstream's pool and resource configs, byte for byte.
//   - kinds.go: the registry of pool kinds; kind_fs.go, kind_nfs.go and
//     kind_bridge.go register the controller half of one kind each.
//   - errors.go: the typed errors (NotFoundError, NoPoolError,
//     NotConnectedError, CapacityError, RefusedError, ...); public
//     methods add the "resmgr: " prefix once (Error).
//
// Pools and resources live in cluster.State.Resources, the same store and
// lock as the partitions.
//
// For the VM service: Acquired is one acquired resource on one node:
// Node; a volume's Path and Format (qcow2 or raw); a port's Ifname (the
// tap on Node) and MAC (the guest NIC's address, unique per port). The
// runner passes Acquire's slice on unchanged (runner.acquiredResource is
// an alias). docs/resources.md has the details.
package resmgr
