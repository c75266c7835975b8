//go:build vtcluster_noetcd

package etcdstore

import "errors"

// Linked says whether this build has the etcd client.
const Linked = false

// openEtcd of a build without the etcd client (bin/vtcluster-agent of
// make build: the agent-only binary whose memory the client's packages do
// not grow).
func openEtcd(Config) (Opened, error) {
	return nil, errors.New("this vtcluster was built without etcd support (tag vtcluster_noetcd, an agent-only build); use the full build for etcd:// state")
}
