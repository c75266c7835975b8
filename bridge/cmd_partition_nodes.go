package bridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
)

// Upstream's Python API builds a partition node by node
// (cluster.create_partition(), then partition.add_node(node)); these two
// commands let the shim do the same against the shared state, so that the
// reservation is as real as "partition create"'s.

var partitionIDArgRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func partitionAddCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "reserve named idle nodes under tags in partition ID, creating it if it does not exist",
		ArgsUsage: "ID TAG=NODE...",
		Description: `ID is 32 lowercase hex digits chosen by the caller (upstream's uuid4().hex).
A node held by another live partition is refused; nothing is reserved
unless every TAG=NODE can be.

Example:
   vtcluster partition add "$(python3 -c 'import uuid; print(uuid.uuid4().hex)')" src=node1 dst=node2`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "lease", Value: cluster.DefaultLease.String(), Usage: "hold the nodes this long unless renewed (`DURATION`)"},
			&cli.IntFlag{Name: "owner-pid", HideDefault: true, Usage: "`PID` of the owner process on this host, for a new partition (default: vtcluster's parent process)"},
			jsonFlag(),
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			args := cmd.Args().Slice()
			if len(args) < 2 {
				return usageError{errors.New("partition add: want ID TAG=NODE... (see --help)")}
			}
			id := args[0]
			if !partitionIDArgRE.MatchString(id) {
				return usageError{fmt.Errorf("partition add: ID %q is not 32 lowercase hex digits", id)}
			}
			var adds []cluster.Assignment
			for _, a := range args[1:] {
				tag, node, ok := strings.Cut(a, "=")
				if !ok || tag == "" || node == "" {
					return usageError{fmt.Errorf("partition add: %q is not TAG=NODE", a)}
				}
				adds = append(adds, cluster.Assignment{Tag: tag, Node: node})
			}
			lease, err := durationFlag(cmd, "lease")
			if err != nil {
				return err
			}
			pid := int(cmd.Int("owner-pid"))
			if pid == 0 {
				pid = os.Getppid()
			}
			owner, err := ownerOf(pid, "", "")
			if err != nil {
				return err
			}
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			// Partitions of dead owners would otherwise keep their nodes
			// recorded, and a node may be in one partition only.
			if _, err := cluster.Reclaim(ctx, st, time.Now()); err != nil {
				return fmt.Errorf("partition add: %w", err)
			}
			var out cluster.Partition
			err = st.Update(ctx, func(s *cluster.State) error {
				now := time.Now().UTC()
				p := s.Partition(id)
				if p == nil {
					s.Partitions = append(s.Partitions, cluster.Partition{
						ID: id, Owner: owner, Created: now, Renewed: now, Expires: now.Add(lease),
					})
					p = &s.Partitions[len(s.Partitions)-1]
				}
				for _, a := range adds {
					if s.Node(a.Node) == nil {
						return fmt.Errorf("node %q: %w", a.Node, cluster.ErrNodeNotFound)
					}
					if _, taken := p.NodeFor(a.Tag); taken {
						return fmt.Errorf("partition %s already has tag %q", id, a.Tag)
					}
					for _, q := range s.Partitions {
						if slices.ContainsFunc(q.Nodes, func(x cluster.Assignment) bool { return x.Node == a.Node }) {
							return &cluster.LeaseHeldError{Node: a.Node, Partition: q.ID, Owner: q.Owner, Expires: q.Expires}
						}
					}
					p.Nodes = append(p.Nodes, a)
				}
				out = *p
				return nil
			})
			if err != nil {
				return fmt.Errorf("partition add: %w", err)
			}
			if cmd.Bool(flagJSON) {
				s, err := st.Load(ctx)
				if err != nil {
					return err
				}
				return writeJSON(e.stdout, toPartitionJSON(out, s, time.Now()))
			}
			fmt.Fprintln(e.stdout, out.ID)
			return nil
		},
	}
}

func partitionRemoveNodeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "remove-node",
		Usage:     "take nodes out of partition ID; a partition left empty is released",
		ArgsUsage: "ID NODE...",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			args := cmd.Args().Slice()
			if len(args) < 2 {
				return usageError{errors.New("partition remove-node: want ID NODE... (see --help)")}
			}
			id, names := args[0], args[1:]
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			released := false
			err = st.Update(ctx, func(s *cluster.State) error {
				p := s.Partition(id)
				if p == nil {
					return fmt.Errorf("partition %s: %w", id, cluster.ErrPartitionNotFound)
				}
				for _, n := range names {
					i := slices.IndexFunc(p.Nodes, func(a cluster.Assignment) bool { return a.Node == n })
					if i < 0 {
						return fmt.Errorf("node %q is not in partition %s", n, id)
					}
					p.Nodes = slices.Delete(p.Nodes, i, i+1)
				}
				if len(p.Nodes) == 0 {
					s.Partitions = slices.DeleteFunc(s.Partitions, func(q cluster.Partition) bool { return q.ID == id })
					released = true
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("partition remove-node: %w", err)
			}
			if released {
				fmt.Fprintf(e.stderr, "partition %s is empty and was released\n", id)
			}
			return nil
		},
	}
}
