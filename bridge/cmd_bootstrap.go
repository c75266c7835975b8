package bridge

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/resmgr"
)

const flagClusterConfig = "vt-cluster-config"

func bootstrapCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "bootstrap",
		Usage:     "register the hosts of a cluster config and deploy the agent to each",
		UsageText: "vtcluster bootstrap --vt-cluster-config FILE [--accept-new-host-keys] [options]",
		Description: `Reads an avocado-vt cluster config (the file given to vt-bootstrap
--vt-cluster-config), validates all of it, then logs into every host in
parallel and uploads the agent into <agent_base_dir>/<name>/ on the
host: the agent-only build vtcluster-agent beside this executable when it
is the same build, else this executable (--agent-binary chooses). A host
that already has the same binary (same SHA-256) is not uploaded to again.

Hosts that succeed are registered in the cluster state even when others
fail; the command then exits 1. Passwords in the config are used for this
login only and are never stored; with --install-key, the host's key_file
is authorized for its user at that login, so no later command needs the
password.

Progress goes to stderr, one line per host; the summary to stdout.

Examples:
   vtcluster bootstrap --vt-cluster-config cluster.json
   vtcluster bootstrap --vt-cluster-config cluster.json --accept-new-host-keys
   vtcluster bootstrap --vt-cluster-config with-passwords.json --install-key
   vtcluster --state-dir /tmp/vtc bootstrap --vt-cluster-config lab.json --json`,
		Flags: slices.Concat([]cli.Flag{
			&cli.StringFlag{
				Name: flagClusterConfig, Required: true, TakesFile: true,
				Usage: "`FILE`: the avocado-vt cluster JSON (hosts, pools) with vtcluster's extensions",
			},
			&cli.BoolFlag{
				Name: "install-key",
				Usage: "on hosts given a password, authorize the public half of their key_file for the login user " +
					"(like ssh-copy-id), so later commands log in by key and the password is never needed again",
			},
			agentBinaryFlag(),
		}, sshFlags(), []cli.Flag{parallelFlag(), timeoutFlag(10 * time.Minute), jsonFlag()}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := noArgs(cmd); err != nil {
				return err
			}
			return runBootstrap(ctx, e, cmd)
		},
	}
}

func runBootstrap(ctx context.Context, e *env, cmd *cli.Command) error {
	conf, err := cluster.LoadConfig(cmd.String(flagClusterConfig))
	if err != nil {
		return fmt.Errorf("bootstrap: invalid cluster config, nothing was done:\n%w", err)
	}
	for _, w := range conf.Warnings {
		fmt.Fprintf(e.stderr, "vtcluster: warning: %s\n", w)
	}
	if len(conf.Hosts) == 0 {
		return fmt.Errorf("bootstrap: %s has no hosts", conf.File)
	}
	hostNames := make([]string, len(conf.Hosts))
	for i, h := range conf.Hosts {
		hostNames[i] = h.Name
	}
	if err := resmgr.ValidatePools(conf.Pools, hostNames); err != nil {
		return fmt.Errorf("bootstrap: invalid cluster config, nothing was done: %s: %w", conf.File, err)
	}
	st, cfg, err := storeAndConfig(e, cmd)
	if err != nil {
		return err
	}
	if cfg.Binary, err = agentBinary(ctx, e, cmd); err != nil {
		return err
	}
	cfg.InstallKeys = cmd.Bool("install-key")
	ctx, cancel, err := withTimeout(ctx, cmd)
	if err != nil {
		return err
	}
	defer cancel()
	results, err := cluster.NewController(st, cfg).Bootstrap(ctx, conf)
	if perr := printResults(e, cmd.Bool(flagJSON), results); perr != nil {
		return perr
	}
	if err := resultsError("bootstrap", results, err); err != nil {
		return err
	}
	// upstream's _setup_managers: the pools section plus default pools.
	m := resmgr.NewManager(st, resmgr.ConnectDialer(cfg.Connect), stderrLogger(e))
	defer m.Close()
	if err := m.Setup(ctx, conf.Pools); err != nil {
		return fmt.Errorf("bootstrap: pools: %w", err)
	}
	if !cmd.Bool(flagJSON) {
		fmt.Fprintf(e.stderr, "registered %d nodes in %s; start their agents with: vtcluster agents start\n", len(results), st.Path())
	}
	return nil
}
