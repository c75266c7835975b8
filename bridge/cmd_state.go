package bridge

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/etcdstore"
)

func stateCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "state",
		Usage: "manage where the cluster state lives",
		Description: `The state (registered nodes, partitions, pools, resources) lives in a
JSON file per cluster under --state-dir (default ~/avocado/data/vtcluster),
or in etcd with --state etcd://HOST:PORT[,HOST:PORT...]/PREFIX, which
several controllers can share.

Examples:
   vtcluster state migrate --from file:///root/avocado/data/vtcluster --to etcd://10.0.0.5:2379/vt`,
		Commands: []*cli.Command{stateMigrateCommand(e)},
	}
}

func stateMigrateCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "copy a cluster's nodes from one state store to another, e.g. from the state file to etcd",
		Description: `Copies the cluster's registered nodes (with their labels, properties and
agents) and everything else the state records, but no partitions: run it
when no test holds nodes. The target must not know the cluster yet; the
source is left as it was. Then point every controller at the target with
--state or $VTCLUSTER_STATE (multihost.state in Avocado's settings).

Examples:
   vtcluster --cluster lab state migrate --from file://$HOME/avocado/data/vtcluster --to etcd://etcd1:2379,etcd2:2379,etcd3:2379/vtcluster`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Required: true, Usage: "`URL` of the store to copy from (file:///dir, etcd://...)"},
			&cli.StringFlag{Name: "to", Required: true, Usage: "`URL` of the store to copy to"},
			timeoutFlag(time.Minute),
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := noArgs(cmd); err != nil {
				return err
			}
			ctx, cancel, err := withTimeout(ctx, cmd)
			if err != nil {
				return err
			}
			defer cancel()
			from, err := openStateSpec(cmd, cmd.String("from"))
			if err != nil {
				return err
			}
			to, err := openStateSpec(cmd, cmd.String("to"))
			if err != nil {
				return err
			}
			defer etcdstore.CloseStore(from)
			defer etcdstore.CloseStore(to)
			src, err := from.Load(ctx)
			if err != nil {
				return err
			}
			if len(src.Nodes) == 0 {
				return fmt.Errorf("state migrate: %s has no nodes: nothing to migrate (is --cluster right?)", from.Path())
			}
			now := time.Now()
			for _, p := range src.Partitions {
				if p.Live(now) {
					return fmt.Errorf("state migrate: partition %s in %s is held by %s: migrate when no test holds nodes (or release it with vtcluster partition release)", p.ID, from.Path(), p.Owner)
				}
			}
			err = to.Update(ctx, func(s *cluster.State) error {
				if len(s.Nodes) > 0 || len(s.Partitions) > 0 {
					return fmt.Errorf("state migrate: %s already has %d nodes and %d partitions; migrate only into a cluster it does not know", to.Path(), len(s.Nodes), len(s.Partitions))
				}
				*s = *src
				s.Partitions = nil
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "copied %d nodes from %s to %s; point controllers at it with --state or $%s\n", len(src.Nodes), from.Path(), to.Path(), envState)
			return nil
		},
	}
}
