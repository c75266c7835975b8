package cluster

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/vtcluster/vtcluster/cluster/sshx"
)

// MaxHold bounds how long a failed test's partition may be kept for
// debugging: a forgotten hold must not take nodes out of a shared lab for
// longer than a working week-end.
const MaxHold = 72 * time.Hour

// Hold marks a partition kept after its test failed, so that someone can
// look at its nodes as the test left them. A held partition no longer
// belongs to its owner process (the runner has ended): only its lease,
// which HoldPartition sets to the hold's end, limits it. When that runs
// out the next allocation reclaims it, with its claims, like any expired
// partition; "partition release" ends it sooner.
type Hold struct {
	// Test names the test that failed.
	Test string `json:"test"`
	// Reason is the test's fail reason.
	Reason string `json:"reason,omitempty"`
	// ResultsDir is the test's results directory (its partition file and
	// failure bundle).
	ResultsDir string    `json:"results_dir,omitempty"`
	Since      time.Time `json:"since"`
}

// HoldPartition keeps partition id for d from now as h says. Errors:
// ErrPartitionNotFound, an out-of-range d, store and ctx errors.
func HoldPartition(ctx context.Context, st Store, id string, h Hold, d time.Duration) (*Partition, error) {
	if d <= 0 || d > MaxHold {
		return nil, fmt.Errorf("cluster: hold partition %s: %s is not between 1s and %s", id, d, MaxHold)
	}
	return changePartition(ctx, st, "hold", id, func(p *Partition, now time.Time) {
		h.Since = now
		p.Hold = &h
		p.Renewed, p.Expires = now, now.Add(d)
	})
}

// changePartition applies change to partition id in one store update and
// returns the partition as saved; op names the operation in errors.
func changePartition(ctx context.Context, st Store, op, id string, change func(p *Partition, now time.Time)) (*Partition, error) {
	var out *Partition
	err := st.Update(WithFixedNodes(ctx), func(s *State) error {
		p := s.Partition(id)
		if p == nil {
			return fmt.Errorf("cluster: %s partition %s: %w", op, id, ErrPartitionNotFound)
		}
		change(p, time.Now().UTC())
		c := *p
		out = &c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Held returns the partitions held for debugging whose hold has not run
// out at now.
func (s *State) Held(now time.Time) []Partition {
	var out []Partition
	for _, p := range s.Partitions {
		if p.Hold != nil && p.Live(now) {
			out = append(out, p)
		}
	}
	return out
}

// ReachCommands are the command lines that reach each node of a held
// partition, for the person debugging it: vtcluster exec and cp by tag
// (with the test's partition file, which maps tags to nodes) and the
// plain SSH command line. vtcluster is the command that names this
// cluster's state (the binary and its global flags).
func ReachCommands(p Partition, s *State, vtcluster []string) []string {
	var out []string
	q := sshx.QuoteArgv
	if p.Hold != nil && p.Hold.ResultsDir != "" {
		out = append(out, "export "+q([]string{EnvPartitionFile + "=" + p.Hold.ResultsDir + "/partition.json"})+"   # so that tags name the nodes")
	}
	for _, a := range p.Nodes {
		n := s.Node(a.Node)
		if n == nil {
			out = append(out, fmt.Sprintf("%s = %s: no longer registered", a.Tag, a.Node))
			continue
		}
		out = append(out, fmt.Sprintf("%s = %s (%s):", a.Tag, n.Name, n.Host()))
		out = append(out,
			"  "+q(slices.Concat(vtcluster, []string{"exec", a.Tag, "--", "sh", "-c", "ps -ef; ls -la /tmp"})),
			"  "+q(slices.Concat(vtcluster, []string{"cp", a.Tag + ":/etc/os-release", "."})))
		if n.AgentBind != AgentBindDirect {
			ssh := []string{"ssh"}
			if n.KeyFile != "" {
				ssh = append(ssh, "-i", n.KeyFile)
			}
			if n.ShellPort != 0 && n.ShellPort != 22 {
				ssh = append(ssh, "-p", strconv.Itoa(n.ShellPort))
			}
			if n.KnownHosts != "" {
				ssh = append(ssh, "-o", "UserKnownHostsFile="+n.KnownHosts)
			}
			ssh = append(ssh, n.User+"@"+n.Host())
			out = append(out, "  "+q(ssh))
		}
	}
	out = append(out, "end the hold: "+q(slices.Concat(vtcluster, []string{"partition", "release", p.ID})))
	return out
}
