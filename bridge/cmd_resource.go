package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/resmgr"
	"github.com/vtcluster/vtcluster/resmgr/node"
)

// resmgrFlags are the flags of every pool and resource command.
func resmgrFlags() []cli.Flag {
	return slices.Concat(sshFlags(), []cli.Flag{timeoutFlag(2 * time.Minute), jsonFlag()})
}

// openManager opens the resource manager on the command's state.
func openManager(e *env, cmd *cli.Command) (*resmgr.Manager, error) {
	st, err := openStore(cmd)
	if err != nil {
		return nil, err
	}
	cfg, err := controllerConfig(e, cmd)
	if err != nil {
		return nil, err
	}
	return resmgr.NewManager(st, resmgr.ConnectDialer(cfg.Connect), stderrLogger(e)), nil
}

// withManager runs fn with a manager and the command's timeout.
func withManager(e *env, nargs int, argsUsage string, fn func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, args []string) error) cli.ActionFunc {
	return func(ctx context.Context, cmd *cli.Command) error {
		args := cmd.Args().Slice()
		if len(args) != nargs {
			return usageError{fmt.Errorf("%s: expected %s (see --help)", cmd.FullName(), argsUsage)}
		}
		ctx, cancel, err := withTimeout(ctx, cmd)
		if err != nil {
			return err
		}
		defer cancel()
		m, err := openManager(e, cmd)
		if err != nil {
			return err
		}
		defer m.Close()
		return fn(ctx, cmd, m, args)
	}
}

// params reads repeated --param KEY=VALUE, or with --params-stdin one
// JSON object of them from stdin: upstream's params can be large, and
// argv is visible to every user of the machine.
func params(e *env, cmd *cli.Command) (map[string]string, error) {
	out := map[string]string{}
	if cmd.Bool("params-stdin") {
		if len(cmd.StringSlice("param")) > 0 {
			return nil, flagError("params-stdin", "the parameters come from stdin; give no --param")
		}
		obj, err := stdinObject(e, "params-stdin")
		if err != nil {
			return nil, err
		}
		for k, raw := range obj {
			var v any
			json.Unmarshal(raw, &v)
			switch x := v.(type) {
			case string:
				out[k] = x
			case float64, bool:
				// Cartesian params are text; a number or a bool written
				// as such is taken as its JSON text, as upstream's str().
				out[k] = string(bytes.TrimSpace(raw))
			default:
				return nil, flagError("params-stdin", "key %q: want a string, number or bool, not %s", k, bytes.TrimSpace(raw))
			}
		}
		return out, nil
	}
	for _, kv := range cmd.StringSlice("param") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, flagError("param", "%q is not KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

// maxStdinObject bounds what --params-stdin and --arguments-stdin read:
// parameters that large are a mistake, not a use.
const maxStdinObject = 4 << 20

// stdinObject reads one JSON object from stdin for flag.
func stdinObject(e *env, flag string) (map[string]json.RawMessage, error) {
	data, err := io.ReadAll(io.LimitReader(e.stdin, maxStdinObject+1))
	if err != nil {
		return nil, fmt.Errorf("reading stdin for --%s: %w", flag, err)
	}
	if len(data) > maxStdinObject {
		return nil, flagError(flag, "stdin holds more than %d bytes", maxStdinObject)
	}
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&obj); err != nil || obj == nil || dec.More() {
		return nil, flagError(flag, "stdin is not one JSON object")
	}
	return obj, nil
}

func paramsStdinFlag() cli.Flag {
	return &cli.BoolFlag{Name: "params-stdin", Usage: "read the parameters as one JSON object from stdin instead of --param"}
}

func paramFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "param", Usage: "`KEY=VALUE`: an avocado-vt resource parameter " +
		"(image_size, image_format, image_name, volume_pool_selectors, storage_type, port_pool_selectors, network_type); repeatable"}
}

func requestFlag() cli.Flag {
	return &cli.StringFlag{Name: "request", Usage: "`PATH` such as spec.size: print only {\"size\": ...}, as upstream's request paths"}
}

func nodeFlag(usage string) cli.Flag {
	return &cli.StringSliceFlag{Name: "node", Usage: "`NAME` of a registered node " + usage}
}

// printRaw prints a JSON document as is (its key order is upstream's);
// it is JSON with or without --json.
func printRaw(e *env, raw json.RawMessage) error {
	_, err := fmt.Fprintln(e.stdout, string(raw))
	return err
}

func printID(e *env, cmd *cli.Command, id string) error {
	if cmd.Bool(flagJSON) {
		return writeJSON(e.stdout, map[string]string{"uuid": id})
	}
	_, err := fmt.Fprintln(e.stdout, id)
	return err
}

// noSplit keeps --param values whole: selector lists contain commas.
func noSplit(c *cli.Command) *cli.Command {
	c.DisableSliceFlagSeparator = true
	for _, sub := range c.Commands {
		noSplit(sub)
	}
	return c
}

func poolCommand(e *env) *cli.Command {
	return noSplit(&cli.Command{
		Name:      "pool",
		Usage:     "storage pools and networks of the resource manager",
		UsageText: "vtcluster pool setup|list|create|attach|detach|destroy|info|select ...",
		Description: `Pools come from the "pools" section of the cluster config (avocado-vt's
filesystem, nfs and linux_bridge pools, unchanged) plus a default
filesystem pool def_fs_pool_<node> for every node no configured filesystem
pool reaches. "bootstrap" sets them up; the job's pre-tests hook attaches
them on the nodes and the post-tests hook detaches them. A pool is named by
its uuid or its name.

Examples:
   vtcluster pool setup cluster.json
   vtcluster pool list
   vtcluster pool info def_fs_pool_node1 --request spec.path
   vtcluster pool select --type volume --param storage_type=nfs`,
		Commands: []*cli.Command{
			{
				Name: "setup", Usage: "register the pools of a cluster config's \"pools\" section (and the defaults)", ArgsUsage: "CONFIG",
				Flags: resmgrFlags(),
				Action: withManager(e, 1, "the cluster config file", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, a []string) error {
					conf, err := cluster.LoadConfig(a[0])
					if err != nil {
						return err
					}
					return m.Setup(ctx, conf.Pools)
				}),
			},
			{
				Name: "list", Usage: "list pools and the nodes they are attached to", Flags: resmgrFlags(),
				Action: withManager(e, 0, "no arguments", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, _ []string) error {
					pools, _, err := m.Pools(ctx)
					if err != nil {
						return err
					}
					// Capacity comes from the nodes; one that does not
					// answer is left out (and named on stderr), the list
					// is still printed.
					caps := make([]map[string]node.Capacity, len(pools))
					for i, p := range pools {
						var err error
						if caps[i], err = m.PoolCapacity(ctx, p.Config.Meta.UUID); err != nil {
							fmt.Fprintf(e.stderr, "vtcluster: pool %s: capacity: %v\n", p.Config.Meta.Name, err)
						}
					}
					if cmd.Bool(flagJSON) {
						out := make([]poolJSON, len(pools))
						for i, p := range pools {
							out[i] = poolJSON{Config: p.Config, Connected: p.Connected, Capacity: caps[i]}
						}
						return writeJSON(e.stdout, out)
					}
					tw := newTable(e.stdout)
					fmt.Fprintln(tw, "NAME\tUUID\tTYPE\tACCESS\tATTACHED\tSIZE\tFREE")
					for i, p := range pools {
						size, free := capacityColumns(caps[i])
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Config.Meta.Name, p.Config.Meta.UUID, p.Config.Meta.Type,
							strings.Join(p.Config.Meta.Access.Nodes, ","), dash(strings.Join(p.Connected, ",")), size, free)
					}
					return tw.Flush()
				}),
			},
			{
				Name: "create", Usage: "register one pool from avocado-vt pool parameters (JSON)", ArgsUsage: "NAME PARAMS_JSON | NAME --params-stdin",
				Flags: append(resmgrFlags(), &cli.BoolFlag{Name: "params-stdin", Usage: "read PARAMS_JSON (one JSON object) from stdin"}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					n, usage := 2, "NAME and PARAMS_JSON"
					if cmd.Bool("params-stdin") {
						n, usage = 1, "NAME (the parameters come from stdin)"
					}
					return withManager(e, n, usage, func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, a []string) error {
						var raw json.RawMessage
						if cmd.Bool("params-stdin") {
							obj, err := stdinObject(e, "params-stdin")
							if err != nil {
								return err
							}
							raw, _ = json.Marshal(obj)
						} else {
							raw = json.RawMessage(a[1])
						}
						id, err := m.CreatePoolFromParams(ctx, a[0], raw)
						if err != nil {
							return err
						}
						return printID(e, cmd, id)
					})(ctx, cmd)
				},
			},
			{
				Name: "attach", Usage: "connect a pool on each of its access nodes", ArgsUsage: "POOL", Flags: resmgrFlags(),
				Action: withManager(e, 1, "a pool", func(ctx context.Context, _ *cli.Command, m *resmgr.Manager, a []string) error {
					return m.AttachPool(ctx, a[0])
				}),
			},
			{
				Name: "detach", Usage: "disconnect a pool from its nodes", ArgsUsage: "POOL", Flags: resmgrFlags(),
				Action: withManager(e, 1, "a pool", func(ctx context.Context, _ *cli.Command, m *resmgr.Manager, a []string) error {
					return m.DetachPool(ctx, a[0])
				}),
			},
			{
				Name: "destroy", Usage: "forget a detached, unused pool", ArgsUsage: "POOL", Flags: resmgrFlags(),
				Action: withManager(e, 1, "a pool", func(ctx context.Context, _ *cli.Command, m *resmgr.Manager, a []string) error {
					return m.DestroyPool(ctx, a[0])
				}),
			},
			{
				Name: "info", Usage: "print a pool's config, or one path of it", ArgsUsage: "POOL",
				Flags: append(resmgrFlags(), requestFlag()),
				Action: withManager(e, 1, "a pool", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, a []string) error {
					raw, err := m.PoolInfo(ctx, a[0], cmd.String("request"))
					if err != nil {
						return err
					}
					return printRaw(e, raw)
				}),
			},
			{
				Name: "select", Usage: "print the pool a resource with these parameters would go to",
				Flags: append(resmgrFlags(), paramFlag(), paramsStdinFlag(), &cli.StringFlag{Name: "type", Value: resmgr.TypeVolume, Usage: "`TYPE`: volume or port"}),
				Action: withManager(e, 0, "no arguments", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, _ []string) error {
					p, err := params(e, cmd)
					if err != nil {
						return err
					}
					id, err := m.SelectPool(ctx, cmd.String("type"), p)
					if errors.Is(err, resmgr.ErrPoolNotAvailable) {
						// Nothing matched: 2, as for select.
						return exitError{code: 2, err: fmt.Errorf("pool select: %w", err)}
					}
					if err != nil {
						return err
					}
					return printID(e, cmd, id)
				}),
			},
		},
	})
}

type poolJSON struct {
	Config    resmgr.PoolConfig `json:"config"`
	Connected []string          `json:"connected_nodes"`
	// Capacity is each answering node's view of the pool's filesystem
	// (bytes); a shared pool shows the same figures on every node.
	Capacity map[string]node.Capacity `json:"capacity,omitempty"`
}

// capacityColumns are the SIZE and FREE of a pool in a table: the
// smallest free space any node reports (a pool of per-node directories
// is as full as its fullest node), "-" for none.
func capacityColumns(caps map[string]node.Capacity) (size, free string) {
	if len(caps) == 0 {
		return "-", "-"
	}
	first := true
	var c node.Capacity
	for _, x := range caps {
		if first || x.Free < c.Free {
			c, first = x, false
		}
	}
	return node.ShortSize(c.Size), node.ShortSize(c.Free)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func resourceCommand(e *env) *cli.Command {
	return noSplit(resourceCommands(e))
}

func resourceCommands(e *env) *cli.Command {
	one := func(name, usage string, fn func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, id string) error, flags ...cli.Flag) *cli.Command {
		return &cli.Command{
			Name: name, Usage: usage, ArgsUsage: "RESOURCE", Flags: append(resmgrFlags(), flags...),
			Action: withManager(e, 1, "a resource uuid", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, a []string) error {
				return fn(ctx, cmd, m, a[0])
			}),
		}
	}
	return &cli.Command{
		Name:      "resource",
		Usage:     "volumes and tap ports of the resource manager",
		UsageText: "vtcluster resource create|list|bind|unbind|update|info|nodes|destroy ...",
		Description: `A resource is defined in the pool its parameters select (not bound, not
allocated), bound to nodes (one backing per node), then allocated, synced,
resized, cloned or released on one of them, unbound and destroyed, as with
avocado-vt's vt_resmgr. Resources a test declares are made and removed by
the runner; these commands are for people and scripts.

Examples:
   vtcluster resource create disk1 --param image_size=20G --param image_format=raw
   vtcluster resource bind 5c0f... --node node1
   vtcluster resource update 5c0f... allocate
   vtcluster resource info 5c0f... --request spec.size
   vtcluster resource update 5c0f... resize --size 30G
   vtcluster resource update 5c0f... release
   vtcluster resource unbind 5c0f...
   vtcluster resource destroy 5c0f...`,
		Commands: []*cli.Command{
			{
				Name: "create", Usage: "define a resource from parameters, or copy one (--from)", ArgsUsage: "NAME | --from RESOURCE",
				Flags: append(resmgrFlags(), paramFlag(), paramsStdinFlag(),
					&cli.StringFlag{Name: "type", Value: resmgr.TypeVolume, Usage: "`TYPE`: volume or port"},
					&cli.StringFlag{Name: "from", Usage: "`RESOURCE` to copy the definition of"},
					&cli.StringFlag{Name: "pool", Usage: "`POOL` for the copy (default: the source's)"}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					n := 1
					if cmd.String("from") != "" {
						n = 0
					}
					return withManager(e, n, "NAME, or --from RESOURCE", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, a []string) error {
						var id string
						var err error
						if src := cmd.String("from"); src != "" {
							id, err = m.CreateResourceFromSource(ctx, src, cmd.String("pool"))
						} else {
							var p map[string]string
							if p, err = params(e, cmd); err != nil {
								return err
							}
							id, err = m.CreateResourceFromParams(ctx, a[0], cmd.String("type"), p)
						}
						if err != nil {
							return err
						}
						return printID(e, cmd, id)
					})(ctx, cmd)
				},
			},
			{
				Name: "list", Usage: "list resources, their bindings and owners", Flags: resmgrFlags(),
				Action: withManager(e, 0, "no arguments", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, _ []string) error {
					_, rs, err := m.Pools(ctx)
					if err != nil {
						return err
					}
					if cmd.Bool(flagJSON) {
						out := make([]resourceJSON, len(rs))
						for i, r := range rs {
							out[i] = toResourceJSON(r)
						}
						return writeJSON(e.stdout, out)
					}
					tw := newTable(e.stdout)
					fmt.Fprintln(tw, "UUID\tNAME\tTYPE\tALLOCATED\tBOUND TO\tOWNER")
					for _, r := range rs {
						j := toResourceJSON(r)
						fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", j.Config.Meta.UUID, j.Config.Meta.Name, j.Config.Meta.Type,
							j.Config.Meta.Allocated, dash(strings.Join(j.Nodes, ",")), dash(j.Partition))
					}
					return tw.Flush()
				}),
			},
			one("bind", "create the resource's backing on nodes (default: every node of its pool)", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, id string) error {
				return m.BindResource(ctx, id, cmd.StringSlice("node"))
			}, nodeFlag("to bind to; repeatable")),
			one("unbind", "remove the resource's backings from nodes (default: all)", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, id string) error {
				return m.UnbindResource(ctx, id, cmd.StringSlice("node"))
			}, nodeFlag("to unbind from; repeatable")),
			{
				Name: "update", Usage: "run allocate, release, sync, resize or clone on one node's backing", ArgsUsage: "RESOURCE COMMAND",
				Flags: append(resmgrFlags(),
					&cli.StringFlag{Name: "node", Usage: "`NAME` of the bound node to run on (default: the first binding)"},
					&cli.StringFlag{Name: "size", Usage: "`SIZE` for resize (bytes, or with a unit: 30G)"},
					&cli.BoolFlag{Name: "arguments-stdin", Usage: "read the command's arguments (upstream's arguments dict, without \"node\") as one JSON object from stdin"}),
				Action: withManager(e, 2, "RESOURCE and COMMAND", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, a []string) error {
					args, err := updateArguments(e, cmd)
					if err != nil {
						return err
					}
					id, err := m.UpdateResource(ctx, a[0], a[1], cmd.String("node"), args)
					if err != nil {
						return err
					}
					if id != "" {
						return printID(e, cmd, id)
					}
					return nil
				}),
			},
			one("info", "print the resource's config, or one path of it", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, id string) error {
				raw, err := m.ResourceInfo(ctx, id, cmd.String("request"))
				if err != nil {
					return err
				}
				return printRaw(e, raw)
			}, requestFlag()),
			one("nodes", "print the nodes the resource is bound to", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, id string) error {
				nodes, err := m.BindingNodes(ctx, id)
				if err != nil {
					return err
				}
				if cmd.Bool(flagJSON) {
					return writeJSON(e.stdout, nodes)
				}
				for _, n := range nodes {
					fmt.Fprintln(e.stdout, n)
				}
				return nil
			}),
			one("destroy", "forget an unbound, unallocated resource; --force releases and unbinds it first", func(ctx context.Context, cmd *cli.Command, m *resmgr.Manager, id string) error {
				if cmd.Bool("force") {
					return m.Remove(ctx, id)
				}
				err := m.DestroyResource(ctx, id)
				if errors.Is(err, resmgr.ErrAllocated) {
					return fmt.Errorf("%w (release and unbind it first, or: vtcluster resource destroy --force %s)", err, id)
				}
				return err
			}, &cli.BoolFlag{Name: "force", Usage: "release and unbind on every node first"}),
		},
	}
}

// updateArguments is the arguments dict of "resource update": --size, or
// the object --arguments-stdin reads, whole numbers as int64 (what resmgr's
// size check takes), other values as encoding/json decodes them.
func updateArguments(e *env, cmd *cli.Command) (map[string]any, error) {
	args := map[string]any{}
	if cmd.Bool("arguments-stdin") {
		obj, err := stdinObject(e, "arguments-stdin")
		if err != nil {
			return nil, err
		}
		for k, raw := range obj {
			if k == "node" {
				return nil, flagError("arguments-stdin", "give the node with --node, not in the arguments")
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			var v any
			dec.Decode(&v)
			if n, ok := v.(json.Number); ok {
				if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
					v = i
				} else {
					v, _ = n.Float64()
				}
			}
			args[k] = v
		}
	}
	if s := cmd.String("size"); s != "" {
		if _, dup := args["size"]; dup {
			return nil, flagError("size", "the arguments on stdin give a size too; give one")
		}
		args["size"] = s
	}
	return args, nil
}

type resourceJSON struct {
	Config    resmgr.ResourceConfig `json:"config"`
	Nodes     []string              `json:"nodes"`
	Partition string                `json:"partition,omitempty"`
	Job       string                `json:"job,omitempty"`
}

func toResourceJSON(r resmgr.Resource) resourceJSON {
	j := resourceJSON{Config: r.Config, Nodes: []string{}, Partition: r.Partition, Job: r.Job}
	for _, b := range r.Bindings {
		j.Nodes = append(j.Nodes, b.Node)
	}
	return j
}

// nodeHoldings says, per node, which pools reach it and which resources
// are bound to it, from the state; and, asked of the nodes that are up,
// the size and free space of each volume pool attached there (a node
// that does not answer is left out: status still prints).
func nodeHoldings(ctx context.Context, e *env, cmd *cli.Command, up map[string]bool) (pools, holds map[string][]string, caps map[string]map[string]node.Capacity, err error) {
	m, err := openManager(e, cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	defer m.Close()
	ps, rs, err := m.Pools(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	pools, holds, caps = map[string][]string{}, map[string][]string{}, map[string]map[string]node.Capacity{}
	for n, ok := range up {
		if !ok {
			m.SkipNode(n)
		}
	}
	for _, p := range ps {
		for _, n := range p.Connected {
			pools[n] = append(pools[n], p.Config.Meta.Name)
		}
		if !slices.ContainsFunc(p.Connected, func(n string) bool { return up[n] }) {
			continue
		}
		pc, _ := m.PoolCapacity(ctx, p.Config.Meta.UUID)
		for n, c := range pc {
			if caps[n] == nil {
				caps[n] = map[string]node.Capacity{}
			}
			caps[n][p.Config.Meta.Name] = c
		}
	}
	for _, r := range rs {
		for _, b := range r.Bindings {
			what := r.Config.Meta.Type + ":" + r.Config.Meta.Name
			if r.Config.Meta.Allocated {
				what += "*"
			}
			holds[b.Node] = append(holds[b.Node], what)
		}
	}
	return pools, holds, caps, nil
}

// poolsColumn is a node's POOLS in the status table: each pool, with its
// free space there when known.
func poolsColumn(names []string, caps map[string]node.Capacity) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n
		if c, ok := caps[n]; ok {
			out[i] += "(" + node.ShortSize(c.Free) + " free)"
		}
	}
	return dash(strings.Join(out, ","))
}

// resourcesStartup is the pre-tests hook's part: start the nodes' backing
// services and attach the pools (upstream's resmgr.startup).
func resourcesStartup(ctx context.Context, e *env, cmd *cli.Command) error {
	m, err := openManager(e, cmd)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Startup(ctx); err != nil {
		return fmt.Errorf("attaching resource pools: %w", err)
	}
	return nil
}

// resourcesRemoveJob is the post-tests hook's part for every job: what
// the job's tests left (a killed runner) is removed on the nodes.
func resourcesRemoveJob(ctx context.Context, e *env, cmd *cli.Command, jobID string) error {
	m, err := openManager(e, cmd)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.RemoveJob(ctx, jobID); err != nil {
		return fmt.Errorf("removing resources of job %s: %w", jobID, err)
	}
	return nil
}

// resourcesTeardown is the last job's part: detach the pools and stop the
// backing services (upstream's resmgr.teardown).
func resourcesTeardown(ctx context.Context, e *env, cmd *cli.Command, jobID string, down []cluster.NodeResult) error {
	m, err := openManager(e, cmd)
	if err != nil {
		return err
	}
	defer m.Close()
	// Nodes found gone were reported once already; waiting a connect
	// timeout on each of them again would only hold the job's end.
	for _, r := range down {
		m.SkipNode(r.Node)
	}
	if err := m.Teardown(ctx, jobID); err != nil {
		return fmt.Errorf("detaching resource pools: %w", err)
	}
	return nil
}

// sweepResources removes on the nodes what released or reclaimed
// partitions still claimed; a failure is only a warning, since the next
// allocation and the job's post hook try again.
func sweepResources(ctx context.Context, e *env, cmd *cli.Command) {
	m, err := openManager(e, cmd)
	if err == nil {
		defer m.Close()
		err = m.Sweep(ctx)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "vtcluster: warning: removing resources of released partitions: %v (the next allocation tries again)\n", err)
	}
}
