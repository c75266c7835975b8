package bridge

// vtcluster sync: the test's synchronisation from any of its processes on
// a node (runner/sync_wire.go), and the LAVA and Beaker command names as
// aliases (cmd_sync_alias.go). The runner gives the test's processes
// VTCLUSTER_SYNC_SOCKET and VTCLUSTER_SYNC_TOKEN; nothing else can use it.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/runner"
)

const flagSyncTimeout = "timeout"

func syncTimeoutFlag() cli.Flag {
	return &cli.StringFlag{Name: flagSyncTimeout, Value: "0", Usage: "give up after `DURATION` (e.g. 90s, 5m, or plain seconds; 0: only the test's timeout)"}
}

func syncTagsFlag(usage string) cli.Flag {
	return &cli.StringSliceFlag{Name: "tags", Usage: usage}
}

func syncCommand(e *env) *cli.Command {
	call := func(ctx context.Context, cmd *cli.Command, req runner.SyncRequest) (runner.SyncReply, error) {
		var d time.Duration
		if hasFlag(cmd, flagSyncTimeout) {
			var err error
			if d, err = durationFlag(cmd, flagSyncTimeout); err != nil {
				return runner.SyncReply{}, err
			}
		}
		return syncCall(ctx, req, d)
	}
	args := func(cmd *cli.Command, names ...string) ([]string, error) {
		a := cmd.Args().Slice()
		if len(a) != len(names) {
			return nil, usageError{fmt.Errorf("%s: expected %s, got %d arguments (see --help)", cmd.FullName(), strings.Join(names, " "), len(a))}
		}
		return a, nil
	}
	one := func(name, usage, arg string, flags []cli.Flag, do func(ctx context.Context, cmd *cli.Command, a []string) error, argNames ...string) *cli.Command {
		return &cli.Command{
			Name: name, Usage: usage, ArgsUsage: arg, Flags: append(flags, jsonFlag()),
			// --tags a --tags b: tags never hold commas, but keep one rule.
			DisableSliceFlagSeparator: true,
			Action: func(ctx context.Context, cmd *cli.Command) error {
				a, err := args(cmd, argNames...)
				if err != nil {
					return err
				}
				return do(ctx, cmd, a)
			},
		}
	}
	done := func(cmd *cli.Command) error {
		if cmd.Bool(flagJSON) {
			return writeJSON(e.stdout, map[string]any{"ok": true})
		}
		return nil
	}
	return &cli.Command{
		Name:  "sync",
		Usage: "barriers, messages and mutexes among a multihost test's nodes, from the test's own processes",
		Description: "Run by the processes a multihost test starts on its nodes (their environment carries\n" +
			runner.EnvSyncSocket + " and " + runner.EnvSyncToken + "). Every wait ends at once, naming the tag\n" +
			"and node, when a participant it needs is lost or finished without reaching the point;\n" +
			"exit status 1 then, 2 for a usage error. The same binary answers to lava-send, lava-wait,\n" +
			"lava-wait-all, lava-sync, lava-role, lava-group, lava-self, rhts-sync-set and\n" +
			"rhts-sync-block (see docs/sync.md).",
		Commands: []*cli.Command{
			one("barrier", "wait until every tag (or --tags) has reached barrier NAME", "NAME",
				[]cli.Flag{syncTimeoutFlag(), syncTagsFlag("the barrier's `TAGS` (default: all of the test's)")},
				func(ctx context.Context, cmd *cli.Command, a []string) error {
					_, err := call(ctx, cmd, runner.SyncRequest{Op: "barrier", Name: a[0], Tags: cmd.StringSlice("tags")})
					if err != nil {
						return err
					}
					return done(cmd)
				}, "NAME"),
			one("send", "send VALUE under KEY; it lasts the test's life", "KEY VALUE", nil,
				func(ctx context.Context, cmd *cli.Command, a []string) error {
					if _, err := call(ctx, cmd, runner.SyncRequest{Op: "send", Name: a[0], Value: a[1]}); err != nil {
						return err
					}
					return done(cmd)
				}, "KEY", "VALUE"),
			one("wait", "print the value sent under KEY, waiting for it", "KEY",
				[]cli.Flag{syncTimeoutFlag(), syncTagsFlag("wait for a value from these `TAGS` (default: any)"),
					&cli.BoolFlag{Name: "all", Usage: "wait until every tag of --tags (default: all) sent KEY; print TAG=VALUE lines"}},
				func(ctx context.Context, cmd *cli.Command, a []string) error {
					rep, err := call(ctx, cmd, runner.SyncRequest{Op: "wait", Name: a[0], Tags: cmd.StringSlice("tags"), All: cmd.Bool("all")})
					if err != nil {
						return err
					}
					if cmd.Bool(flagJSON) {
						return writeJSON(e.stdout, rep.Values)
					}
					if !cmd.Bool("all") {
						for _, v := range rep.Values {
							fmt.Fprintln(e.stdout, v)
						}
						return nil
					}
					for _, tag := range slices.Sorted(maps.Keys(rep.Values)) {
						fmt.Fprintf(e.stdout, "%s=%s\n", tag, rep.Values[tag])
					}
					return nil
				}, "KEY"),
			one("lock", "take mutex NAME, waiting while another tag holds it", "NAME", []cli.Flag{syncTimeoutFlag()},
				func(ctx context.Context, cmd *cli.Command, a []string) error {
					if _, err := call(ctx, cmd, runner.SyncRequest{Op: "lock", Name: a[0]}); err != nil {
						return err
					}
					return done(cmd)
				}, "NAME"),
			one("unlock", "free mutex NAME, which this node's tag holds", "NAME", nil,
				func(ctx context.Context, cmd *cli.Command, a []string) error {
					if _, err := call(ctx, cmd, runner.SyncRequest{Op: "unlock", Name: a[0]}); err != nil {
						return err
					}
					return done(cmd)
				}, "NAME"),
			one("info", "print this node's tag and the test's tags and nodes", "", nil,
				func(ctx context.Context, cmd *cli.Command, _ []string) error {
					rep, err := call(ctx, cmd, runner.SyncRequest{Op: "info"})
					if err != nil {
						return err
					}
					if cmd.Bool(flagJSON) {
						return writeJSON(e.stdout, rep.Info)
					}
					fmt.Fprintf(e.stdout, "tag %s node %s\n", rep.Info.Tag, rep.Info.Node)
					for _, m := range rep.Info.Members {
						fmt.Fprintf(e.stdout, "%s\t%s\t%s\n", m.Tag, m.Node, m.Address)
					}
					return nil
				}),
		},
	}
}

// placeSyncAliases puts the sync aliases beside a deployed agent (its data
// dir beside its executable: the layout vtcluster deploys), once per
// agent start, so that a test pays nothing for them; the runner puts that
// directory first in PATH of the test's processes. Without them a node's
// processes only lack the command names, so a failure is a warning.
func placeSyncAliases(e *env, dataDir string) {
	exe, err := executable()
	if err != nil || filepath.Dir(exe) != filepath.Dir(dataDir) {
		return
	}
	if err := installSyncAliases(filepath.Join(filepath.Dir(exe), runner.SyncAliasDir)); err != nil {
		fmt.Fprintf(e.stderr, "vtcluster agent: the sync commands (lava-send, ...) are not available to tests: %v\n", err)
	}
}

// installSyncAliases makes dir (0700) hold a link per alias to this
// executable, replacing what a previous binary left there.
func installSyncAliases(dir string) error {
	exe, err := executable()
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	// vtcluster itself too: the agent's directory is not in PATH.
	for _, name := range append(syncAliasNames(), "vtcluster") {
		link := filepath.Join(dir, name)
		tmp := link + ".new"
		os.Remove(tmp)
		if err := os.Symlink(exe, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, link); err != nil {
			return err
		}
	}
	return nil
}

// syncCall is one request from an alias, with its own timeout.
func syncCall(ctx context.Context, req runner.SyncRequest, timeout time.Duration) (runner.SyncReply, error) {
	c, err := runner.SyncClientFromEnv()
	if err != nil {
		return runner.SyncReply{}, err
	}
	req.Timeout = timeout.Seconds()
	ctx, stop := withSignals(ctx)
	defer stop()
	return c.Call(ctx, req)
}
