package bridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
      into DIR/cluster/<node>/ and stop the agents.

Both do nothing and exit 0 when no node is registered.`,
		Commands: []*cli.Command{
			{
				Name:   "pre-tests",
				Usage:  "start agents and collect node properties before a job's tests",
				Flags:  jobFlags(),
				Action: func(ctx context.Context, cmd *cli.Command) error { return hooksPreTests(ctx, e, cmd) },
			},
			{
				Name:   "post-tests",
				Usage:  "release the job's partitions, fetch agent logs and stop agents after a job's tests",
				Flags:  jobFlags(),
				Action: func(ctx context.Context, cmd *cli.Command) error { return hooksPostTests(ctx, e, cmd) },
			},
		},
	}
}

// hooksController opens the state and reports whether any node is
// registered; without nodes the hooks have nothing to do.
func hooksController(ctx context.Context, e *env, cmd *cli.Command) (*cluster.Controller, []cluster.Node, error) {
	st, err := openStore(cmd)
	if err != nil {
		return nil, nil, err
	}
	s, err := st.Load(ctx)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := controllerConfig(e, cmd)
	if err != nil {
		return nil, nil, err
	}
	return cluster.NewController(st, cfg), s.Nodes, nil
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
	// Agents that answer already were not started by us and are left
	// alone if the job fails to set up.
	var wasUp []string
	status, err := ctl.Status(ctx)
	if err != nil {
		return err
	}
	for _, s := range status {
		if s.AgentUp {
			wasUp = append(wasUp, s.Name)
		}
	}
	results, err := ctl.StartAgents(ctx)
	if err == nil {
		return nil
	}
	var started []string
	for _, r := range results {
		if r.OK && !contains(wasUp, r.Node) {
			started = append(started, r.Node)
		}
	}
	if len(started) > 0 {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer scancel()
		if _, serr := ctl.StopAgents(sctx, started...); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the agents started before the failure: %w", serr))
		}
	}
	return fmt.Errorf("setting up the cluster for job %s failed: %w", cmd.String("job-id"), err)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hooksPostTests(ctx context.Context, e *env, cmd *cli.Command) error {
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
		return nil
	}
	jobID := cmd.String("job-id")
	var errs []error
	parts, err := cluster.ListPartitions(ctx, ctl.Store())
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range parts {
		if p.Owner.JobID != jobID {
			continue
		}
		if err := cluster.Release(ctx, ctl.Store(), p.ID); err != nil && !errors.Is(err, cluster.ErrPartitionNotFound) {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(e.stderr, "vtcluster: released partition %s left by test %s\n", p.ID, p.Owner.TestID)
		}
	}
	logdir := cmd.String("job-logdir")
	if _, err := ctl.FetchLogs(ctx, func(node string) string {
		return filepath.Join(logdir, "cluster", node)
	}); err != nil {
		errs = append(errs, fmt.Errorf("fetching agent logs: %w", err))
	}
	if _, err := ctl.StopAgents(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stopping agents: %w", err))
	}
	if _, err := os.Stat(logdir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
