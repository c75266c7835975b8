package bridge

// The shared-lab commands: the allocation queue, and taking nodes out of
// rotation and back (cluster/queue.go, cluster/quarantine.go).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
)

func queueCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "queue",
		Usage: "list the allocations waiting for nodes, in the order they will be served",
		Description: `Every test (or "partition create --wait") that waits for nodes is queued in
the cluster state, shared by every process and, on etcd, every controller.
Requests are served by rank, then arrival: the rank is the request's
priority (multihost.priority) plus one for every minute waited, so nothing
waits for ever. The requests ahead of one keep the idle nodes they need,
so a large request is not passed by a stream of small ones.

Each entry shows who waits (pid, host, job, test), since when, its tags
and selectors, the nodes that would fit each tag and who holds them.

Examples:
   vtcluster queue
   vtcluster queue --json`,
		Flags: []cli.Flag{jsonFlag()},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := noArgs(cmd); err != nil {
				return err
			}
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			q, err := cluster.Queue(ctx, st)
			if err != nil {
				return err
			}
			if cmd.Bool(flagJSON) {
				return writeJSON(e.stdout, queueJSONOf(q))
			}
			return writeQueue(e.stdout, q)
		},
	}
}

// queueJSON is one waiting request of "queue --json".
type queueJSON struct {
	Position int                 `json:"position"`
	ID       string              `json:"id"`
	Owner    string              `json:"owner"`
	Host     string              `json:"host"`
	PID      int                 `json:"pid"`
	JobID    string              `json:"job_id,omitempty"`
	TestID   string              `json:"test_id,omitempty"`
	Since    time.Time           `json:"since"`
	Waited   float64             `json:"waited_seconds"`
	Priority int                 `json:"priority"`
	Rank     int                 `json:"rank"`
	Tags     []queueTagJSON      `json:"tags"`
	Fit      map[string][]string `json:"fit"`
	Holders  map[string]string   `json:"holders"`
}

type queueTagJSON struct {
	Tag       string `json:"tag"`
	Selectors string `json:"selectors"`
}

func queueJSONOf(q []cluster.QueueView) []queueJSON {
	out := make([]queueJSON, 0, len(q))
	for _, v := range q {
		j := queueJSON{
			Position: v.Position, ID: v.ID, Owner: v.Owner.String(), Host: v.Owner.Host, PID: v.Owner.PID,
			JobID: v.Owner.JobID, TestID: v.Owner.TestID, Since: v.Since, Waited: time.Since(v.Since).Round(time.Second).Seconds(),
			Priority: v.Priority, Rank: v.Rank, Fit: v.Fit, Holders: v.Holders,
		}
		for _, t := range v.Tags {
			j.Tags = append(j.Tags, queueTagJSON{Tag: t.Tag, Selectors: t.Selectors})
		}
		out = append(out, j)
	}
	return out
}

func writeQueue(w io.Writer, q []cluster.QueueView) error {
	if len(q) == 0 {
		_, err := fmt.Fprintln(w, "no allocation is waiting")
		return err
	}
	for _, v := range q {
		fmt.Fprintf(w, "%d. %s, waiting %s (since %s), priority %d, rank %d\n", v.Position, v.Owner,
			time.Since(v.Since).Round(time.Second), v.Since.Local().Format(time.DateTime), v.Priority, v.Rank)
		for _, t := range v.Tags {
			sel := t.Selectors
			if sel == "" {
				sel = "any node"
			}
			fmt.Fprintf(w, "   tag %s (%s): fits %s\n", t.Tag, sel, dash(strings.Join(v.Fit[t.Tag], ", ")))
		}
		names := make([]string, 0, len(v.Holders))
		for n := range v.Holders {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(w, "   %s: %s\n", n, v.Holders[n])
		}
	}
	return nil
}

func nodeResumeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "resume",
		Usage:     "return quarantined nodes to rotation and forget their failures",
		ArgsUsage: "NAME...",
		Description: `A node that failed to serve several times in a row (its agent would not
start, it was lost during tests, its hand-over failed) is quarantined:
no test gets it, and "vtcluster status" shows why. Once it is fixed,
resume gives it back.

Examples:
   vtcluster node resume node3`,
		Flags: []cli.Flag{jsonFlag()},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			names := cmd.Args().Slice()
			if len(names) == 0 {
				return usageError{errors.New("node resume: want at least one NAME (see --help)")}
			}
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			type row struct {
				Node        string `json:"node"`
				Quarantined bool   `json:"was_quarantined"`
			}
			var rows []row
			for _, n := range names {
				was, err := cluster.ResumeNode(ctx, st, n)
				if err != nil {
					return fmt.Errorf("node resume: %w", err)
				}
				rows = append(rows, row{n, was})
				if !cmd.Bool(flagJSON) {
					if was {
						fmt.Fprintf(e.stderr, "%s is back in rotation\n", n)
					} else {
						fmt.Fprintf(e.stderr, "%s was not quarantined; its failure count is reset\n", n)
					}
				}
			}
			if cmd.Bool(flagJSON) {
				return writeJSON(e.stdout, rows)
			}
			return nil
		},
	}
}

func nodeQuarantineCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "quarantine",
		Usage:     "take a node out of rotation by hand, with a reason",
		ArgsUsage: "NAME",
		Description: `Tests already on the node finish; no new test gets it until
"vtcluster node resume NAME".

Examples:
   vtcluster node quarantine node3 --reason "disk errors, ticket LAB-42"`,
		Flags: []cli.Flag{&cli.StringFlag{Name: "reason", Usage: "why, for whoever finds the node out of rotation", Required: true}},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 1 {
				return usageError{errors.New("node quarantine: want one NAME (see --help)")}
			}
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			name := cmd.Args().First()
			if err := cluster.QuarantineNode(ctx, st, name, cmd.String("reason")); err != nil {
				return fmt.Errorf("node quarantine: %w", err)
			}
			fmt.Fprintf(e.stderr, "%s is out of rotation; vtcluster node resume %s returns it\n", name, name)
			return nil
		},
	}
}

// healthJSON is a node's health in "status --json".
type healthJSON struct {
	Quarantined      bool   `json:"quarantined,omitempty"`
	QuarantineReason string `json:"quarantine_reason,omitempty"`
	FailuresInARow   int    `json:"failures_in_a_row,omitempty"`
	LastFailure      string `json:"last_failure,omitempty"`
	TakenBy          string `json:"held_by_other_controller,omitempty"`
}

func healthJSONOf(h *cluster.NodeHealth) healthJSON {
	if h == nil {
		return healthJSON{}
	}
	j := healthJSON{Quarantined: h.Quarantined, QuarantineReason: h.QuarantineReason, FailuresInARow: h.FailuresInARow, LastFailure: h.LastFailure}
	if h.TakenBy != nil && time.Now().Before(h.TakenUntil) {
		j.TakenBy = h.TakenBy.Owner.String()
	}
	return j
}

// labSections loads what status shows below its table: node health by
// name and the queue.
func labSections(ctx context.Context, cmd *cli.Command) (map[string]*cluster.NodeHealth, []cluster.QueueView, error) {
	st, err := openStore(cmd)
	if err != nil {
		return nil, nil, err
	}
	s, err := st.Load(ctx)
	if err != nil {
		return nil, nil, err
	}
	health := map[string]*cluster.NodeHealth{}
	for i := range s.NodeHealth {
		health[s.NodeHealth[i].Node] = &s.NodeHealth[i]
	}
	q, err := cluster.Queue(ctx, st)
	return health, q, err
}

func writeLabSections(w io.Writer, health map[string]*cluster.NodeHealth, q []cluster.QueueView) error {
	names := make([]string, 0, len(health))
	for n := range health {
		names = append(names, n)
	}
	sort.Strings(names)
	first := true
	for _, n := range names {
		h := health[n]
		var line string
		switch {
		case h.Quarantined:
			line = fmt.Sprintf("%s: QUARANTINED since %s: %s (vtcluster node resume %s)", n, h.QuarantinedAt.Local().Format(time.DateTime), h.QuarantineReason, n)
		case h.TakenBy != nil && time.Now().Before(h.TakenUntil):
			line = fmt.Sprintf("%s: held by another controller: partition %s of %s", n, h.TakenBy.ID, h.TakenBy.Owner)
		case h.FailuresInARow > 0:
			line = fmt.Sprintf("%s: %d failure(s) in a row, last: %s", n, h.FailuresInARow, h.LastFailure)
		default:
			continue
		}
		if first {
			fmt.Fprintln(w, "\nNode health:")
			first = false
		}
		fmt.Fprintln(w, "  "+line)
	}
	if len(q) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nWaiting for nodes (vtcluster queue):")
	return writeQueue(w, q)
}

const flagQuarantineAfter = "quarantine-after"

func quarantineAfterFlag() cli.Flag {
	return &cli.IntFlag{Name: flagQuarantineAfter, Sources: cli.EnvVars("VTCLUSTER_QUARANTINE_AFTER"),
		Usage: "`N` failures in a row (an agent that will not start, say) quarantine a node; 0: the default (3), -1: never"}
}

// nodesInRotation names the nodes whose agents a job starts: every node
// but the quarantined ones, which are named once on stderr.
func nodesInRotation(ctx context.Context, e *env, ctl *cluster.Controller, nodes []cluster.Node) ([]string, error) {
	s, err := ctl.Store().Load(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes {
		if h := s.Health(n.Name); h != nil && h.Quarantined {
			fmt.Fprintf(e.stderr, "vtcluster: node %s is quarantined (%s); its agent is not started (vtcluster node resume %s)\n", n.Name, h.QuarantineReason, n.Name)
			continue
		}
		out = append(out, n.Name)
	}
	if len(out) == 0 {
		return nil, errors.New("every node is quarantined: see vtcluster status, and vtcluster node resume NAME once fixed")
	}
	return out, nil
}

// noteAgentFailures counts every agent that did not start against its
// node. When every such node is quarantined by it, the job goes on with
// the others (a warning names them) and nil is returned; otherwise err.
func noteAgentFailures(ctx context.Context, e *env, st cluster.Store, results []cluster.NodeResult, err error, after int) error {
	if err == nil {
		return nil
	}
	failed, quarantined := 0, 0
	for _, r := range results {
		if r.OK {
			continue
		}
		failed++
		reason := "agent would not start"
		if r.Error != "" {
			reason += ": " + r.Error
		}
		q, rerr := cluster.RecordFailure(context.WithoutCancel(ctx), st, r.Node, reason, after)
		if rerr != nil {
			return errors.Join(err, rerr)
		}
		if q {
			quarantined++
			fmt.Fprintf(e.stderr, "vtcluster: node %s is quarantined: its agent failed to start too many times in a row; tests will not get it (vtcluster node resume %s)\n", r.Node, r.Node)
		}
	}
	if failed > 0 && failed == quarantined && failed < len(results) {
		return nil
	}
	return err
}

// outOfRotation drops from err (the resource manager's start-up, which
// goes to every registered node) the parts about quarantined nodes, whose
// agents were not started on purpose. The resource manager names the
// node of each part ("resmgr: node NAME: ...").
func outOfRotation(ctx context.Context, st cluster.Store, err error) error {
	if err == nil {
		return nil
	}
	s, lerr := st.Load(ctx)
	if lerr != nil {
		return err
	}
	parts := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	}
	var kept []error
	for _, p := range parts {
		skip := false
		for _, h := range s.NodeHealth {
			if h.Quarantined && strings.Contains(p.Error(), "resmgr: node "+h.Node+": ") {
				skip = true
			}
		}
		if !skip {
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return fmt.Errorf("%w", errors.Join(kept...))
}
