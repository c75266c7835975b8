package bridge

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/runner"
)

// Partitions held for debugging after a failed test (runner/hold.go) are
// left alone by the job's post hook: it neither releases them nor removes
// their resources, keeps the agents up for them and prints how to reach
// them, for the shim to show in the job's output.

// stateArgv is the vtcluster command line naming the state cmd uses.
func stateArgv(cmd *cli.Command) []string {
	bin, err := executable()
	if err != nil {
		bin = "vtcluster"
	}
	argv := []string{bin, "--state-dir", cmd.String(flagStateDir), "--cluster", cmd.String(flagCluster)}
	if s := cmd.String(flagState); s != "" {
		argv = append(argv, "--state", s)
	}
	return argv
}

// printHolds writes, for each held partition, a "HOLD: " block saying
// whose it is, until when, and the commands that reach its nodes.
func printHolds(w io.Writer, held []cluster.Partition, s *cluster.State, argv []string, now time.Time) {
	for _, p := range held {
		fmt.Fprintf(w, "HOLD: test %s did not pass; partition %s is held for debugging until %s (%s left)\n",
			p.Hold.Test, p.ID, p.Expires.Local().Format(time.DateTime), p.Expires.Sub(now).Round(time.Second))
		for _, l := range cluster.ReachCommands(p, s, argv) {
			fmt.Fprintf(w, "HOLD:   %s\n", l)
		}
	}
}

// removeJobResourcesExcept removes the job's resources but those of the
// held partitions, which stay until their hold ends.
func removeJobResourcesExcept(ctx context.Context, e *env, cmd *cli.Command, jobID string, held map[string]bool) error {
	if len(held) == 0 {
		return resourcesRemoveJob(ctx, e, cmd, jobID)
	}
	m, err := openManager(e, cmd)
	if err != nil {
		return err
	}
	defer m.Close()
	_, res, err := m.Pools(ctx)
	if err != nil {
		return err
	}
	for _, x := range res {
		if x.Job == jobID && !held[x.Partition] {
			if err := m.Remove(ctx, x.Config.Meta.UUID); err != nil {
				return fmt.Errorf("removing resources of job %s: %w", jobID, err)
			}
		}
	}
	return m.Sweep(ctx)
}

// writeJobTimelines links the job's test timelines from one page and
// prints its path for the shim.
func writeJobTimelines(e *env, logdir string) {
	if logdir == "" {
		return
	}
	p, err := runner.WriteTimelineIndex(logdir)
	if err != nil {
		fmt.Fprintf(e.stderr, "vtcluster: warning: %v\n", err)
		return
	}
	if p != "" {
		fmt.Fprintf(e.stdout, "TIMELINES: %s\n", p)
	}
}

// heldJSON is a hold in --json output.
type heldJSON struct {
	Partition   string    `json:"partition"`
	Test        string    `json:"test"`
	Reason      string    `json:"reason,omitempty"`
	ResultsDir  string    `json:"results_dir,omitempty"`
	Since       time.Time `json:"since"`
	Until       time.Time `json:"until"`
	SecondsLeft float64   `json:"seconds_left"`
}

func toHeldJSON(p cluster.Partition, now time.Time) *heldJSON {
	if p.Hold == nil {
		return nil
	}
	return &heldJSON{Partition: p.ID, Test: p.Hold.Test, Reason: p.Hold.Reason, ResultsDir: p.Hold.ResultsDir,
		Since: p.Hold.Since, Until: p.Expires, SecondsLeft: max(0, p.Expires.Sub(now).Seconds())}
}

// heldByNode returns the live holds by node name.
func heldByNode(ctx context.Context, cmd *cli.Command, now time.Time) (map[string]cluster.Partition, error) {
	st, err := openStore(cmd)
	if err != nil {
		return nil, err
	}
	s, err := st.Load(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]cluster.Partition{}
	for _, p := range s.Held(now) {
		for _, a := range p.Nodes {
			out[a.Node] = p
		}
	}
	return out, nil
}

// writeHeld prints the holds after status's table.
func writeHeld(w io.Writer, byNode map[string]cluster.Partition, now time.Time) error {
	seen := map[string]bool{}
	tw := newTable(w)
	for _, name := range slices.Sorted(maps.Keys(byNode)) {
		p := byNode[name]
		if seen[p.ID] {
			continue
		}
		if len(seen) == 0 {
			fmt.Fprintln(w, "\nHeld for debugging after a failed test (end a hold with: vtcluster partition release ID):")
			fmt.Fprintln(tw, "PARTITION\tNODES\tTEST\tTIME LEFT\tRESULTS")
		}
		seen[p.ID] = true
		var nodes []string
		for _, a := range p.Nodes {
			nodes = append(nodes, a.Tag+"="+a.Node)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ID, strings.Join(nodes, " "), p.Hold.Test,
			formatLease(p.Expires.Sub(now).Seconds()), dash(p.Hold.ResultsDir))
	}
	return tw.Flush()
}
