//go:build !vtcluster_noetcd

package etcdstore

import (
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/cluster/etcdstore/etcdtest"
)

func startEtcd(t *testing.T, size int) []*etcdtest.Member { return etcdtest.Start(t, size) }

func stateURL(members []*etcdtest.Member) string { return etcdtest.URL(members) }

func endpoints(members []*etcdtest.Member) []string { return etcdtest.Endpoints(members) }

func freePorts(t *testing.T, n int) []string { return etcdtest.FreePorts(t, n) }

// openTestStore opens the cluster's store on members, closed at the end
// of the test.
func openTestStore(t *testing.T, members []*etcdtest.Member, clusterName string) *Store {
	t.Helper()
	cfg, err := ParseURL(stateURL(members))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cluster = clusterName
	cfg.Timeout = 3 * time.Second
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
