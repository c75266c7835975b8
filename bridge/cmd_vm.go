package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/agent/vm"
	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/runner"
)

// vmCommand is `vtcluster vm …`: the agents' vm service for people and
// for MultiHostTest (which runs `vtcluster vm … --json` in its body).
func vmCommand(e *env) *cli.Command {
	nodeArg := "NODE|TAG"
	flags := func(extra ...cli.Flag) []cli.Flag {
		return slices.Concat([]cli.Flag{connectTimeoutFlag(), timeoutFlag(cluster.DefaultCallTimeout), jsonFlag()}, extra)
	}
	// one connects to the node of args[0] and calls method with params,
	// printing the decoded reply as JSON or with text.
	one := func(ctx context.Context, cmd *cli.Command, want int, usage string, call func(ctx context.Context, nc *cluster.NodeConn, args []string) (any, error), text func(io.Writer, any) error) error {
		args := cmd.Args().Slice()
		if len(args) != want {
			return usageError{fmt.Errorf("vm %s: want %s (see --help)", cmd.Name, usage)}
		}
		res, err := callNode(ctx, e, cmd, args[0], func(ctx context.Context, nc *cluster.NodeConn) (any, error) {
			return call(ctx, nc, args)
		})
		if err != nil {
			return err
		}
		if cmd.Bool(flagJSON) || text == nil {
			return writeJSON(e.stdout, res)
		}
		return text(e.stdout, res)
	}
	decoded := func(v any, err error, into func(any) (any, error)) (any, error) {
		if err != nil {
			return nil, err
		}
		return into(v)
	}
	asStatus := func(v any) (any, error) { return vm.Decode[vm.Status](v) }
	return &cli.Command{
		Name:  "vm",
		Usage: "QEMU guests on the nodes: start, stop, status, console, QMP, live migration",
		Description: `Drives the agents' vm service (docs/vms.md). NODE is a registered node's
name; inside a test body a tag of the test's partition ("src") names its
node, and migrate takes the destination's spec from the partition file.
With --json every command prints one JSON document.`,
		Commands: []*cli.Command{
			{
				Name: "list", Usage: "the VMs on a node", ArgsUsage: nodeArg, Flags: flags(),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					return one(ctx, cmd, 1, nodeArg, func(ctx context.Context, nc *cluster.NodeConn, _ []string) (any, error) {
						v, err := nc.Call(ctx, "vm.list")
						return decoded(v, err, func(v any) (any, error) { return vm.Decode[[]vm.Status](v) })
					}, func(w io.Writer, v any) error {
						for _, s := range v.([]vm.Status) {
							fmt.Fprintf(w, "%s\t%s\tpid %d\t%s\towner %s\n", s.Name, s.Status, s.Pid, s.Accel, s.Owner)
						}
						return nil
					})
				},
			},
			{
				Name: "status", Usage: "a VM's QMP status and pid", ArgsUsage: nodeArg + " NAME", Flags: flags(),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					return one(ctx, cmd, 2, nodeArg+" NAME", func(ctx context.Context, nc *cluster.NodeConn, a []string) (any, error) {
						v, err := nc.Call(ctx, "vm.status", a[1])
						return decoded(v, err, asStatus)
					}, func(w io.Writer, v any) error {
						s := v.(vm.Status)
						_, err := fmt.Fprintf(w, "%s: %s (pid %d, %s)\n", s.Name, s.Status, s.Pid, s.Accel)
						return err
					})
				},
			},
			{
				Name: "start", Usage: "start a VM from a JSON spec (vm.Spec, docs/vms.md)", ArgsUsage: nodeArg + " SPEC.json|-",
				Flags: flags(),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					return one(ctx, cmd, 2, nodeArg+" SPEC.json|-", func(ctx context.Context, nc *cluster.NodeConn, a []string) (any, error) {
						data, err := readSpecArg(e, a[1])
						if err != nil {
							return nil, err
						}
						v, err := nc.Call(ctx, "vm.start", string(data))
						return decoded(v, err, func(v any) (any, error) { return vm.Decode[vm.Started](v) })
					}, nil)
				},
			},
			{
				Name: "stop", Usage: "stop a VM: ACPI powerdown, then QMP quit, then kill", ArgsUsage: nodeArg + " NAME",
				Flags: flags(&cli.FloatFlag{Name: "powerdown-timeout", Value: 10, Usage: "seconds the guest gets to power off (0: quit at once)"},
					&cli.BoolFlag{Name: "remove", Usage: "forget the VM and delete its console and event log afterwards"}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					return one(ctx, cmd, 2, nodeArg+" NAME", func(ctx context.Context, nc *cluster.NodeConn, a []string) (any, error) {
						v, err := nc.Call(ctx, "vm.stop", a[1], cmd.Float("powerdown-timeout"))
						if err == nil && cmd.Bool("remove") {
							_, err = nc.Call(ctx, "vm.remove", a[1])
						}
						return decoded(v, err, func(v any) (any, error) { return vm.Decode[vm.Stopped](v) })
					}, nil)
				},
			},
			{
				Name: "console", Usage: "print a VM's serial console from an offset", ArgsUsage: nodeArg + " NAME",
				Flags: flags(&cli.IntFlag{Name: "offset", Usage: "byte offset to start at"}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					return one(ctx, cmd, 2, nodeArg+" NAME", func(ctx context.Context, nc *cluster.NodeConn, a []string) (any, error) {
						var all []byte
						off := int64(cmd.Int("offset"))
						for len(all) < 64<<20 {
							v, err := nc.Call(ctx, "vm.console", a[1], off)
							if err != nil {
								return nil, err
							}
							c, err := vm.Decode[vm.ConsoleChunk](v)
							if err != nil {
								return nil, err
							}
							if len(c.Data) == 0 {
								break
							}
							all, off = append(all, c.Data...), c.Offset
						}
						return map[string]any{"data": string(all), "offset": off}, nil
					}, func(w io.Writer, v any) error {
						_, err := io.WriteString(w, v.(map[string]any)["data"].(string))
						return err
					})
				},
			},
			{
				Name: "wait-console", Usage: "wait for a pattern (RE2) on a VM's console; exit 1 when it does not come",
				ArgsUsage: nodeArg + " NAME PATTERN",
				Flags: flags(&cli.FloatFlag{Name: "wait", Value: 60, Usage: "seconds to wait for the pattern"},
					&cli.IntFlag{Name: "offset", Usage: "byte offset of the console to search from"}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					var matched bool
					err := one(ctx, cmd, 3, nodeArg+" NAME PATTERN", func(ctx context.Context, nc *cluster.NodeConn, a []string) (any, error) {
						v, err := nc.Call(ctx, "vm.wait_console", a[1], a[2], cmd.Float("wait"), int64(cmd.Int("offset")))
						return decoded(v, err, func(v any) (any, error) {
							m, err := vm.Decode[vm.ConsoleMatch](v)
							matched = m.Matched
							return m, err
						})
					}, func(w io.Writer, v any) error {
						if m := v.(vm.ConsoleMatch); m.Matched {
							fmt.Fprintln(w, m.Line)
						}
						return nil
					})
					if err == nil && !matched {
						return exitError{code: 1, err: fmt.Errorf("vm wait-console: %q did not appear within %g s", cmd.Args().Get(2), cmd.Float("wait"))}
					}
					return err
				},
			},
			{
				Name: "qmp", Usage: "run a QMP command and print its return as JSON", ArgsUsage: nodeArg + " NAME COMMAND [ARGUMENTS_JSON]",
				Flags: flags(),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					args := cmd.Args().Slice()
					want := 3
					if len(args) == 4 {
						want = 4
					}
					return one(ctx, cmd, want, nodeArg+" NAME COMMAND [ARGUMENTS_JSON]", func(ctx context.Context, nc *cluster.NodeConn, a []string) (any, error) {
						qargs := ""
						if len(a) == 4 {
							qargs = a[3]
						}
						v, err := nc.Call(ctx, "vm.qmp", a[1], a[2], qargs)
						if err != nil {
							return nil, err
						}
						s, _ := v.(string)
						return json.RawMessage(s), nil
					}, nil)
				},
			},
			vmMigrateCommand(e),
		},
	}
}

func readSpecArg(e *env, name string) ([]byte, error) {
	const max = 1 << 20
	var r io.Reader
	if name == "-" {
		r = e.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		return nil, fmt.Errorf("spec %s is larger than %d bytes", name, max)
	}
	return data, nil
}

// vmPartitionFile is the "vms" part of the runner's partition file.
type vmPartitionFile struct {
	VMs map[string]struct {
		On        string             `json:"on"`
		MigrateTo string             `json:"migrate_to"`
		Specs     map[string]vm.Spec `json:"specs"`
	} `json:"vms"`
}

func vmMigrateCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "migrate",
		Usage:     "live-migrate a VM to another node, check it runs there, stop the source",
		ArgsUsage: "NAME",
		Description: `Starts the destination listening, migrates over TCP, checks that the
destination runs and the source is paused (postmigrate), stops the source
and prints QMP's figures (total time, downtime, bytes). Inside a test body
--from defaults to where the partition file says the VM started, --to to its
migrate_to, and the destination's spec (its tap names) comes from the
partition file; elsewhere give --spec. Exit 1 when the migration fails, with
a message naming the VM, both nodes and QMP's error.`,
		Flags: []cli.Flag{connectTimeoutFlag(), jsonFlag(),
			&cli.StringFlag{Name: "from", Usage: "NODE|TAG the VM runs on"},
			&cli.StringFlag{Name: "to", Usage: "NODE|TAG to migrate to"},
			&cli.StringFlag{Name: "spec", Usage: "the destination's vm.Spec (JSON file, - for stdin)"},
			&cli.Int64Flag{Name: "max-bandwidth", Usage: "bytes per second (0: QEMU's default)"},
			&cli.Int64Flag{Name: "downtime-limit-ms", Usage: "downtime limit (0: QEMU's default, 300 ms)"},
			&cli.FloatFlag{Name: "wait", Value: 120, Usage: "seconds the migration may take before it is cancelled"},
			&cli.IntFlag{Name: "port", Usage: "connect to this port instead of the destination's (to test a failing migration)"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 1 {
				return usageError{errors.New("vm migrate: want NAME (see --help)")}
			}
			name := cmd.Args().First()
			from, to := cmd.String("from"), cmd.String("to")
			var spec vm.Spec
			var haveSpec bool
			if pf := os.Getenv(envPartitionFile); pf != "" {
				data, err := os.ReadFile(pf)
				if err != nil {
					return fmt.Errorf("vm migrate: $%s: %w", envPartitionFile, err)
				}
				var p vmPartitionFile
				if err := json.Unmarshal(data, &p); err != nil {
					return fmt.Errorf("vm migrate: $%s: %w", envPartitionFile, err)
				}
				if entry, ok := p.VMs[name]; ok {
					from = orStr(from, entry.On)
					to = orStr(to, entry.MigrateTo)
					spec, haveSpec = entry.Specs[to]
				}
			}
			if s := cmd.String("spec"); s != "" {
				data, err := readSpecArg(e, s)
				if err != nil {
					return err
				}
				if spec, err = vm.ParseSpec(data); err != nil {
					return usageError{fmt.Errorf("vm migrate: --spec: %w", err)}
				}
				haveSpec = true
			}
			switch {
			case from == "" || to == "":
				return usageError{errors.New("vm migrate: give --from and --to (inside a test body they default to the VM's on and migrate_to)")}
			case !haveSpec:
				return usageError{fmt.Errorf("vm migrate: no spec of %s for %s: give --spec", name, to)}
			}
			ctx, cancel := context.WithTimeout(ctx, time.Duration(cmd.Float("wait")*float64(time.Second))+time.Minute)
			defer cancel()
			var ends [2]runner.VMNode
			for i, target := range []string{from, to} {
				n, err := resolveNode(ctx, cmd, target)
				if err != nil {
					return err
				}
				nc, err := connectTarget(ctx, e, cmd, target)
				if err != nil {
					return err
				}
				defer nc.Close()
				ends[i] = runner.VMNode{Tag: target, Name: n.Name, Address: n.Host(), Call: nc.Call}
			}
			res, err := runner.MigrateVM(ctx, runner.MigrateRequest{
				VM: name, From: ends[0], To: ends[1], DestSpec: spec, Port: int(cmd.Int("port")),
				Options: vm.MigrateOptions{MaxBandwidth: cmd.Int64("max-bandwidth"), DowntimeLimitMs: cmd.Int64("downtime-limit-ms"), TimeoutS: cmd.Float("wait")},
				Logf:    func(format string, args ...any) { fmt.Fprintf(e.stderr, format+"\n", args...) },
			})
			if err != nil {
				if cmd.Bool(flagJSON) {
					writeJSON(e.stdout, map[string]any{"error": err.Error(), "result": res})
				}
				return exitError{code: 1, err: err}
			}
			if cmd.Bool(flagJSON) {
				return writeJSON(e.stdout, map[string]any{"result": res})
			}
			_, err = fmt.Fprintf(e.stdout, "vm %s migrated from %s to %s: total %d ms, downtime %d ms, %d bytes\n",
				name, ends[0], ends[1], res.TotalTimeMs, res.DowntimeMs, res.Transferred)
			return err
		},
	}
}

func orStr(a, b string) string {
	if a != "" {
		return a
	}
	return strings.TrimSpace(b)
}
