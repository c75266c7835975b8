package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
)

func nodeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "node",
		Usage:     "register, unregister and list nodes one by one",
		UsageText: "vtcluster node add|remove|list|resume|quarantine ...",
		Description: `Edits the cluster state directly; "vtcluster bootstrap" does the same for
every host of a cluster config at once, and also deploys the agent.

Examples:
   vtcluster node add node4 --address 192.168.122.14 --key-file ~/.ssh/id_ed25519 --label rack=b
   vtcluster agents deploy node4 --accept-new-host-keys && vtcluster agents start node4
   vtcluster node add py1 --address 10.0.0.5 --agent-bind direct   # an upstream agent already running there
   vtcluster node list --json
   vtcluster node remove node4
   vtcluster node resume node3   # back from quarantine`,
		Commands: []*cli.Command{
			nodeAddCommand(e),
			nodeListCommand(e),
			nodeRemoveCommand(e),
			nodeResumeCommand(e),
			nodeQuarantineCommand(e),
		},
	}
}

func nodeAddCommand(e *env) *cli.Command {
	d := cluster.DefaultHostConfig("")
	return &cli.Command{
		Name: "add",
		// Label values may hold commas; each --label is one value.
		DisableSliceFlagSeparator: true,
		Usage:                     "register a node (without deploying or starting anything)",
		ArgsUsage:                 "NAME",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "address", Usage: "`ADDRESS` (IP or DNS name) for SSH and, in direct mode, the agent"},
			&cli.StringFlag{Name: "hostname", Usage: "`HOST` name to use when no --address is given (upstream's hostname key)"},
			&cli.StringFlag{Name: "user", Value: d.Username, Usage: "SSH login `USER`"},
			&cli.IntFlag{Name: "port", Value: d.ShellPort, Usage: "SSH `PORT`"},
			&cli.IntFlag{Name: "proxy-port", Value: d.ProxyPort, Usage: "agent XML-RPC `PORT` on the node"},
			&cli.StringFlag{Name: "agent-base-dir", Value: d.AgentBaseDir, Usage: "absolute `DIR` on the node; the agent lives in DIR/NAME"},
			&cli.StringFlag{Name: "key-file", TakesFile: true, Usage: "SSH private key `FILE` (default: ssh-agent and ~/.ssh/id_*)"},
			&cli.StringFlag{Name: "known-hosts", TakesFile: true, Usage: "known_hosts `FILE` to verify the node's host key (default: ~/.ssh/known_hosts)"},
			&cli.StringFlag{Name: "agent-bind", Value: d.AgentBind, Usage: "`MODE`: tunnel (agent on a Unix socket in its directory, reached through SSH) or direct (agent on ADDRESS:proxy-port)"},
			&cli.StringFlag{Name: "token-file", TakesFile: true, Usage: "`FILE` with the agent token (direct mode); without it only an already running upstream agent can serve the node"},
			&cli.StringFlag{Name: "arch", Usage: "`ARCH` the node must report (uname -m), checked before deploying"},
			&cli.StringSliceFlag{Name: "label", Usage: "static property `KEY=VALUE` for selectors (repeatable); values are strings, compared as numbers or booleans when they read as such"},
			&cli.BoolFlag{Name: "replace", Usage: "overwrite a node already registered under NAME"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 1 {
				return usageError{errors.New("node add: want exactly one NAME (see --help)")}
			}
			n, err := nodeFromFlags(cmd.Args().First(), cmd)
			if err != nil {
				return err
			}
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			replace := cmd.Bool("replace")
			err = st.Update(ctx, func(s *cluster.State) error {
				return s.RegisterNode(n, replace)
			})
			if errors.Is(err, cluster.ErrNodeExists) {
				return fmt.Errorf("node add: %w (use --replace to overwrite it)", err)
			}
			if err != nil {
				return fmt.Errorf("node add: %w", err)
			}
			fmt.Fprintf(e.stderr, "registered node %q in %s\n", n.Name, st.Path())
			return nil
		},
	}
}

// nodeFlagOf names the flag that sets a host parameter, for errors.
var nodeFlagOf = map[string]string{
	"address": "address", "hostname": "hostname", "username": "user", "shell_port": "port",
	"proxy_port": "proxy-port", "agent_base_dir": "agent-base-dir", "key_file": "key-file",
	"known_hosts": "known-hosts", "token_file": "token-file", "agent_bind": "agent-bind", "arch": "arch",
}

// nodeFromFlags builds the node record and checks it with the rules the
// config loader and the state use (cluster.ValidateHost).
func nodeFromFlags(name string, cmd *cli.Command) (cluster.Node, error) {
	h := cluster.HostConfig{
		Name:         name,
		Address:      cmd.String("address"),
		Hostname:     cmd.String("hostname"),
		Username:     cmd.String("user"),
		ShellPort:    int(cmd.Int("port")),
		ProxyPort:    int(cmd.Int("proxy-port")),
		AgentBaseDir: cmd.String("agent-base-dir"),
		AgentBind:    cmd.String("agent-bind"),
		Arch:         cmd.String("arch"),
	}
	for _, f := range []struct {
		flag string
		dst  *string
	}{{"key-file", &h.KeyFile}, {"known-hosts", &h.KnownHosts}, {"token-file", &h.TokenFile}} {
		if p := expandHome(cmd.String(f.flag)); p != "" {
			abs, err := filepath.Abs(p)
			if err != nil {
				return cluster.Node{}, flagError(f.flag, "%v", err)
			}
			*f.dst = abs
		}
	}
	if h.TokenFile != "" && h.AgentBind != cluster.AgentBindDirect {
		return cluster.Node{}, flagError("token-file", "only used with --agent-bind direct (a tunnelled agent needs no token)")
	}
	for _, l := range cmd.StringSlice("label") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return cluster.Node{}, flagError("label", "%q is not KEY=VALUE", l)
		}
		if h.Labels == nil {
			h.Labels = map[string]any{}
		}
		if _, dup := h.Labels[k]; dup {
			return cluster.Node{}, flagError("label", "key %q given twice", k)
		}
		h.Labels[k] = v
	}
	if errs := cluster.ValidateHost(h); len(errs) > 0 {
		e := errs[0]
		switch flag, ok := nodeFlagOf[e.Field]; {
		case ok:
			return cluster.Node{}, flagError(flag, "%s", e.Msg)
		case strings.HasPrefix(e.Field, "labels."):
			return cluster.Node{}, flagError("label", "%s", e.Msg)
		case e.Field == "":
			return cluster.Node{}, usageError{errors.New("node add: give --address or --hostname")}
		default:
			return cluster.Node{}, usageError{fmt.Errorf("node add: %s", e.Msg)}
		}
	}
	return h.Node(), nil
}

func nodeRemoveCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "unregister nodes; a node held by a live partition needs --force",
		ArgsUsage: "NAME...",
		Description: `Without --cleanup only the cluster state changes: agents left running and
what was deployed stay on the nodes. With --cleanup each node's agent is
stopped and its directory removed first (as "vtcluster agents cleanup"),
and the nodes are unregistered only if that worked on all of them.`,
		Flags: slices.Concat([]cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "also take the node out of the live partition holding it"},
			&cli.BoolFlag{Name: "cleanup", Usage: "stop the agents and remove their directories from the nodes first"},
		}, sshFlags(), []cli.Flag{parallelFlag(), timeoutFlag(2 * time.Minute), jsonFlag()}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			names := cmd.Args().Slice()
			if len(names) == 0 {
				return usageError{errors.New("node remove: want at least one NAME (see --help)")}
			}
			if cmd.Bool("cleanup") && cmd.Bool("force") {
				return usageError{errors.New("node remove: --cleanup and --force do not go together: a node held by a live partition is in use, so its agent is not removed")}
			}
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			if cmd.Bool("cleanup") {
				if err := runAgentsOp(ctx, e, cmd, "node remove --cleanup", func(c *cluster.Controller, ctx context.Context, _ []string) ([]cluster.NodeResult, error) {
					return cleanupOwnAgents(ctx, c, nil, names)
				}); err != nil {
					return fmt.Errorf("%w (nothing was unregistered)", err)
				}
			}
			err = st.Update(ctx, func(s *cluster.State) error {
				now := time.Now()
				for _, name := range names {
					if err := s.UnregisterNode(name, now, cmd.Bool("force")); err != nil {
						return err
					}
				}
				return nil
			})
			var held *cluster.LeaseHeldError
			switch {
			case errors.As(err, &held):
				return fmt.Errorf("node remove: %w (nothing was removed; wait, release the partition, or use --force)", err)
			case errors.Is(err, cluster.ErrNodeNotFound):
				return fmt.Errorf("node remove: %w (nothing was removed)", err)
			case err != nil:
				return fmt.Errorf("node remove: %w", err)
			}
			if cmd.Bool("cleanup") {
				fmt.Fprintf(e.stderr, "unregistered %s; their agents were stopped and removed\n", strings.Join(names, ", "))
			} else {
				fmt.Fprintf(e.stderr, "unregistered %s; their agents, if running, were left alone (--cleanup removes them)\n", strings.Join(names, ", "))
			}
			return nil
		},
	}
}

// nodeJSON is a node in "node list --json": the state's node as the state
// stores it (which holds no secret), and its agent's pid where it always
// stood.
type nodeJSON struct {
	cluster.Node
	AgentPID int `json:"agent_pid,omitempty"`
}

func toNodeJSON(n cluster.Node) nodeJSON { return nodeJSON{Node: n, AgentPID: n.Agent.PID} }

func nodeListCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the registered nodes, from the state alone (no node is contacted)",
		Flags: []cli.Flag{jsonFlag()},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := noArgs(cmd); err != nil {
				return err
			}
			st, s, err := loadState(ctx, cmd)
			if err != nil {
				return err
			}
			if cmd.Bool(flagJSON) {
				out := make([]nodeJSON, len(s.Nodes))
				for i, n := range s.Nodes {
					out[i] = toNodeJSON(n)
				}
				return writeJSON(e.stdout, out)
			}
			if len(s.Nodes) == 0 {
				fmt.Fprintf(e.stderr, "no nodes registered in %s (run vtcluster bootstrap --vt-cluster-config FILE)\n", st.Path())
				return nil
			}
			tw := newTable(e.stdout)
			fmt.Fprintln(tw, "NAME\tADDRESS\tUSER\tSSH PORT\tBIND\tAGENT DIR\tLABELS")
			for _, n := range s.Nodes {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", n.Name, n.Host(), n.User, n.ShellPort, n.AgentBind, n.AgentDir(), formatProps(n.Labels))
			}
			return tw.Flush()
		},
	}
}

// formatProps renders a property map as sorted key=value words.
func formatProps(m map[string]any) string {
	if len(m) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return strings.Join(parts, " ")
}
