package bridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
)

func agentsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "agents",
		Usage:     "deploy, start, stop and check the agents of registered nodes",
		UsageText: "vtcluster agents deploy|start|stop|status|cleanup [NODE...]",
		Description: `Works on the named nodes, or on every registered node when none is named,
in parallel. Agents are started detached on their nodes: they keep running
after this command (and the SSH connection) ends, until "agents stop".

Starting an agent also collects the node's properties (hostname, CPU,
memory, kernel, kvm...) into the cluster state, where "vtcluster select" and
partition selectors read them.

Examples:
   vtcluster agents start                 # what Avocado's pre-tests hook runs
   vtcluster agents status node1 --json
   vtcluster agents stop
   vtcluster agents deploy node4          # after "vtcluster node add node4 ..."
   vtcluster agents cleanup node4         # stop it and remove everything deployed`,
		Commands: []*cli.Command{
			agentsDeployCommand(e),
			agentsStartCommand(e),
			agentsStatusCommand(e),
			agentsStopCommand(e),
			agentsCleanupCommand(e),
		},
	}
}

func agentsDeployCommand(e *env) *cli.Command {
	return agentsOpCommand(e, "deploy", "upload the agent binary to registered nodes (skipped where it is already current)",
		[]cli.Flag{agentBinaryFlag()}, 10*time.Minute, "deploy", (*cluster.Controller).Deploy)
}

func agentsStartCommand(e *env) *cli.Command {
	return agentsOpCommand(e, "start", "start the agents (reusing any that already answer) and collect node properties",
		nil, 2*time.Minute, "agents start", (*cluster.Controller).StartAgents)
}

func agentsStopCommand(e *env) *cli.Command {
	return agentsOpCommand(e, "stop", "stop the agents; a node whose agent is not running is not an error",
		nil, 2*time.Minute, "agents stop", (*cluster.Controller).StopAgents)
}

// agentsOpCommand is an agents subcommand that runs op on the named nodes
// (all registered ones by default), SSH and parallelism flags after its
// own, with a default timeout of the whole run.
func agentsOpCommand(e *env, name, usage string, own []cli.Flag, timeout time.Duration, what string,
	op func(*cluster.Controller, context.Context, ...string) ([]cluster.NodeResult, error)) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "[NODE...]",
		Flags:     slices.Concat(own, sshFlags(), []cli.Flag{parallelFlag(), timeoutFlag(timeout), jsonFlag()}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			return runAgentsOp(ctx, e, cmd, what, func(c *cluster.Controller, ctx context.Context, names []string) ([]cluster.NodeResult, error) {
				return op(c, ctx, names...)
			})
		},
	}
}

func agentsCleanupCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "cleanup",
		Usage:     "stop the agents and remove their directories (binary, data, logs) from the nodes",
		ArgsUsage: "[NODE...]",
		Description: `Undoes "bootstrap"/"agents deploy" on the nodes: stops the agent if it runs,
then removes <agent_base_dir>/<node name> on the node, and nothing else.
The nodes stay registered ("vtcluster node remove --cleanup" does both).

Refused, before any node is touched, while a live partition of someone else
holds one of the nodes: a test may be using its agent. Partitions of the
caller are fine: those whose owner (by default the shell that ran
"vtcluster partition create") is this command or one of its ancestors, so
wrappers such as timeout or nice change nothing; those named with
--partition or in $VTCLUSTER_PARTITION_ID; and, inside a test body, the
test's own.

Example:
   timeout 90 vtcluster agents cleanup --partition "$id" node1`,
		DisableSliceFlagSeparator: true,
		Flags: slices.Concat(sshFlags(), []cli.Flag{
			parallelFlag(), timeoutFlag(2 * time.Minute), jsonFlag(),
			&cli.StringSliceFlag{Name: "partition", Usage: "partition `ID` that is the caller's own (repeatable; also $VTCLUSTER_PARTITION_ID)"},
		}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			return runAgentsOp(ctx, e, cmd, "agents cleanup", func(c *cluster.Controller, ctx context.Context, names []string) ([]cluster.NodeResult, error) {
				return cleanupOwnAgents(ctx, c, cmd.StringSlice("partition"), names)
			})
		},
	}
}

// cleanupOwnAgents is CleanupAgents with the caller's own partitions
// (ownPartitions, plus named); a refusal says how to claim one's own.
func cleanupOwnAgents(ctx context.Context, c *cluster.Controller, named, names []string) ([]cluster.NodeResult, error) {
	own, err := ownPartitions(ctx, c.Store(), named)
	if err != nil {
		return nil, err
	}
	res, err := c.CleanupAgents(ctx, own, names...)
	var held *cluster.NodeHeldError
	if errors.As(err, &held) {
		err = fmt.Errorf("%w\nif that partition is yours, name it: VTCLUSTER_PARTITION_ID=%s, or vtcluster agents cleanup --partition %s (one created from this shell or a parent of it is recognised as yours)", err, held.Partition, held.Partition)
	}
	return res, err
}

// ownPartitions lists the live partitions the caller holds: named (flag or
// $VTCLUSTER_PARTITION_ID), the test's own inside a test body, and those
// whose owner process is this one or an ancestor of it.
func ownPartitions(ctx context.Context, st cluster.Store, named []string) ([]string, error) {
	own := slices.Clone(named)
	if id := os.Getenv("VTCLUSTER_PARTITION_ID"); id != "" {
		own = append(own, id)
	}
	if pf := os.Getenv(envPartitionFile); pf != "" {
		p, err := readPartitionFile(pf)
		if err != nil {
			return nil, err
		}
		own = append(own, p.ID)
	}
	parts, err := cluster.ListPartitions(ctx, st)
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		if p.Owner.IsAncestorOf(os.Getpid()) {
			own = append(own, p.ID)
		}
	}
	return own, nil
}

type agentsOp func(c *cluster.Controller, ctx context.Context, names []string) ([]cluster.NodeResult, error)

func runAgentsOp(ctx context.Context, e *env, cmd *cli.Command, what string, op agentsOp) error {
	st, cfg, err := storeAndConfig(e, cmd)
	if err != nil {
		return err
	}
	if hasFlag(cmd, flagAgentBinary) {
		if cfg.Binary, err = agentBinary(ctx, e, cmd); err != nil {
			return err
		}
	}
	ctx, cancel, err := withTimeout(ctx, cmd)
	if err != nil {
		return err
	}
	defer cancel()
	results, err := op(cluster.NewController(st, cfg), ctx, cmd.Args().Slice())
	if results == nil && err != nil {
		return fmt.Errorf("%s: %w", what, err) // nothing was attempted
	}
	if perr := printResults(e, cmd.Bool(flagJSON), results); perr != nil {
		return perr
	}
	return resultsError(what, results, err)
}

func agentsStatusCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "check which agents answer; exits 1 when any named (or registered) agent is down",
		ArgsUsage: "[NODE...]",
		Flags:     slices.Concat(sshFlags(), []cli.Flag{parallelFlag(), timeoutFlag(30 * time.Second), jsonFlag()}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			rows, err := probeNodes(ctx, e, cmd)
			if err != nil {
				return err
			}
			if cmd.Bool(flagJSON) {
				out := make([]agentStatusJSON, len(rows))
				for i, r := range rows {
					out[i] = agentStatusJSON{Node: r.Name, Address: r.Address, AgentBind: r.Bind, Up: r.AgentUp, Error: r.AgentError}
				}
				if err := writeJSON(e.stdout, out); err != nil {
					return err
				}
			} else {
				tw := newTable(e.stdout)
				fmt.Fprintln(tw, "NODE\tADDRESS\tBIND\tAGENT\tDETAIL")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Address, r.Bind, upDown(r.AgentUp), firstLine(r.AgentError))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			down := 0
			for _, r := range rows {
				if !r.AgentUp {
					down++
				}
			}
			if down > 0 {
				return fmt.Errorf("agents status: %d of %d agents are down (start them with: vtcluster agents start)", down, len(rows))
			}
			return nil
		},
	}
}

// agentStatusJSON is one row of "agents status --json".
type agentStatusJSON struct {
	Node      string `json:"node"`
	Address   string `json:"address"`
	AgentBind string `json:"agent_bind"`
	Up        bool   `json:"up"`
	Error     string `json:"error,omitempty"`
}

// probeNodes asks every node's agent whether it is alive and returns the
// rows of the nodes named on the command line (all when none is).
func probeNodes(ctx context.Context, e *env, cmd *cli.Command) ([]cluster.NodeStatus, error) {
	st, cfg, err := storeAndConfig(e, cmd)
	if err != nil {
		return nil, err
	}
	cfg.Progress = nil // one table, not a line per probe
	ctx, cancel, err := withTimeout(ctx, cmd)
	if err != nil {
		return nil, err
	}
	defer cancel()
	c := cluster.NewController(st, cfg)
	names := cmd.Args().Slice()
	if _, err := c.Nodes(ctx, names...); err != nil { // unknown names fail before any probe
		return nil, err
	}
	rows, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, cluster.ErrNoNodes
	}
	if len(names) > 0 {
		rows = slices.DeleteFunc(rows, func(r cluster.NodeStatus) bool { return !slices.Contains(names, r.Name) })
	}
	return rows, nil
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}
