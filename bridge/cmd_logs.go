package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/logserver"
)

func logsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "receive agents' log streams, or fetch agents' log files",
		UsageText: "vtcluster logs serve|fetch ...",
		Description: `"serve" is avocado-vt's LoggerServer: agents told to stream their logs there
(core.start_log_redirection HOST PORT) send records that are printed as
upstream's unified line, with their own level and traceback:
"<asctime> logserver L<lineno> <levelname> | <node>(<ip>) <asctime> <name> <levelname> | <msg>".
"fetch" copies each agent's log directory to this machine.

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
name), or with --node IP=TAG; "Unknown" otherwise, as upstream. The sender
is looked up in the cluster state per connection, so nodes registered after
the server started are named too. The listening address is printed on
stderr once the server is ready.

Each line is the controller half (when this server got the record, its
level) then the worker half, as avocado-vt's test logs show records from
its LoggerServer; --worker-only prints the worker half alone, which is
what LoggerServer's own message is.

Anyone who can reach the address can send records, so every field of a
record is escaped (none can start a line), one address holds at most 8
connections, idle ones are closed after --idle-timeout, and --dir files are
never opened through a symlink.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:0", Usage: "`ADDR` to listen on, host:port (port 0 picks a free one)"},
			&cli.StringFlag{Name: "dir", TakesFile: true, Usage: "also append each node's lines to `DIR`/<tag>.log"},
			&cli.StringSliceFlag{Name: "node", Usage: "tag records from `IP=TAG` (repeatable; overrides the registered name)"},
			&cli.BoolFlag{Name: "worker-only", Usage: "print only the worker half of each line: <node>(<ip>) <asctime> <name> <levelname> | <msg>"},
			&cli.StringFlag{Name: "idle-timeout", Value: "5m", Usage: "close a sender that sent no record for `DURATION` (0: never), so idle connections cannot hold every slot"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := noArgs(cmd); err != nil {
				return err
			}
			tags, err := logTags(cmd)
			if err != nil {
				return err
			}
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			if _, err := st.Load(ctx); err != nil {
				return err // a broken state is said now, not per connection
			}
			cfg := logserver.DefaultConfig()
			cfg.Lookup = stateLookup(ctx, st, stderrLogger(e))
			cfg.ControllerHalf = !cmd.Bool("worker-only")
			cfg.Addr = cmd.String("listen")
			if cfg.IdleTimeout, err = durationFlag(cmd, "idle-timeout"); err != nil {
				return err
			}
			cfg.Out = e.stdout
			cfg.Logger = stderrLogger(e)
			if d := cmd.String("dir"); d != "" {
				abs, err := filepath.Abs(d)
				if err != nil {
					return flagError("dir", "%v", err)
				}
				cfg.NodeDir = func(string) string { return abs }
			}
			srv, err := logserver.New(cfg)
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
			stats := srv.Stats()
			fmt.Fprintf(e.stderr, "vtcluster: log server stopped: %d records from %d connections\n", stats.Records, stats.Connections)
			if err != nil {
				return fmt.Errorf("logs serve: %w", err)
			}
			return nil
		},
	}
}

// logTags reads the --node IP=TAG overrides.
func logTags(cmd *cli.Command) (map[string]string, error) {
	tags := map[string]string{}
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

// stateLookup names the registered node at an address, reading the state
// again on each call: the log server calls it only for an address it has
// no name for yet, once per connection. A node registered by host name is
// resolved, within a bound, so it is named as well.
func stateLookup(ctx context.Context, st cluster.Store, log *slog.Logger) func(ip string) (string, bool) {
	return func(ip string) (string, bool) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := st.Load(ctx)
		if err != nil {
			log.Warn("logs serve: cannot read the cluster state to name a sender", "addr", ip, "err", err)
			return "", false
		}
		for _, n := range s.Nodes {
			if a, err := netip.ParseAddr(n.Host()); err == nil && a.Unmap().String() == ip {
				return n.Name, true
			}
		}
		for _, n := range s.Nodes {
			if _, err := netip.ParseAddr(n.Host()); err == nil {
				continue
			}
			addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", n.Host())
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if a.Unmap().String() == ip {
					return n.Name, true
				}
			}
		}
		return "", false
	}
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
