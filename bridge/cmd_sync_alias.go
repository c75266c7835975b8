package bridge

// The LAVA and Beaker multi-host commands, answered by this binary when it
// is started under their names (the runner links them into a directory it
// puts first in PATH of the test's processes), so scripts written for
// those labs run unchanged on the test's sync service. Arguments and
// outputs follow LAVA's multinode API and Beaker's rhts sync commands; a
// tag is LAVA's role and Beaker's host (a host may also be named by its
// node name or address). Exit status: 0 done, 1 failed (a peer lost or
// finished, a timeout), 2 usage.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vtcluster/vtcluster/runner"
)

type syncAlias struct {
	usage string
	run   func(ctx context.Context, e *env, args []string) error
}

// syncAliases are the command names the binary answers to, by argv[0].
var syncAliases = map[string]syncAlias{
	"lava-send":       {"lava-send MESSAGE-ID [KEY=VALUE ...]", lavaSend},
	"lava-wait":       {"lava-wait MESSAGE-ID", lavaWait},
	"lava-wait-all":   {"lava-wait-all MESSAGE-ID [ROLE]", lavaWaitAll},
	"lava-sync":       {"lava-sync MESSAGE-ID", lavaSync},
	"lava-role":       {"lava-role [list]", lavaRole},
	"lava-group":      {"lava-group [ROLE]", lavaGroup},
	"lava-self":       {"lava-self", lavaSelf},
	"rhts-sync-set":   {"rhts-sync-set -s STATE", rhtsSyncSet},
	"rhts-sync-block": {"rhts-sync-block -s STATE [-s STATE ...] [--timeout SECONDS] HOST ...", rhtsSyncBlock},
}

func syncAliasNames() []string {
	names := make([]string, 0, len(syncAliases))
	for n := range syncAliases {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// syncAliasMain runs alias name with args (after argv[0]).
func syncAliasMain(ctx context.Context, e *env, name string, args []string) int {
	a := syncAliases[name]
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprintf(e.stdout, "usage: %s\n(vtcluster's %s: see docs/sync.md)\n", a.usage, name)
		return 0
	}
	err := a.run(ctx, e, args)
	if err == nil {
		return 0
	}
	fmt.Fprintf(e.stderr, "%s: %v\n", name, err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "usage: %s\n", a.usage)
		return 2
	}
	return 1
}

func aliasUsage(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// lavaCacheFile is where lava-wait and lava-wait-all leave the message
// data, as LAVA does; LAVA_MULTI_NODE_CACHE overrides it.
func lavaCacheFile() string {
	if p := os.Getenv("LAVA_MULTI_NODE_CACHE"); p != "" {
		return p
	}
	return "/tmp/lava_multi_node_cache.txt"
}

// writeLavaCache replaces the cache file with lines, never following a
// link someone planted and never writing into another user's file.
func writeLavaCache(lines []string) error {
	path := lavaCacheFile()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("message cache %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("message cache %s belongs to another user (uid %d): remove it or set LAVA_MULTI_NODE_CACHE", path, st.Uid)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("message cache %s is not a regular file", path)
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	_, err = f.WriteString(b.String())
	return err
}

// dataLines are the KEY=VALUE lines of a lava-send value.
func dataLines(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, "\n")
}

func lavaSend(ctx context.Context, _ *env, args []string) error {
	if len(args) < 1 {
		return aliasUsage("a message id is required")
	}
	for _, kv := range args[1:] {
		if !strings.Contains(kv, "=") || strings.Contains(kv, "\n") {
			return aliasUsage("message data %q is not KEY=VALUE on one line", kv)
		}
	}
	_, err := syncCall(ctx, runner.SyncRequest{Op: "send", Name: args[0], Value: strings.Join(args[1:], "\n")}, 0)
	return err
}

func lavaWait(ctx context.Context, _ *env, args []string) error {
	if len(args) != 1 {
		return aliasUsage("expected one message id")
	}
	rep, err := syncCall(ctx, runner.SyncRequest{Op: "wait", Name: args[0], Others: true}, 0)
	if err != nil {
		return err
	}
	var lines []string
	for _, v := range rep.Values {
		lines = append(lines, dataLines(v)...)
	}
	return writeLavaCache(lines)
}

// waitAllLines waits until every tag of tags (nil: every other) sent id
// and returns the cache lines, device:KEY=VALUE, in tag order.
func waitAllLines(ctx context.Context, id string, tags []string) ([]string, error) {
	info, err := syncInfo(ctx)
	if err != nil {
		return nil, err
	}
	rep, err := syncCall(ctx, runner.SyncRequest{Op: "wait", Name: id, Tags: tags, All: true, Others: true}, 0)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, m := range info.Members {
		v, ok := rep.Values[m.Tag]
		if !ok {
			continue
		}
		for _, l := range dataLines(v) {
			lines = append(lines, m.Node+":"+l)
		}
	}
	return lines, nil
}

func lavaWaitAll(ctx context.Context, _ *env, args []string) error {
	if len(args) != 1 && len(args) != 2 {
		return aliasUsage("expected a message id and optionally a role")
	}
	var tags []string
	if len(args) == 2 {
		tags = []string{args[1]}
	}
	lines, err := waitAllLines(ctx, args[0], tags)
	if err != nil {
		return err
	}
	return writeLavaCache(lines)
}

func lavaSync(ctx context.Context, _ *env, args []string) error {
	if len(args) != 1 {
		return aliasUsage("expected one message id")
	}
	if _, err := syncCall(ctx, runner.SyncRequest{Op: "send", Name: args[0]}, 0); err != nil {
		return err
	}
	_, err := waitAllLines(ctx, args[0], nil)
	return err
}

func syncInfo(ctx context.Context) (*runner.SyncInfo, error) {
	rep, err := syncCall(ctx, runner.SyncRequest{Op: "info"}, 0)
	if err != nil {
		return nil, err
	}
	return rep.Info, nil
}

func lavaRole(ctx context.Context, e *env, args []string) error {
	if len(args) > 1 || len(args) == 1 && args[0] != "list" {
		return aliasUsage("the only argument is \"list\"")
	}
	info, err := syncInfo(ctx)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		fmt.Fprintln(e.stdout, info.Tag)
		return nil
	}
	for _, m := range info.Members {
		fmt.Fprintln(e.stdout, m.Tag)
	}
	return nil
}

func lavaGroup(ctx context.Context, e *env, args []string) error {
	if len(args) > 1 {
		return aliasUsage("expected at most a role")
	}
	info, err := syncInfo(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, m := range info.Members {
		switch {
		case len(args) == 0:
			fmt.Fprintf(e.stdout, "\t%s\t%s\n", m.Node, m.Tag)
		case m.Tag == args[0]:
			fmt.Fprintln(e.stdout, m.Node)
			found = true
		}
	}
	if len(args) == 1 && !found {
		return fmt.Errorf("no role %q in this test", args[0])
	}
	return nil
}

func lavaSelf(ctx context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return aliasUsage("takes no arguments")
	}
	info, err := syncInfo(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, info.Node)
	return nil
}

// rhtsKey is the message a Beaker state is sent as.
func rhtsKey(state string) string { return "rhts:" + state }

func rhtsSyncSet(ctx context.Context, _ *env, args []string) error {
	var state string
	switch {
	case len(args) == 2 && args[0] == "-s":
		state = args[1]
	case len(args) == 1 && strings.HasPrefix(args[0], "-s") && len(args[0]) > 2:
		state = args[0][2:]
	default:
		return aliasUsage("expected -s STATE")
	}
	_, err := syncCall(ctx, runner.SyncRequest{Op: "send", Name: rhtsKey(state), Value: state}, 0)
	return err
}

func rhtsSyncBlock(ctx context.Context, _ *env, args []string) error {
	var states, hosts []string
	timeout := time.Duration(0)
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() (string, error) {
			if v, ok := strings.CutPrefix(a, "--timeout="); ok {
				return v, nil
			}
			if i+1 >= len(args) {
				return "", aliasUsage("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		switch {
		case a == "-s" || a == "--state":
			v, err := val()
			if err != nil {
				return err
			}
			states = append(states, v)
		case strings.HasPrefix(a, "-s") && len(a) > 2:
			states = append(states, a[2:])
		case a == "--timeout" || strings.HasPrefix(a, "--timeout="):
			v, err := val()
			if err != nil {
				return err
			}
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || n < 0 {
				return aliasUsage("--timeout takes seconds, got %q", v)
			}
			timeout = time.Duration(n * float64(time.Second))
		case strings.HasPrefix(a, "-"):
			return aliasUsage("unknown option %s", a)
		default:
			hosts = append(hosts, a)
		}
	}
	if len(states) == 0 || len(hosts) == 0 {
		return aliasUsage("expected at least one -s STATE and one HOST")
	}
	info, err := syncInfo(ctx)
	if err != nil {
		return err
	}
	var tags []string
	for _, h := range hosts {
		tag := ""
		for _, m := range info.Members {
			if h == m.Tag || h == m.Node || h == m.Address {
				tag = m.Tag
			}
		}
		if tag == "" {
			return fmt.Errorf("host %q is not one of this test's (tags, node names or addresses)", h)
		}
		if !slices.Contains(tags, tag) {
			tags = append(tags, tag)
		}
	}
	keys := make([]string, len(states))
	for i, s := range states {
		keys[i] = rhtsKey(s)
	}
	_, err = syncCall(ctx, runner.SyncRequest{Op: "wait", Keys: keys, Tags: tags, All: true}, timeout)
	return err
}
