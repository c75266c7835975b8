package bridge

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/resmgr/node"
)

func statusCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show every node: address, whether its agent answers, key properties, and who holds it",
		Description: `Probes every registered node's agent in parallel and joins the answers with
what the state records: collected properties, and the partition, tag and
remaining lease of nodes that are held. --json prints every property.
Nodes out of rotation (quarantined, or held by another controller) and
the allocations waiting for nodes follow the table ("vtcluster queue
--json" is the queue in JSON; status --json gives each node's health).

Examples:
   vtcluster status
   vtcluster --cluster lab status --json`,
		Flags: slices.Concat(sshFlags(), []cli.Flag{parallelFlag(), timeoutFlag(30 * time.Second), jsonFlag()}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := noArgs(cmd); err != nil {
				return err
			}
			rows, err := probeNodes(ctx, e, cmd)
			if err != nil {
				return err
			}
			up := map[string]bool{}
			for _, r := range rows {
				up[r.Name] = r.AgentUp
			}
			pools, holds, caps, err := nodeHoldings(ctx, e, cmd, up)
			if err != nil {
				return err
			}
			now := time.Now()
			debug, err := heldByNode(ctx, cmd, now)
			if err != nil {
				return err
			}
			health, queue, err := labSections(ctx, cmd)
			if err != nil {
				return err
			}
			if cmd.Bool(flagJSON) {
				out := make([]statusJSON, len(rows))
				for i, r := range rows {
					out[i] = statusJSON{
						NodeStatus: r, Pools: pools[r.Name], Resources: holds[r.Name], PoolCapacity: caps[r.Name],
					}
					if r.Partition != "" {
						left := r.LeaseLeft
						out[i].LeaseSecondsLeft = &left
					}
					if p, ok := debug[r.Name]; ok {
						out[i].HeldForDebugging = toHeldJSON(p, now)
					}
					out[i].healthJSON = healthJSONOf(health[r.Name])
				}
				return writeJSON(e.stdout, out)
			}
			tw := newTable(e.stdout)
			fmt.Fprintln(tw, "NODE\tADDRESS\tAGENT\tHOSTNAME\tARCH\tCPUS\tMEMORY\tKVM\tPARTITION\tTAG\tHELD FROM\tLEASE LEFT\tPOOLS\tRESOURCES")
			for _, r := range rows {
				p := r.Properties
				part, tag, from, lease := "-", "-", "-", "-"
				if r.Partition != "" {
					part, tag, from, lease = r.Partition, r.Tag, r.OwnerHost, formatLease(r.LeaseLeft)
				}
				if _, ok := debug[r.Name]; ok {
					from = "debugging"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Address, upDown(r.AgentUp),
					prop(p, "hostname"), prop(p, "arch"), prop(p, "cpu_count"), memory(p), prop(p, "kvm"), part, tag, from, lease,
					poolsColumn(pools[r.Name], caps[r.Name]), dash(strings.Join(holds[r.Name], ",")))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if err := writeHeld(e.stdout, debug, now); err != nil {
				return err
			}
			return writeLabSections(e.stdout, health, queue)
		},
	}
}

// statusJSON is one row of "status --json": the controller's row, then
// what the CLI adds from the resource manager, holds and the lab.
type statusJSON struct {
	cluster.NodeStatus
	// LeaseSecondsLeft is set with a partition, 0 included.
	LeaseSecondsLeft *float64 `json:"lease_seconds_left,omitempty"`
	// Pools attached on the node; Resources bound to it as TYPE:NAME,
	// with "*" when allocated.
	Pools     []string `json:"pools,omitempty"`
	Resources []string `json:"resources,omitempty"`
	// PoolCapacity is the size and free bytes of each volume pool on
	// the node, as the node reports them.
	PoolCapacity map[string]node.Capacity `json:"pool_capacity,omitempty"`
	// HeldForDebugging is set while a failed test's hold keeps the node.
	HeldForDebugging *heldJSON `json:"held_for_debugging,omitempty"`
	healthJSON
}

// prop renders one property for the table; "-" when not collected.
func prop(p map[string]any, key string) string {
	v, ok := p[key]
	if !ok {
		return "-"
	}
	return fmt.Sprint(v)
}

func memory(p map[string]any) string {
	if gb, ok := p["memory_gb"].(float64); ok {
		return strconv.FormatFloat(gb, 'f', 1, 64) + " GiB"
	}
	return "-"
}

// formatLease shows a lease's remaining time to the second; a lease that
// ran out but was not reclaimed yet says so.
func formatLease(seconds float64) string {
	if seconds <= 0 {
		return "expired"
	}
	return (time.Duration(seconds) * time.Second).String()
}
