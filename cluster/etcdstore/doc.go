// Package etcdstore keeps a cluster's state in etcd, so that controllers
// on several machines share one lab without handing a node to two tests.
//
// Layout under the cluster's root key (<prefix>/<cluster>):
//
//	doc              every State field but nodes and partitions, as JSON
//	nodes/<name>     one node: {"seq": registration order, "value": Node}
//	nodes-changed    put with every change to nodes/, for readers' node caches
//	partitions/<id>  one partition, bound to the partition's etcd lease
//	holders/<node>   the id of the partition holding node, same lease
//
// Store.Update is optimistic: it reads everything at one revision, runs
// the caller's function, and saves the difference in one transaction that
// only commits if every key it writes, the holders of every node it
// touches, the records of those nodes and the doc key are still as read;
// otherwise it reads again and retries. One that creates or changes a
// partition also requires that no partition was created or changed since
// the read, so rules across partitions hold as under the file store's
// lock. An allocation therefore commits
// only if the holders of its nodes are still absent: never a read followed
// by an unguarded write. A partition's keys live as long as its lease: the
// owner's renewals (Renew, through Update) move them to a fresh lease, and
// an owner that dies or loses etcd stops renewing, so etcd deletes them
// when the TTL passes, with no reclaim step and no process checks across
// machines.
//
// Fields added to cluster.State, Node or Partition need no code here:
// nodes and partitions are stored whole, and every other top-level field
// goes into the doc key.
//
// Built with the tag vtcluster_noetcd (bin/vtcluster-agent of make
// build, the binary deployed as the nodes' agent), the package leaves the
// etcd client out, so the agent keeps the memory it had before: Go runs
// every linked package's initialisation at start-up, whichever command
// runs.
//
// A transaction whose answer never comes (etcd stopped, the network
// lost) may still be applied, and its writer, which reported an error,
// will never release what it wrote. New partitions are therefore written
// with a provisional lease, a second longer than the timeout, and moved
// to a lease of their wanted TTL once the writer knows the transaction
// committed: keys of a save that failed go by themselves within seconds.
// The one exception is an answer lost on that second transaction, which
// may leave the partition until its wanted TTL.
package etcdstore
