package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
)

func partitionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "partition",
		Usage:     "reserve nodes for a tag set, list and release reservations",
		UsageText: "vtcluster partition create|list|renew|release ...",
		Description: `A partition reserves one distinct node per tag for an owner process, across
every process on this host: two partitions never share a node. It is held
while its owner runs and its lease lasts; after that the next allocation
(or "release --all-dead") reclaims it.

The owner of "partition create" is the process that ran vtcluster (its
parent: a shell, a script, a runner), or --owner-pid.

Examples:
   vtcluster partition create --tag src --tag dst
   vtcluster partition create --tag src --tag dst --selectors "dst=[{'key': 'kvm', 'operator': '==', 'values': True}]"
   vtcluster partition create --tag vm --selectors '[{"key": "memory_gb", "operator": ">=", "values": 32}]' --wait 10m
   vtcluster partition list
   vtcluster partition release 3f2a...   # or: --all-dead`,
		Commands: []*cli.Command{
			partitionAddCommand(e),
			partitionCreateCommand(e),
			partitionListCommand(e),
			partitionReleaseCommand(e),
			partitionRemoveNodeCommand(e),
			partitionRenewCommand(e),
		},
	}
}

// selectorsFlag is shared by "partition create" and "select".
func selectorsFlag() cli.Flag {
	return &cli.StringSliceFlag{
		Name: "selectors",
		Usage: "`[TAG=]LIST`: a selector list (avocado-vt's Python literal or JSON) for TAG; " +
			"without TAG= it applies to every tag that has none of its own (repeatable)",
	}
}

// tagRequests pairs each tag with its selectors from --selectors.
func tagRequests(tags []string, specs []string) ([]cluster.TagRequest, error) {
	byTag := map[string][]cluster.Selector{}
	var common []cluster.Selector
	haveCommon := false
	for _, spec := range specs {
		tag, list := "", spec
		if t, rest, ok := strings.Cut(spec, "="); ok && slices.Contains(tags, t) {
			tag, list = t, rest
		} else if !strings.HasPrefix(strings.TrimSpace(spec), "[") {
			return nil, flagError("selectors", "%q: want TAG=LIST with TAG one of the requested tags (%s), or a LIST starting with '['", spec, strings.Join(tags, ", "))
		}
		sels, err := cluster.ParseSelectors(list)
		if err != nil {
			return nil, usageError{fmt.Errorf("--selectors: %w", err)}
		}
		switch _, dup := byTag[tag]; {
		case tag == "" && haveCommon:
			return nil, flagError("selectors", "two lists without TAG=; give each tag its own with TAG=LIST")
		case tag == "":
			common, haveCommon = sels, true
		case dup:
			return nil, flagError("selectors", "tag %q has two lists", tag)
		default:
			byTag[tag] = sels
		}
	}
	reqs := make([]cluster.TagRequest, len(tags))
	for i, t := range tags {
		sels, ok := byTag[t]
		if !ok {
			sels = common
		}
		reqs[i] = cluster.TagRequest{Tag: t, Selectors: sels}
	}
	return reqs, nil
}

// nodeProps is what selectors see of a node: the collected properties and
// the static labels.
func nodeProps(n cluster.Node) map[string]any {
	props := make(map[string]any, len(n.Properties)+len(n.Labels))
	maps.Copy(props, n.Labels)
	maps.Copy(props, n.Properties)
	return props
}

func candidates(nodes []cluster.Node) []cluster.Candidate {
	out := make([]cluster.Candidate, len(nodes))
	for i, n := range nodes {
		out[i] = cluster.Candidate{Name: n.Name, Props: nodeProps(n)}
	}
	return out
}

func partitionCreateCommand(e *env) *cli.Command {
	return &cli.Command{
		Name: "create",
		// Selector lists are full of commas; each flag is one value.
		DisableSliceFlagSeparator: true,
		Usage:                     "reserve one node per --tag; prints the partition id (exit 2 when no registered node can ever match)",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "tag", Required: true, Usage: "`TAG` the test knows a node by, e.g. src (repeatable, one node each)"},
			selectorsFlag(),
			&cli.StringFlag{Name: "lease", Value: cluster.DefaultLease.String(), Usage: "hold the nodes this long unless renewed (`DURATION`)"},
			&cli.StringFlag{Name: "wait", Value: "0s", Usage: "wait up to `DURATION` for busy nodes to become idle"},
			&cli.IntFlag{Name: "owner-pid", HideDefault: true, Usage: "`PID` of the owner process on this host (default: vtcluster's parent process)"},
			&cli.StringFlag{Name: "job-id", Usage: "Avocado job `ID` recorded in the owner"},
			&cli.StringFlag{Name: "test-id", Usage: "test `ID` recorded in the owner"},
			jsonFlag(),
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := noArgs(cmd); err != nil {
				return err
			}
			tags := cmd.StringSlice("tag")
			reqs, err := tagRequests(tags, cmd.StringSlice("selectors"))
			if err != nil {
				return err
			}
			lease, err := durationFlag(cmd, "lease")
			if err != nil {
				return err
			}
			wait, err := durationFlag(cmd, "wait")
			if err != nil {
				return err
			}
			pid := int(cmd.Int("owner-pid"))
			if pid == 0 {
				pid = os.Getppid()
			}
			owner, err := ownerOf(pid, cmd.String("job-id"), cmd.String("test-id"))
			if err != nil {
				return err
			}
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			ctx, stop := withSignals(ctx) // an interrupted --wait allocates nothing
			defer stop()
			p, err := cluster.Allocate(ctx, st, cluster.AllocRequest{
				Owner: owner, Tags: tags, Lease: lease, Wait: wait,
				// Reclaims and waits are worth a line: they explain where
				// nodes came from, or why the command is not done yet.
				Logger: newLineLogger(e.stderr, slog.LevelInfo),
				Choose: func(idle []cluster.Node) (map[string]string, error) {
					return cluster.Assign(reqs, candidates(idle))
				},
			})
			if isNoMatch(err) {
				return exitError{code: 2, err: fmt.Errorf("partition create: %w", err)}
			}
			if errors.Is(err, cluster.ErrBusy) && wait == 0 {
				return fmt.Errorf("partition create: %w (wait with --wait DURATION)", err)
			}
			if errors.Is(err, cluster.ErrBusy) {
				return fmt.Errorf("partition create: %w (still busy after --wait %s)", err, wait)
			}
			if err != nil {
				return fmt.Errorf("partition create: %w", err)
			}
			s, err := st.Load(ctx)
			if err != nil {
				return err
			}
			if cmd.Bool(flagJSON) {
				return writeJSON(e.stdout, toPartitionJSON(*p, s, time.Now()))
			}
			fmt.Fprintln(e.stdout, p.ID)
			var parts []string
			for _, a := range p.Nodes {
				parts = append(parts, a.Tag+"="+a.Node)
			}
			fmt.Fprintf(e.stderr, "partition %s: %s, held by %s until %s\n", p.ID, strings.Join(parts, " "), p.Owner, p.Expires.Local().Format(time.DateTime))
			return nil
		},
	}
}

// ownerOf describes process pid on this host as a partition owner.
func ownerOf(pid int, jobID, testID string) (cluster.Owner, error) {
	o, err := cluster.ProcessOwner(pid, jobID, testID)
	if err != nil {
		return o, flagError("owner-pid", "%v", err)
	}
	return o, nil
}

// partitionJSON is a partition in --json output.
type partitionJSON struct {
	ID               string              `json:"id"`
	Owner            ownerJSON           `json:"owner"`
	Nodes            []partitionNodeJSON `json:"nodes"`
	Created          time.Time           `json:"created"`
	Renewed          time.Time           `json:"renewed"`
	Expires          time.Time           `json:"expires"`
	LeaseSecondsLeft float64             `json:"lease_seconds_left"`
	// Hold is set while the partition is held for debugging.
	Hold *heldJSON `json:"held_for_debugging,omitempty"`
}

type ownerJSON struct {
	JobID  string `json:"job_id,omitempty"`
	TestID string `json:"test_id,omitempty"`
	Host   string `json:"host"`
	PID    int    `json:"pid"`
}

type partitionNodeJSON struct {
	Tag     string `json:"tag"`
	Node    string `json:"node"`
	Address string `json:"address,omitempty"`
}

func toPartitionJSON(p cluster.Partition, s *cluster.State, now time.Time) partitionJSON {
	out := partitionJSON{
		ID:    p.ID,
		Owner: ownerJSON{JobID: p.Owner.JobID, TestID: p.Owner.TestID, Host: p.Owner.Host, PID: p.Owner.PID},
		Nodes: []partitionNodeJSON{}, Created: p.Created, Renewed: p.Renewed, Expires: p.Expires,
		LeaseSecondsLeft: max(0, p.Expires.Sub(now).Seconds()),
		Hold:             toHeldJSON(p, now),
	}
	for _, a := range p.Nodes {
		pn := partitionNodeJSON{Tag: a.Tag, Node: a.Node}
		if n := s.Node(a.Node); n != nil {
			pn.Address = n.Host()
		}
		out.Nodes = append(out.Nodes, pn)
	}
	return out
}

func partitionListCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the recorded partitions, expired ones included until reclaimed",
		Flags: []cli.Flag{jsonFlag()},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := noArgs(cmd); err != nil {
				return err
			}
			_, s, err := loadState(ctx, cmd)
			if err != nil {
				return err
			}
			now := time.Now()
			if cmd.Bool(flagJSON) {
				out := make([]partitionJSON, len(s.Partitions))
				for i, p := range s.Partitions {
					out[i] = toPartitionJSON(p, s, now)
				}
				return writeJSON(e.stdout, out)
			}
			if len(s.Partitions) == 0 {
				fmt.Fprintln(e.stderr, "no partitions")
				return nil
			}
			tw := newTable(e.stdout)
			fmt.Fprintln(tw, "ID\tNODES\tOWNER\tLEASE LEFT")
			for _, p := range s.Partitions {
				var parts []string
				for _, a := range p.Nodes {
					parts = append(parts, a.Tag+"="+a.Node)
				}
				owner := p.Owner.String()
				if p.Hold != nil {
					owner = "held for debugging: " + p.Hold.Test
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ID, strings.Join(parts, " "), owner, formatLease(p.Expires.Sub(now).Seconds()))
			}
			return tw.Flush()
		},
	}
}

func partitionReleaseCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "release",
		Usage:     "free partitions by id, or every partition whose owner is gone or whose lease expired",
		ArgsUsage: "ID... | --all-dead",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all-dead", Usage: "release every partition whose owner process on this host is gone or whose lease has expired"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			ids := cmd.Args().Slice()
			allDead := cmd.Bool("all-dead")
			if allDead == (len(ids) > 0) {
				return usageError{errors.New("partition release: give partition IDs or --all-dead, not both or neither")}
			}
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			// Volumes and taps the released partitions still claimed.
			defer sweepResources(ctx, e, cmd)
			if allDead {
				gone, err := cluster.Reclaim(ctx, st, time.Now())
				if err != nil {
					return fmt.Errorf("partition release: %w", err)
				}
				for _, p := range gone {
					fmt.Fprintf(e.stdout, "released %s (owner %s)\n", p.ID, p.Owner)
				}
				if len(gone) == 0 {
					fmt.Fprintln(e.stderr, "no dead partitions")
				}
				return nil
			}
			var errs []error
			for _, id := range ids {
				err := cluster.Release(ctx, st, id)
				if errors.Is(err, cluster.ErrPartitionNotFound) {
					err = fmt.Errorf("partition %s not found: already released or reclaimed? (see vtcluster partition list)", id)
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(e.stdout, "released %s\n", id)
			}
			if len(errs) > 0 {
				return fmt.Errorf("partition release: %w", errors.Join(errs...))
			}
			return nil
		},
	}
}

func partitionRenewCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "renew",
		Usage:     "extend a partition's lease from now",
		ArgsUsage: "ID",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "lease", Value: cluster.DefaultLease.String(), Usage: "new lease `DURATION`, counted from now"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 1 {
				return usageError{errors.New("partition renew: want exactly one partition ID")}
			}
			lease, err := durationFlag(cmd, "lease")
			if err != nil {
				return err
			}
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			p, err := cluster.Renew(ctx, st, cmd.Args().First(), lease)
			if err != nil {
				return fmt.Errorf("partition renew: %w", err)
			}
			fmt.Fprintf(e.stderr, "partition %s held until %s\n", p.ID, p.Expires.Local().Format(time.DateTime))
			return nil
		},
	}
}
