package bridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
)

// hooksCommand holds what the shim's job hooks run before and after the
// tests of an Avocado job. Both are no-ops when no cluster is configured.
func hooksCommand(e *env) *cli.Command {
	jobFlags := func() []cli.Flag {
		return []cli.Flag{
			&cli.StringFlag{Name: "job-id", Required: true, Usage: "the Avocado job's unique `ID`"},
			&cli.StringFlag{Name: "job-logdir", Required: true, TakesFile: true, Usage: "the job's results `DIR`"},
			timeoutFlag(10 * time.Minute),
			parallelFlag(),
			connectTimeoutFlag(),
		}
	}
	return &cli.Command{
		Name:  "hooks",
		Usage: "job pre/post hooks called by the Avocado plugin (pre-tests, post-tests)",
		Description: `Called by the avocado-framework-plugin-multihost job hooks:

   vtcluster hooks pre-tests --job-id ID --job-logdir DIR
      start every registered node's agent in parallel and collect node
      properties; on failure, stop the agents this call started and exit 1.

   vtcluster hooks post-tests --job-id ID --job-logdir DIR
      release every partition this job still holds, fetch each agent's log
      into DIR/cluster/<node>/ and stop the agents, all nodes in parallel.
      A node that does not accept a connection within a few seconds is
      skipped and named once (the job's test already failed on it), so a
      lost node does not hold the job up.

Both do nothing and exit 0 when no node is registered.`,
		Commands: []*cli.Command{
			{
				Name:   "pre-tests",
				Usage:  "start agents and collect node properties before a job's tests",
				Flags:  append(jobFlags(), quarantineAfterFlag()),
				Action: func(ctx context.Context, cmd *cli.Command) error { return hooksPreTests(ctx, e, cmd) },
			},
			{
				Name:   "post-tests",
				Usage:  "release the job's partitions, fetch agent logs and stop agents after a job's tests",
				Flags:  jobFlags(),
				Action: func(ctx context.Context, cmd *cli.Command) error { return hooksPostTests(ctx, e, cmd) },
			},
			holderCommand(e),
		},
	}
}

// hooksController opens the state and reports whether any node is
// registered; without nodes the hooks have nothing to do.
func hooksController(ctx context.Context, e *env, cmd *cli.Command) (*cluster.Controller, []cluster.Node, error) {
	st, s, err := loadState(ctx, cmd)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := controllerConfig(e, cmd)
	if err != nil {
		return nil, nil, err
	}
	return cluster.NewController(st, cfg), s.Nodes, nil
}

// jobOwner names the avocado process the hook runs for: the hook's parent.
// Its liveness decides whether another job still needs the agents.
func jobOwner(jobID string) (cluster.Owner, error) {
	return cluster.ProcessOwner(os.Getppid(), jobID, "")
}

func hooksPreTests(ctx context.Context, e *env, cmd *cli.Command) error {
	ctx, cancel, err := withTimeout(ctx, cmd)
	if err != nil {
		return err
	}
	defer cancel()
	ctl, nodes, err := hooksController(ctx, e, cmd)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		fmt.Fprintln(e.stderr, "vtcluster: no cluster configured; nothing to start")
		return nil
	}
	jobID := cmd.String("job-id")
	owner, err := jobOwner(jobID)
	if err != nil {
		return err
	}
	var others []cluster.Owner
	if err := ctl.Store().Update(ctx, func(s *cluster.State) error {
		others = s.AddAgentUser(owner)
		return nil
	}); err != nil {
		return err
	}
	// Agents that answer already were started by someone else and are
	// left alone if this job fails to set up.
	status, err := ctl.Status(ctx)
	if err != nil {
		return err
	}
	var wasUp []string
	for _, s := range status {
		if s.AgentUp {
			wasUp = append(wasUp, s.Name)
		}
	}
	// Quarantined nodes are left alone; agents that will not start count
	// towards quarantine (cmd_queue.go).
	start, err := nodesInRotation(ctx, e, ctl, nodes)
	if err != nil {
		return err
	}
	results, err := ctl.StartAgents(ctx, start...)
	err = noteAgentFailures(ctx, e, ctl.Store(), results, err, int(cmd.Int(flagQuarantineAfter)))
	if err == nil {
		if err = outOfRotation(ctx, ctl.Store(), resourcesStartup(ctx, e, cmd)); err == nil {
			if herr := startHolder(ctx, jobID, owner, cmd.String("job-logdir"), nodes); herr != nil {
				fmt.Fprintf(e.stderr, "vtcluster: tests will connect to their nodes one by one: %v\n", herr)
			}
			return nil
		}
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer ccancel()
	var left []cluster.Owner
	if uerr := ctl.Store().Update(cctx, func(s *cluster.State) error {
		left = s.RemoveAgentUser(jobID)
		return nil
	}); uerr != nil {
		err = errors.Join(err, uerr)
	}
	var started []string
	for _, r := range results {
		if r.OK && !contains(wasUp, r.Node) {
			started = append(started, r.Node)
		}
	}
	if len(started) > 0 && len(left) == 0 && len(others) == 0 {
		if _, serr := ctl.StopAgents(cctx, started...); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the agents started before the failure: %w", serr))
		}
	}
	return fmt.Errorf("setting up the cluster for job %s failed: %w", jobID, err)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// unreachableAfter is how long the post-tests hook waits for a node to
// accept a connection before it counts the node as gone. A node on the
// same network answers a TCP connect in milliseconds; a downed link leaves
// the connect hanging for the full SSH timeout, once per step.
const unreachableAfter = 3 * time.Second

func hooksPostTests(ctx context.Context, e *env, cmd *cli.Command) error {
	ctx, cancel, err := withTimeout(ctx, cmd)
	if err != nil {
		return err
	}
	defer cancel()
	writeJobTimelines(e, cmd.String("job-logdir"))
	ctl, nodes, err := hooksController(ctx, e, cmd)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return nil
	}
	jobID := cmd.String("job-id")
	quitHolder(ctx, jobID)
	var errs []error
	parts, err := cluster.ListPartitions(ctx, ctl.Store())
	if err != nil {
		errs = append(errs, err)
	}
	// Partitions held for debugging stay, with their resources (hold.go).
	heldIDs := map[string]bool{}
	for _, p := range parts {
		if p.Owner.JobID != jobID {
			continue
		}
		if p.Hold != nil && p.Live(time.Now()) {
			heldIDs[p.ID] = true
			continue
		}
		if err := cluster.Release(ctx, ctl.Store(), p.ID); err != nil && !errors.Is(err, cluster.ErrPartitionNotFound) {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(e.stderr, "vtcluster: released partition %s left by test %s\n", p.ID, p.Owner.TestID)
		}
	}
	if err := removeJobResourcesExcept(ctx, e, cmd, jobID, heldIDs); err != nil {
		errs = append(errs, err)
	}
	logdir := cmd.String("job-logdir")
	// One quick probe finds the nodes that are gone, so that log fetch
	// and agent stop, each parallel over nodes, do not each wait a full
	// SSH connect timeout on them.
	probe, err := durationFlag(cmd, flagConnectTimeout)
	if err != nil {
		return err
	}
	up, down, err := ctl.Reachable(ctx, min(probe, unreachableAfter))
	if err != nil {
		return err
	}
	for _, r := range down {
		errs = append(errs, fmt.Errorf("%w; its agent log was not fetched and its agent not stopped", r.Err()))
	}
	if len(up) > 0 {
		if _, err := ctl.FetchLogs(ctx, func(node string) string {
			return filepath.Join(logdir, "cluster", node)
		}, up...); err != nil {
			errs = append(errs, fmt.Errorf("fetching agent logs: %w", err))
		}
	}
	// The last job to finish stops the agents; a job still running (or a
	// partition someone still holds) keeps them up.
	var left []cluster.Owner
	var held []cluster.Partition
	var debug []cluster.Partition
	var state *cluster.State
	if err := ctl.Store().Update(ctx, func(s *cluster.State) error {
		left = s.RemoveAgentUser(jobID)
		now := time.Now()
		for _, p := range s.Partitions {
			if gone, _ := p.Owner.Gone(); p.Live(now) && (p.Hold != nil || !gone && p.Owner.JobID != jobID) {
				held = append(held, p)
			}
		}
		debug, state = s.Held(now), s
		return nil
	}); err != nil {
		errs = append(errs, err)
	}
	if state != nil {
		printHolds(e.stdout, slices.DeleteFunc(debug, func(p cluster.Partition) bool { return !heldIDs[p.ID] }), state, stateArgv(cmd), time.Now())
	}
	switch {
	case len(left) > 0:
		fmt.Fprintf(e.stderr, "vtcluster: agents left running for job %s (%s)\n", left[0].JobID, left[0])
	case len(held) > 0:
		fmt.Fprintf(e.stderr, "vtcluster: agents left running: partition %s is held by %s\n", held[0].ID, held[0].Owner)
	default:
		if err := resourcesTeardown(ctx, e, cmd, jobID, down); err != nil {
			errs = append(errs, err)
		}
		if len(up) == 0 {
			break
		}
		if _, err := ctl.StopAgents(ctx, up...); err != nil {
			errs = append(errs, fmt.Errorf("stopping agents: %w", err))
		}
	}
	if _, err := os.Stat(logdir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
