// Package node is the node side of the resource manager: the agent's
// "resource" service, which bridge registers in the agent. It imports no
// cluster and no controller code (arch_test.go); the controller (resmgr)
// imports it for the wire's names and types.
//
// Where to start:
//   - wire.go: upstream's method names and [code, {"out": ...}] replies,
//     the typed requests they decode into, KeyError.
//   - service.go: Service, one handler per method; locking (per pool and
//     per backing, none across I/O for the record).
//   - kinds.go: the registries of pool kinds and resource types;
//     kind_fs.go, kind_nfs.go, kind_bridge.go register one kind each,
//     volume.go holds the volume operations.
//   - poolroot.go: every file operation in a pool, relative to the pool's
//     directory, never through a symlink, checked on the opened file;
//     checkPoolDir judges a pool directory at attach.
//   - store.go: the record (backings.json), written by writeState only.
//   - command.go: the one seam to the node's tools (qemu-img, ip, mount).
//
// What release deletes is only what this agent made for the backing: the
// volume file whose device and inode it recorded when it created it, the
// tap whose interface index it recorded. A file that was there before,
// or a tap named like an interface of the node, is left alone.
package node
