package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster/lab"
	"github.com/vtcluster/vtcluster/internal/atomicfile"
)

// labCommand is what "make demo" and the tests build their hosts with, and
// the quickest way to try the CLI without machines of one's own.
func labCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "lab",
		Usage: "build or tear down a local lab of SSH hosts in network namespaces (to try vtcluster, demos and tests; needs root)",
		Description: `Each lab host is a network namespace with its own address, hostname and
sshd, reachable from this machine through a bridge. Hosts share this
machine's filesystem and processes; only network and hostname differ.

Examples:
   vtcluster lab up --hosts 2 --dir /tmp/lab --cluster-config /tmp/lab/cluster.json
   vtcluster lab up --hosts 3 --subnet 10.124.0.0/16 --dir /tmp/lab3
   vtcluster lab status --dir /tmp/lab
   vtcluster lab down --dir /tmp/lab
   vtcluster lab reap`,
		Commands: []*cli.Command{labUpCommand(e), labDownCommand(e), labStatusCommand(e), labReapCommand(e)},
	}
}

func labDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "dir", Usage: "`DIR` holding the lab's keys, configs, logs and lab.json", Required: true, TakesFile: true}
}

func labUpCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "build a lab and leave its sshds running",
		Flags: []cli.Flag{
			labDirFlag(),
			&cli.IntFlag{Name: "hosts", Value: 2, Usage: "number of hosts (1..200)"},
			&cli.StringFlag{Name: "prefix", Usage: "name prefix for namespaces and interfaces (default: random vtl...)"},
			&cli.StringFlag{Name: "subnet", Usage: "IPv4 `PREFIX` for the lab's addresses: a /24 used as is, or a wider prefix searched for a free /24 (default: a free /24 of 10.250.0.0/16)"},
			&cli.BoolFlag{Name: "password-user", Usage: "also create a throwaway user with a random password (see the lab's password file)"},
			&cli.StringFlag{Name: "cluster-config", Usage: "write a cluster JSON file for the lab to `PATH`", TakesFile: true},
			&cli.BoolFlag{Name: "json", Usage: "print the lab as JSON (the content of lab.json)"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() > 0 {
				return usageError{fmt.Errorf("lab up: unexpected arguments %q", cmd.Args().Slice())}
			}
			if n := cmd.Int("hosts"); n < 1 || n > 200 {
				return usageError{fmt.Errorf("lab up: --hosts %d: want 1 to 200", n)}
			}
			var subnet netip.Prefix
			if s := cmd.String("subnet"); s != "" {
				p, err := netip.ParsePrefix(s)
				if err != nil || !p.Addr().Is4() || p.Bits() > 24 {
					return usageError{fmt.Errorf("lab up: --subnet %q: want an IPv4 prefix of /24 or wider, e.g. 10.124.0.0/16", s)}
				}
				subnet = p.Masked()
			}
			l, err := lab.Up(ctx, lab.Spec{
				Dir:          cmd.String("dir"),
				Hosts:        int(cmd.Int("hosts")),
				Prefix:       cmd.String("prefix"),
				PasswordUser: cmd.Bool("password-user"),
				Subnet:       subnet,
			})
			if err != nil {
				return err
			}
			cfgPath := cmd.String("cluster-config")
			if cfgPath != "" {
				if err := writeLabClusterConfig(l, cfgPath); err != nil {
					// A failed command leaves nothing running behind it.
					return errors.Join(err, l.Down())
				}
			}
			if cmd.Bool("json") {
				return labPrintJSON(e, l)
			}
			labPrint(e, l, cfgPath)
			return nil
		},
	}
}

func writeLabClusterConfig(l *lab.Lab, path string) error {
	b, err := l.ClusterConfig()
	if err != nil {
		return fmt.Errorf("lab: cluster config: %w", err)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("lab: cluster config: %w", err)
		}
	}
	if err := atomicfile.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("lab: cluster config: %w", err)
	}
	return nil
}

func labPrintJSON(e *env, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

func labPrint(e *env, l *lab.Lab, cfgPath string) {
	w := e.stdout
	fmt.Fprintf(w, "lab %s up in %s (subnet %s, controller address %s)\n", l.Prefix, l.Dir, l.Subnet, l.Gateway)
	for _, h := range l.Hosts {
		fmt.Fprintf(w, "  %-8s %-18s hostname %s\n", h.Name, h.Addr(), h.Hostname)
	}
	fmt.Fprintf(w, "client key:  %s\nknown_hosts: %s\n", l.ClientKey, l.KnownHosts)
	if l.User != nil {
		fmt.Fprintf(w, "password user: %s (password in %s)\n", l.User.Name, l.User.PasswordFile)
	}
	if cfgPath != "" {
		fmt.Fprintf(w, "cluster config: %s\n", cfgPath)
	}
	if len(l.Hosts) > 0 {
		fmt.Fprintf(w, "log in:    ssh -i %s -o UserKnownHostsFile=%s root@%s\n", l.ClientKey, l.KnownHosts, l.Hosts[0].Address)
	}
	fmt.Fprintf(w, "tear down: vtcluster lab down --dir %s\n", l.Dir)
}

func labDownCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "down",
		Usage: "stop everything in a lab and remove its namespaces, bridge and user",
		Flags: []cli.Flag{labDirFlag()},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			dir := cmd.String("dir")
			if _, err := os.Stat(filepath.Join(dir, "lab.json")); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(e.stdout, "no lab in %s\n", dir)
				return nil
			}
			if err := lab.Down(dir); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "lab in %s is down\n", dir)
			return nil
		},
	}
}

func labStatusCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "check each lab host (namespace, sshd, port); exit 1 if any is unhealthy",
		Flags: []cli.Flag{labDirFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			dir := cmd.String("dir")
			l, err := lab.Load(dir)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("lab status: no lab in %s (no lab.json)", dir)
			}
			if err != nil {
				return err
			}
			st := l.Status(ctx)
			healthy := true
			for _, s := range st {
				healthy = healthy && s.Netns && s.SSHD && s.Reachable
			}
			if cmd.Bool("json") {
				if err := labPrintJSON(e, map[string]any{"dir": l.Dir, "prefix": l.Prefix, "healthy": healthy, "hosts": st}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(e.stdout, "lab %s in %s\n", l.Prefix, l.Dir)
				for _, s := range st {
					fmt.Fprintf(e.stdout, "  %-8s %-15s netns=%s sshd=%s reachable=%s\n", s.Name, s.Address, labYesNo(s.Netns), labYesNo(s.SSHD), labYesNo(s.Reachable))
				}
			}
			if !healthy {
				return exitError{code: 1}
			}
			return nil
		},
	}
}

func labYesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func labReapCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "reap",
		Usage: "tear down stale labs: their creator process is gone or their directory was removed",
		Flags: []cli.Flag{&cli.StringFlag{Name: "prefix", Usage: "only labs whose prefix starts with this"}},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			removed, err := lab.DownAll(cmd.String("prefix"))
			for _, p := range removed {
				fmt.Fprintf(e.stdout, "removed stale lab %s\n", p)
			}
			return err
		},
	}
}
