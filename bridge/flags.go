package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/etcdstore"
)

// Flag groups shared by the controller commands, defined once here so that
// a flag means the same thing, with the same environment variable, in every
// command. Each group is a function returning fresh flags: a urfave/cli
// flag holds its parsed value and must not be shared between commands.
// Help text is generated from these definitions; urfave/cli appends the
// environment variable of every flag that has one as [$NAME].

// Environment variables read by the controller commands.
const (
	envStateDir       = cluster.EnvStateDir
	envCluster        = cluster.EnvCluster
	envParallel       = "VTCLUSTER_PARALLEL"
	envConnectTimeout = "VTCLUSTER_CONNECT_TIMEOUT"
	envTimeout        = "VTCLUSTER_TIMEOUT"
	envAgentBinary    = "VTCLUSTER_AGENT_BINARY"
	envExecTimeout    = "VTCLUSTER_EXEC_TIMEOUT"
	envState          = etcdstore.EnvState
	envStateTimeout   = etcdstore.EnvTimeout
	// envPartitionFile is set by the runner inside a test body; call,
	// exec and cp resolve partition tags through it (see resolveNode).
	envPartitionFile = cluster.EnvPartitionFile
)

// Flag names used by more than one command.
const (
	flagState          = "state"
	flagStateTimeout   = "state-timeout"
	flagEtcdCA         = "etcd-ca"
	flagEtcdCert       = "etcd-cert"
	flagEtcdKey        = "etcd-key"
	flagEtcdUser       = "etcd-user"
	flagEtcdPassFile   = "etcd-password-file"
	flagStateDir       = "state-dir"
	flagCluster        = "cluster"
	flagJSON           = "json"
	flagAcceptNewKeys  = "accept-new-host-keys"
	flagConnectTimeout = "connect-timeout"
	flagParallel       = "parallel"
	flagTimeout        = "timeout"
	flagAgentBinary    = "agent-binary"
)

// globalFlags select the cluster state. They sit on the root command and
// are persistent, so both "vtcluster --state-dir D node list" (what the
// Python shim runs) and "vtcluster node list --state-dir D" work.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name: flagStateDir, Value: cluster.DefaultStateDir(), Sources: cli.EnvVars(envStateDir), TakesFile: true,
			Usage: "`DIR` holding the cluster state, one <cluster>.json per cluster",
		},
		&cli.StringFlag{
			Name: flagCluster, Value: cluster.DefaultClusterName, Sources: cli.EnvVars(envCluster),
			Usage: "`NAME` of the cluster to work on (letters, digits, '.', '_', '-')",
		},
		&cli.StringFlag{
			Name: flagState, Sources: cli.EnvVars(envState),
			Usage: "`URL` of the state shared by several controllers: etcd://host:2379[,host:2379]/prefix (etcds:// for TLS), or file:///dir; default: the state directory",
		},
		&cli.StringFlag{
			Name: flagStateTimeout, Value: etcdstore.DefaultTimeout.String(), Sources: cli.EnvVars(envStateTimeout),
			Usage: "`DURATION` each request to etcd may take before the command fails",
		},
		// etcd credentials: files and a user name only. The password is
		// read from a file or from $VTCLUSTER_ETCD_PASSWORD, never from
		// the command line, where every user of the host could read it.
		&cli.StringFlag{Name: flagEtcdCA, Sources: cli.EnvVars(etcdstore.EnvCA), TakesFile: true, Usage: "`FILE` with the CA certificate(s) that verify etcd (TLS)"},
		&cli.StringFlag{Name: flagEtcdCert, Sources: cli.EnvVars(etcdstore.EnvCert), TakesFile: true, Usage: "client certificate `FILE` for etcd (TLS)"},
		&cli.StringFlag{Name: flagEtcdKey, Sources: cli.EnvVars(etcdstore.EnvKey), TakesFile: true, Usage: "client key `FILE` for etcd (TLS)"},
		&cli.StringFlag{Name: flagEtcdUser, Sources: cli.EnvVars(etcdstore.EnvUser), Usage: "etcd user `NAME` (password from --etcd-password-file or $" + etcdstore.EnvPassword + ")"},
		&cli.StringFlag{Name: flagEtcdPassFile, Sources: cli.EnvVars(etcdstore.EnvPasswordFile), TakesFile: true, Usage: "`FILE` holding the etcd user's password"},
	}
}

// jsonFlag switches a listing command to JSON output.
func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: flagJSON, Usage: "print JSON instead of text"}
}

// sshFlags tune how nodes are reached over SSH.
func sshFlags() []cli.Flag {
	return []cli.Flag{
		// Deliberately without an environment variable: trusting unknown
		// host keys is decided on each command line, never inherited.
		&cli.BoolFlag{
			Name:  flagAcceptNewKeys,
			Usage: "record the host key of a node seen for the first time (trust on first use); a changed key is refused regardless",
		},
		connectTimeoutFlag(),
	}
}

// connectTimeoutFlag bounds each SSH login.
func connectTimeoutFlag() cli.Flag {
	return &cli.StringFlag{
		Name: flagConnectTimeout, Value: "15s", Sources: cli.EnvVars(envConnectTimeout),
		Usage: "`DURATION` allowed for each node's SSH connect and login (e.g. 15s, 1m, or plain seconds)",
	}
}

// parallelFlag bounds how many nodes a command works on at once.
func parallelFlag() cli.Flag {
	return &cli.IntFlag{
		Name: flagParallel, Value: cluster.DefaultParallel, Sources: cli.EnvVars(envParallel),
		Usage: "work on at most `N` nodes at once (1 to 256)",
	}
}

// timeoutFlag bounds a whole command; def is the command's own default.
func timeoutFlag(def time.Duration) cli.Flag {
	return &cli.StringFlag{
		Name: flagTimeout, Value: def.String(), Sources: cli.EnvVars(envTimeout),
		Usage: "give up after `DURATION` (e.g. 90s, 5m, or plain seconds)",
	}
}

// agentBinaryFlag names the executable deployed to nodes as their agent.
func agentBinaryFlag() cli.Flag {
	return &cli.StringFlag{
		Name: flagAgentBinary, Sources: cli.EnvVars(envAgentBinary), TakesFile: true,
		Usage: "vtcluster executable to deploy as the nodes' agent, built for their architecture (default: the agent-only build vtcluster-agent beside this executable when it is the same build, else this executable)",
	}
}

// flagError is a bad flag value: a usage error naming the flag.
func flagError(flag, format string, args ...any) error {
	return usageError{fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...))}
}

// parseDuration reads a duration written as Go does ("1m30s") or as plain
// seconds ("90", "2.5"), which is what shell scripts and avocado-vt's
// timeouts use.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 || f > float64(1<<62)/float64(time.Second) {
			return 0, fmt.Errorf("%q is out of range", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 30s, 5m, 1h or plain seconds)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// durationFlag returns the value of a duration flag; a bad value is a
// usage error naming the flag.
func durationFlag(cmd *cli.Command, name string) (time.Duration, error) {
	d, err := parseDuration(cmd.String(name))
	if err != nil {
		return 0, flagError(name, "%v", err)
	}
	return d, nil
}

// withTimeout applies the command's --timeout to ctx (zero means none),
// and ends ctx on SIGINT or SIGTERM too (see withSignals).
func withTimeout(ctx context.Context, cmd *cli.Command) (context.Context, context.CancelFunc, error) {
	d, err := durationFlag(cmd, flagTimeout)
	if err != nil {
		return ctx, func() {}, err
	}
	ctx, stop := withSignals(ctx)
	if d == 0 {
		return ctx, stop, nil
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, func() { cancel(); stop() }, nil
}

// withSignals ends ctx on the first SIGINT or SIGTERM, so that a command
// cancels its remote work (exec's command is killed by the agent, uploads
// remove their temporary files) instead of dying in the middle of it. A
// second signal has its default effect.
func withSignals(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

// openStore opens the state of the cluster chosen by the global flags:
// the file store in the state directory unless --state names another. An
// etcd store's connections are closed when the command tree returns.
func openStore(cmd *cli.Command) (etcdstore.Opened, error) {
	st, err := openStateSpec(cmd, cmd.String(flagState))
	if err != nil {
		return nil, err
	}
	if root := cmd.Root(); root != nil {
		if root.Metadata == nil {
			root.Metadata = map[string]any{}
		}
		opened, _ := root.Metadata[metaStores].([]cluster.Store)
		root.Metadata[metaStores] = append(opened, st)
	}
	return st, nil
}

// loadState opens the store the command names (closed with the root
// command, as openStore's are) and reads its state.
func loadState(ctx context.Context, cmd *cli.Command) (etcdstore.Opened, *cluster.State, error) {
	st, err := openStore(cmd)
	if err != nil {
		return nil, nil, err
	}
	s, err := st.Load(ctx)
	return st, s, err
}

// metaStores is the root command's metadata key listing the stores its
// commands opened, closed by closeStores.
const metaStores = "vtcluster.stores"

// closeStores closes the stores openStore opened under root.
func closeStores(root *cli.Command) {
	opened, _ := root.Metadata[metaStores].([]cluster.Store)
	for _, st := range opened {
		etcdstore.CloseStore(st)
	}
}

// openStateSpec opens the store spec names (a --state value; empty means
// the state directory) for the cluster of the global flags.
func openStateSpec(cmd *cli.Command, spec string) (etcdstore.Opened, error) {
	dir := expandHome(cmd.String(flagStateDir))
	if spec == "" && dir == "" {
		return nil, fmt.Errorf("no state directory: set --%s or %s (the home directory is unknown, so there is no default)", flagStateDir, envStateDir)
	}
	name := cmd.String(flagCluster)
	if name == "" {
		name = cluster.DefaultClusterName
	}
	timeout, err := durationFlag(cmd, flagStateTimeout)
	if err != nil {
		return nil, err
	}
	st, err := etcdstore.OpenState(etcdstore.Selection{
		State: spec, StateDir: dir, Cluster: name, Timeout: timeout,
		Creds: etcdstore.Credentials{
			CAFile: expandHome(cmd.String(flagEtcdCA)), CertFile: expandHome(cmd.String(flagEtcdCert)), KeyFile: expandHome(cmd.String(flagEtcdKey)),
			Username: cmd.String(flagEtcdUser), Password: os.Getenv(etcdstore.EnvPassword), PasswordFile: expandHome(cmd.String(flagEtcdPassFile)),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("opening cluster state: %w", err)
	}
	return st, nil
}

// expandHome expands a leading "~/", which a value from a config file or
// an environment variable did not get from the shell.
func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

// storeAndConfig opens the command's store and reads its controller
// settings, what every command that drives nodes starts with.
func storeAndConfig(e *env, cmd *cli.Command) (etcdstore.Opened, cluster.ControllerConfig, error) {
	st, err := openStore(cmd)
	if err != nil {
		return nil, cluster.ControllerConfig{}, err
	}
	cfg, err := controllerConfig(e, cmd)
	return st, cfg, err
}

// controllerConfig builds the controller settings from the flags the
// command has: SSH, parallelism and timeout. Progress lines go to stderr.
func controllerConfig(e *env, cmd *cli.Command) (cluster.ControllerConfig, error) {
	cfg := cluster.ControllerConfig{Progress: e.stderr, Logger: stderrLogger(e)}
	if hasFlag(cmd, flagParallel) {
		p := cmd.Int(flagParallel)
		if p < 1 || p > 256 {
			return cfg, flagError(flagParallel, "%d is not in 1..256", p)
		}
		cfg.Parallel = p
	}
	if hasFlag(cmd, flagConnectTimeout) {
		d, err := durationFlag(cmd, flagConnectTimeout)
		if err != nil {
			return cfg, err
		}
		cfg.Connect.ConnectTimeout = d
	}
	if hasFlag(cmd, flagAcceptNewKeys) {
		cfg.Connect.AcceptNewHostKeys = cmd.Bool(flagAcceptNewKeys)
	}
	if hasFlag(cmd, flagTimeout) {
		d, err := durationFlag(cmd, flagTimeout)
		if err != nil {
			return cfg, err
		}
		cfg.StartTimeout = d
	}
	return cfg, nil
}

// agentBinary is --agent-binary, or the agent-only build beside the
// running executable when it is the same build, or the running executable
// (chooseAgentBinary); it says which on stderr.
func agentBinary(ctx context.Context, e *env, cmd *cli.Command) (string, error) {
	if p := cmd.String(flagAgentBinary); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", flagError(flagAgentBinary, "%v", err)
		}
		if fi, err := os.Stat(abs); err != nil || !fi.Mode().IsRegular() {
			return "", flagError(flagAgentBinary, "%s is not a regular file", abs)
		}
		return abs, nil
	}
	exe, err := executable()
	if err != nil {
		return "", fmt.Errorf("cannot locate this executable to deploy it as the agent (%w): pass --%s", err, flagAgentBinary)
	}
	bin, why := chooseAgentBinary(ctx, exe)
	fmt.Fprintf(e.stderr, "vtcluster: agent binary %s: %s\n", bin, why)
	return bin, nil
}

// hasFlag reports whether cmd itself defines the flag.
func hasFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// stderrLogger shows the cluster package's warnings (an agent that had to
// be killed, a reclaimed partition) without its routine information.
func stderrLogger(e *env) *slog.Logger {
	return newLineLogger(e.stderr, slog.LevelWarn)
}

// noArgs rejects positional arguments on commands that take none.
func noArgs(cmd *cli.Command) error {
	if cmd.Args().Len() > 0 {
		return usageError{fmt.Errorf("%s: unexpected arguments %q (see --help)", cmd.FullName(), cmd.Args().Slice())}
	}
	return nil
}

// writeJSON prints v as indented JSON. Commands marshal their own output
// structs, never the cluster package's types, so the output stays stable
// when those evolve.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns a writer that aligns tab-separated columns with spaces.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// resultsError summarises failed nodes of a cluster-wide operation; each
// failure was already printed on its progress line. Nil when all succeeded
// and err is nil.
func resultsError(what string, results []cluster.NodeResult, err error) error {
	failed := 0
	for _, r := range results {
		if !r.OK {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d nodes failed: %w", what, failed, len(results), err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// nodeResultJSON is one node's outcome in --json output.
type nodeResultJSON struct {
	Node            string  `json:"node"`
	OK              bool    `json:"ok"`
	Detail          string  `json:"detail,omitempty"`
	Error           string  `json:"error,omitempty"`
	DurationSeconds float64 `json:"duration_seconds"`
}

// printResults prints per-node outcomes as a table or JSON.
func printResults(e *env, asJSON bool, results []cluster.NodeResult) error {
	if asJSON {
		out := make([]nodeResultJSON, len(results))
		for i, r := range results {
			out[i] = nodeResultJSON{Node: r.Node, OK: r.OK, Detail: r.Detail, Error: r.Error, DurationSeconds: r.Duration.Seconds()}
		}
		return writeJSON(e.stdout, out)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "NODE\tRESULT\tDETAIL")
	for _, r := range results {
		res, detail := "ok", r.Detail
		if !r.OK {
			res, detail = "FAILED", firstLine(r.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Node, res, detail)
	}
	return tw.Flush()
}

// firstLine keeps table cells on one line; the full text is in --json.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// isNoMatch reports a selection that found nothing, which exits 2.
func isNoMatch(err error) bool {
	var nm *cluster.NoMatchError
	return errors.As(err, &nm) || errors.Is(err, cluster.ErrUnsatisfiable)
}
