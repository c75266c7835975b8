// Package cluster is the vtcluster controller: the cluster config file,
// nodes reached over SSH, the state that survives between processes,
// partitions with leases, node properties and selectors, and the central
// log server that receives every agent's log records.
//
// Where to start reading, in the order a command meets the types:
//
//   - Config and HostConfig (config.go): the cluster file, loaded by
//     LoadConfig; a bad file is a ConfigError naming file, line and key.
//   - State, Node and AgentInfo (state.go): what is registered and where
//     each node's agent runs. A Store keeps the State between processes:
//     FileStore here (state_file.go: the nodes in a file of their own
//     beside the partitions, under one lock), package etcdstore for
//     controllers on several machines. Both build each operation's State
//     on a NodeSet they keep (state_nodes.go), so that an allocation's
//     cost does not grow with the number of nodes.
//   - Controller (controller.go): the cluster-wide operations the CLI runs
//     (Bootstrap, Deploy, StartAgents, StopAgents, Status, FetchLogs), each
//     reporting one NodeResult per node.
//   - NodeConn (node.go): one node, live: its agent Client and, when
//     needed, its sshx.Client. The agent is reached through a Transport
//     (transport.go): over an SSH tunnel to its Unix socket, or directly.
//   - Client (client.go): XML-RPC calls to an agent through package
//     agent/xmlrpc, without importing the daemon; a failed call is a
//     CallError.
//   - Partition, AllocRequest and Allocate/Renew/Release (partition.go):
//     nodes reserved for one owner under a lease, with the claims of other
//     packages reserved in the same locked update; assign.go matches the
//     request's tags to nodes (NoMatchError when none can).
//   - Selector (selector.go) and the properties (properties.go): what a
//     test may ask of a node, as upstream's selectors write it.
//   - The shared lab: the queue of waiting allocations (queue.go, Queue),
//     node health and quarantine (quarantine.go, State.NodeHealth), and
//     the nodes' own record of who holds them (owner.go, AcquireNode),
//     which stops a controller with another state from taking them.
//
// The central log server (every agent's records, read as agent/logframe
// frames, tagged with their node and handed on) is the subpackage
// logserver; it uses nothing else of cluster.
//
// Files: the SSH/SFTP layer is the subpackage sshx (sshx.Client: known_hosts,
// remote commands, sshx.RemoteExitError, uploads); copy.go (copies to and
// from nodes over sshx.SFTP), lock_linux.go (the state file's lock), paths.go (default
// state dir, cluster name and environment variables).
//
// A partition may hold claims besides its nodes (Partition.Claims, e.g.
// the resource manager's volumes and tap ports), reserved in the same
// locked Update as the nodes through AllocRequest.Reserve. When a dead
// owner's partition is reclaimed, or released with claims left, they move
// to State.Released for the package that made them to remove
// (State.TakeReleased). State.Resources is that package's opaque record.
// cluster never interprets either, so it does not depend on resmgr.
package cluster
