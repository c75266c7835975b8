package bridge

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
)

func logsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "receive agents' log streams, or fetch agents' log files",
		UsageText: "vtcluster logs serve|fetch ...",
		Description: `"serve" is avocado-vt's LoggerServer: agents told to stream their logs there
(core.start_log_redirection HOST PORT) send records that are printed as
"<tag>(<ip>) <asctime> <name> <levelname> | <msg>", with their own level and
traceback. "fetch" copies each agent's log directory to this machine.

Examples:
   vtcluster logs serve --listen 192.168.122.1:8888 --dir /tmp/node-logs
   vtcluster call node1 core.start_log_redirection '"192.168.122.1"' 8888
   vtcluster logs fetch --dir ./agent-logs node1 node2`,
		Commands: []*cli.Command{
			logsFetchCommand(e),
			logsServeCommand(e),
		},
	}
}

func logsServeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name: "serve",
		// One IP=TAG per flag, as everywhere else.
		DisableSliceFlagSeparator: true,
		Usage:                     "run a log server until SIGINT or SIGTERM, printing one unified line per record",
		Description: `Records are tagged with the registered node whose address sent them (its
name), or with --node IP=TAG; "Unknown" otherwise, as upstream. The
listening address is printed on stderr once the server is ready.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:0", Usage: "`ADDR` to listen on, host:port (port 0 picks a free one)"},
			&cli.StringFlag{Name: "dir", TakesFile: true, Usage: "also append each node's lines to `DIR`/<tag>.log"},
			&cli.StringSliceFlag{Name: "node", Usage: "tag records from `IP=TAG` (repeatable; overrides the registered name)"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := noArgs(cmd); err != nil {
				return err
			}
			tags, err := logTags(ctx, cmd)
			if err != nil {
				return err
			}
			cfg := cluster.DefaultLogServerConfig()
			cfg.Addr = cmd.String("listen")
			cfg.Out = e.stdout
			cfg.Logger = stderrLogger(e)
			if d := cmd.String("dir"); d != "" {
				abs, err := filepath.Abs(d)
				if err != nil {
					return flagError("dir", "%v", err)
				}
				cfg.NodeDir = func(string) string { return abs }
			}
			srv, err := cluster.NewLogServer(cfg)
			if err != nil {
				return fmt.Errorf("logs serve: %w", err)
			}
			defer srv.Close()
			for _, ip := range slices.Sorted(maps.Keys(tags)) {
				if err := srv.RegisterNode(ip, tags[ip]); err != nil {
					return fmt.Errorf("logs serve: %w", err)
				}
			}
			ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := srv.Start(ctx); err != nil {
				return fmt.Errorf("logs serve: %w", err)
			}
			fmt.Fprintf(e.stderr, "vtcluster: log server listening on %s\n", srv.Addr())
			<-ctx.Done()
			err = srv.Close()
			st := srv.Stats()
			fmt.Fprintf(e.stderr, "vtcluster: log server stopped: %d records from %d connections\n", st.Records, st.Connections)
			if err != nil {
				return fmt.Errorf("logs serve: %w", err)
			}
			return nil
		},
	}
}

// logTags maps node addresses to tags: registered nodes by name, then the
// --node overrides. A node known by host name only is left to --node.
func logTags(ctx context.Context, cmd *cli.Command) (map[string]string, error) {
	tags := map[string]string{}
	st, err := openStore(cmd)
	if err != nil {
		return nil, err
	}
	s, err := st.Load(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range s.Nodes {
		if a, err := netip.ParseAddr(n.Host()); err == nil {
			tags[a.Unmap().String()] = n.Name
		}
	}
	for _, kv := range cmd.StringSlice("node") {
		ip, tag, ok := strings.Cut(kv, "=")
		a, err := netip.ParseAddr(ip)
		if !ok || err != nil || tag == "" {
			return nil, flagError("node", "%q is not IP=TAG", kv)
		}
		tags[a.Unmap().String()] = tag
	}
	return tags, nil
}

func logsFetchCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "fetch",
		Usage:     "copy every named node's agent log directory into DIR/<node>/",
		ArgsUsage: "[NODE...]",
		Flags: slices.Concat([]cli.Flag{
			&cli.StringFlag{Name: "dir", Required: true, TakesFile: true, Usage: "local `DIR` to copy into"},
		}, sshFlags(), []cli.Flag{parallelFlag(), timeoutFlag(5 * time.Minute), jsonFlag()}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			dir, err := filepath.Abs(cmd.String("dir"))
			if err != nil {
				return flagError("dir", "%v", err)
			}
			return runAgentsOp(ctx, e, cmd, "logs fetch", func(c *cluster.Controller, ctx context.Context, names []string) ([]cluster.NodeResult, error) {
				return c.FetchLogs(ctx, func(node string) string { return filepath.Join(dir, node) }, names...)
			})
		},
	}
}
