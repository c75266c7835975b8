package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
)

func selectCommand(e *env) *cli.Command {
	return &cli.Command{
		Name: "select",
		// Selector lists are full of commas; each flag is one value.
		DisableSliceFlagSeparator: true,
		Usage:                     "show which nodes selectors pick, from the recorded properties (exit 2 when nothing matches)",
		Description: `Evaluates selectors against what the state records of every node: the
properties collected when its agent was last started, and its static
labels. No node is contacted and nothing is reserved.

Without --tag, prints every node matching the one selector list. With
--tag, picks a distinct node for every tag at once, as "partition create"
would, and prints TAG NODE lines.

A selector list is avocado-vt's: a list of {"key", "operator", "values"}
dicts that must all match, as a Python literal (single quotes, True/False/
None) or as JSON. Operators: <, lt, >, gt, ==, eq, !=, ne, contains,
not contains, >=, ge, <=, le, in, not in, matches (a regular expression
matching the whole value).

Exit status: 0 something matched, 1 error, 2 nothing matched or the
selectors are invalid.

Examples:
   vtcluster select --selectors "[{'key': 'arch', 'operator': '==', 'values': 'x86_64'}]"
   vtcluster select --selectors '[{"key": "memory_gb", "operator": ">=", "values": 32}]' --json
   vtcluster select --tag src --tag dst --selectors "dst=[{'key': 'kvm', 'operator': '==', 'values': True}]" --selectors '[]'`,
		Flags: []cli.Flag{
			selectorsFlag(),
			&cli.StringSliceFlag{Name: "tag", Usage: "pick one distinct node for `TAG` (repeatable)"},
			&cli.BoolFlag{Name: "idle", Usage: "only consider nodes that no live partition holds"},
			jsonFlag(),
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := noArgs(cmd); err != nil {
				return err
			}
			specs := cmd.StringSlice("selectors")
			if len(specs) == 0 {
				return usageError{errors.New("select: give --selectors LIST (use '[]' to match every node)")}
			}
			tags := cmd.StringSlice("tag")
			st, s, err := loadState(ctx, cmd)
			if err != nil {
				return err
			}
			nodes := s.Nodes
			if cmd.Bool("idle") {
				nodes = s.IdleNodes(time.Now())
			}
			if len(s.Nodes) == 0 {
				return exitError{code: 2, err: fmt.Errorf("select: no nodes registered in %s", st.Path())}
			}
			warnUncollected(e, nodes)
			if len(tags) == 0 {
				return selectMatching(e, cmd, specs, nodes)
			}
			reqs, err := tagRequests(tags, specs)
			if err != nil {
				return err
			}
			choice, err := cluster.Assign(reqs, candidates(nodes))
			if isNoMatch(err) {
				return exitError{code: 2, err: fmt.Errorf("select: %w", err)}
			}
			if err != nil {
				return fmt.Errorf("select: %w", err)
			}
			if cmd.Bool(flagJSON) {
				return writeJSON(e.stdout, choice)
			}
			tw := newTable(e.stdout)
			fmt.Fprintln(tw, "TAG\tNODE")
			for _, t := range tags {
				fmt.Fprintf(tw, "%s\t%s\n", t, choice[t])
			}
			return tw.Flush()
		},
	}
}

// selectedJSON is a matching node in "select --json" without --tag.
type selectedJSON struct {
	Name       string         `json:"name"`
	Properties map[string]any `json:"properties"`
}

func selectMatching(e *env, cmd *cli.Command, specs []string, nodes []cluster.Node) error {
	if len(specs) > 1 {
		return flagError("selectors", "without --tag, give one list")
	}
	if t, _, ok := strings.Cut(specs[0], "="); ok && !strings.HasPrefix(strings.TrimSpace(specs[0]), "[") {
		return flagError("selectors", "%q names tag %q, but no --tag was given", specs[0], t)
	}
	sels, err := cluster.ParseSelectors(specs[0])
	if err != nil {
		return usageError{fmt.Errorf("--selectors: %w", err)}
	}
	var match []selectedJSON
	for _, n := range nodes {
		props := nodeProps(n)
		ok, err := cluster.MatchAll(sels, props)
		if err != nil {
			return fmt.Errorf("select: node %q: %w", n.Name, err)
		}
		if ok {
			match = append(match, selectedJSON{Name: n.Name, Properties: props})
		}
	}
	if len(match) == 0 {
		return exitError{code: 2, err: fmt.Errorf("select: no node matches %s", cluster.FormatSelectors(sels))}
	}
	if cmd.Bool(flagJSON) {
		return writeJSON(e.stdout, match)
	}
	for _, m := range match {
		fmt.Fprintln(e.stdout, m.Name)
	}
	return nil
}

// warnUncollected names nodes that selectors can only judge by labels.
func warnUncollected(e *env, nodes []cluster.Node) {
	var missing []string
	for _, n := range nodes {
		if n.Properties == nil {
			missing = append(missing, n.Name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		fmt.Fprintf(e.stderr, "vtcluster: warning: no properties collected yet for %s (only labels are known; run vtcluster agents start)\n", strings.Join(missing, ", "))
	}
}
