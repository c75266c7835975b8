package bridge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
	"github.com/vtcluster/vtcluster/cluster"
)

// How XML-RPC values that JSON lacks are written, both in call's output
// and in its JSON arguments. One rule, no guessing: binary data is always
// an object {"__base64__": "<standard base64>"}, even when it happens to
// be text, and a dateTime is {"__datetime__": "YYYY-MM-DDTHH:MM:SS"}
// (naive, as XML-RPC has no zone). Non-finite doubles are
// {"__float__": "inf" | "-inf" | "nan"}.
const (
	jsonBase64Key   = "__base64__"
	jsonDatetimeKey = "__datetime__"
	jsonFloatKey    = "__float__"
	datetimeLayout  = "2006-01-02T15:04:05"
)

func callCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "call",
		Usage:     "call one agent method on a node and print the result as JSON",
		ArgsUsage: "NODE|TAG METHOD [ARG...]",
		Description: `Each ARG is one JSON value, passed as one positional parameter; a string
must be quoted as JSON, so write '"text"' in the shell. Binary data is
written {"__base64__": "..."} and a dateTime {"__datetime__":
"2006-01-02T15:04:05"}, both in arguments and in the printed result, which
is always one JSON document (bytes are never printed raw, even when they
are text; use "vtcluster exec" for command output).

A method that raises prints "<exc_type>: <exc_value>" on stderr and exits
1; --traceback adds the agent's traceback.

NODE is a registered node's name. Inside a test body, where
VTCLUSTER_PARTITION_FILE is set, a tag of the test's partition ("src",
"dst") names the node it was given.

Examples:
   vtcluster call node1 examples.hello.ping
   vtcluster call node1 core.get_job_results_dir '"job-1"'
   vtcluster call src process.run '["uname", "-r"]' '{"timeout": 10}'

With --json (for programs, such as the Python shim's node.proxy), stdout
is always one JSON object: {"result": VALUE}, or {"fault": {"exc_type",
"exc_value", "tb_info"}} with exit status 1 when the method raised.
--params-stdin reads the arguments as one JSON array from stdin instead
of ARG..., so that they stay out of the process list and argv limits.

With --serve (and no METHOD), call keeps one connection to the node and
answers requests read from stdin, one JSON object per line, {"id": N,
"method": "a.b", "params": [...]}, with one line each, {"id": N,
"result": ...}, {"id": N, "fault": {...}} or {"id": N, "error": "..."},
in the order they finish; requests run concurrently and --timeout bounds
each one. It ends at the end of its input.`,
		Flags: slices.Concat([]cli.Flag{connectTimeoutFlag()}, []cli.Flag{
			timeoutFlag(cluster.DefaultCallTimeout),
			&cli.BoolFlag{Name: "traceback", Usage: "print the agent's traceback when the method raises"},
			&cli.BoolFlag{Name: "params-stdin", Usage: "read the arguments as one JSON array from stdin"},
			&cli.BoolFlag{Name: flagJSON, Usage: `print {"result": ...} or {"fault": {...}} on stdout`},
			&cli.BoolFlag{Name: "serve", Usage: "answer JSON call requests read from stdin, one per line, over one connection"},
		}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			args := cmd.Args().Slice()
			if cmd.Bool("serve") {
				if len(args) != 1 {
					return usageError{errors.New("call --serve: want exactly NODE|TAG (methods come from stdin)")}
				}
				return serveCalls(ctx, e, cmd, args[0])
			}
			if len(args) < 2 {
				return usageError{errors.New("call: want NODE|TAG METHOD [ARG...] (see --help)")}
			}
			params, err := callParams(e, cmd, args[2:])
			if err != nil {
				return err
			}
			res, err := callNode(ctx, e, cmd, args[0], func(ctx context.Context, nc *cluster.NodeConn) (any, error) {
				return nc.Call(ctx, args[1], params...)
			})
			if err != nil {
				return err
			}
			out, err := toJSONValue(res)
			if err != nil {
				return fmt.Errorf("call: %s returned %w", args[1], err)
			}
			if cmd.Bool(flagJSON) {
				return writeJSON(e.stdout, map[string]any{"result": out})
			}
			return writeJSON(e.stdout, out)
		},
	}
}

// callNode connects to the node target names (a node, or a tag of the
// test's partition) within the command's --timeout and runs call there; a
// fault the method raised is reported by faultExit.
func callNode(ctx context.Context, e *env, cmd *cli.Command, target string, call func(context.Context, *cluster.NodeConn) (any, error)) (any, error) {
	ctx, cancel, err := withTimeout(ctx, cmd)
	if err != nil {
		return nil, err
	}
	defer cancel()
	nc, err := connectTarget(ctx, e, cmd, target)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	res, err := call(ctx, nc)
	if err != nil {
		return nil, faultExit(e, cmd, err)
	}
	return res, nil
}

// maxStdinParams bounds --params-stdin; an XML-RPC request that large is
// a mistake, not a use.
const maxStdinParams = 64 << 20

// callParams decodes the method's arguments from ARG... or, with
// --params-stdin, from one JSON array on stdin.
func callParams(e *env, cmd *cli.Command, args []string) ([]any, error) {
	if !cmd.Bool("params-stdin") {
		params := make([]any, 0, len(args))
		for i, a := range args {
			v, err := parseJSONArg(a)
			if err != nil {
				return nil, usageError{fmt.Errorf("call: argument %d %q: %w", i+1, a, err)}
			}
			params = append(params, v)
		}
		return params, nil
	}
	if len(args) > 0 {
		return nil, usageError{errors.New("call: --params-stdin takes the arguments from stdin; give no ARG")}
	}
	data, err := io.ReadAll(io.LimitReader(e.stdin, maxStdinParams+1))
	if err != nil {
		return nil, fmt.Errorf("call: reading stdin: %w", err)
	}
	if len(data) > maxStdinParams {
		return nil, usageError{fmt.Errorf("call: stdin holds more than %d bytes of arguments", maxStdinParams)}
	}
	if !gjson.ValidBytes(data) || !gjson.ParseBytes(data).IsArray() {
		return nil, usageError{errors.New("call: --params-stdin: stdin is not one JSON array")}
	}
	v, err := parseJSONArg(string(data))
	if err != nil {
		return nil, usageError{fmt.Errorf("call: --params-stdin: %w", err)}
	}
	return v.([]any), nil
}

// faultExit prints a remote exception the way Python shows one and exits
// 1; other errors go through as they are.
func faultExit(e *env, cmd *cli.Command, err error) error {
	f, ok := xmlrpc.AsFault(err)
	var wf *xmlrpc.WireFault
	if !ok && cmd.Bool(flagJSON) && errors.As(err, &wf) {
		// Not avocado-vt's JSON fault: hand over code and string as they
		// came, as Python's xmlrpc.client.Fault would.
		if werr := writeJSON(e.stdout, map[string]any{"wire_fault": map[string]any{
			"code": wf.Code, "string": wf.String,
		}}); werr != nil {
			return werr
		}
		return exitError{code: 1, err: err}
	}
	if !ok {
		return err
	}
	if cmd.Bool(flagJSON) {
		if werr := writeJSON(e.stdout, map[string]any{"fault": map[string]string{
			"exc_type": f.ExcType, "exc_value": f.ExcValue, "tb_info": f.TbInfo,
		}}); werr != nil {
			return werr
		}
	}
	if cmd.Bool("traceback") && f.TbInfo != "" {
		fmt.Fprint(e.stderr, strings.TrimRight(f.TbInfo, "\n")+"\n")
	}
	fmt.Fprintf(e.stderr, "%s: %s\n", f.ExcType, f.ExcValue)
	return exitError{code: 1}
}

// parseJSONArg reads one call argument: strictly JSON, so that what a
// string is never depends on what it happens to look like.
func parseJSONArg(s string) (any, error) {
	if !gjson.Valid(s) {
		return nil, fmt.Errorf("not a JSON value; quote strings as JSON, e.g. '\"%s\"'", strings.ReplaceAll(s, `"`, `\"`))
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return fromJSONValue(v, "$")
}

// fromJSONValue turns decoded JSON into XML-RPC values: integers that fit
// int64 stay integers, other numbers become doubles, and the tagged
// objects described above become bytes, times and special doubles. path
// names the value in errors ($[0].key).
func fromJSONValue(v any, path string) (any, error) {
	switch t := v.(type) {
	case json.Number:
		n, err := py.Number(t.String())
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		return n, nil
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			var err error
			if out[i], err = fromJSONValue(x, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		if len(t) == 1 {
			for k, x := range t {
				if tagged, ok, err := fromTagged(k, x, path); ok || err != nil {
					return tagged, err
				}
			}
		}
		out := make(map[string]any, len(t))
		for k, x := range t {
			var err error
			if out[k], err = fromJSONValue(x, path+"."+k); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil // nil, bool, string
}

func fromTagged(key string, v any, path string) (any, bool, error) {
	switch key {
	case jsonBase64Key, jsonDatetimeKey, jsonFloatKey:
	default:
		return nil, false, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, true, fmt.Errorf("%s.%s: want a string", path, key)
	}
	switch key {
	case jsonBase64Key:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, true, fmt.Errorf("%s.%s: %v", path, key, err)
		}
		return b, true, nil
	case jsonDatetimeKey:
		t, err := time.Parse(datetimeLayout, s)
		if err != nil {
			return nil, true, fmt.Errorf("%s.%s: want YYYY-MM-DDTHH:MM:SS: %v", path, key, err)
		}
		return t, true, nil
	}
	switch s {
	case "inf":
		return math.Inf(1), true, nil
	case "-inf":
		return math.Inf(-1), true, nil
	case "nan":
		return math.NaN(), true, nil
	}
	return nil, true, fmt.Errorf("%s.%s: want \"inf\", \"-inf\" or \"nan\"", path, key)
}

// toJSONValue is the inverse of fromJSONValue for a decoded reply.
func toJSONValue(v any) (any, error) {
	switch t := v.(type) {
	case nil, bool, string, int, int64:
		return t, nil
	case float64:
		switch {
		case math.IsInf(t, 1):
			return map[string]any{jsonFloatKey: "inf"}, nil
		case math.IsInf(t, -1):
			return map[string]any{jsonFloatKey: "-inf"}, nil
		case math.IsNaN(t):
			return map[string]any{jsonFloatKey: "nan"}, nil
		}
		return t, nil
	case []byte:
		return map[string]any{jsonBase64Key: base64.StdEncoding.EncodeToString(t)}, nil
	case time.Time:
		return map[string]any{jsonDatetimeKey: t.Format(datetimeLayout)}, nil
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			var err error
			if out[i], err = toJSONValue(x); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			var err error
			if out[k], err = toJSONValue(x); err != nil {
				return nil, err
			}
		}
		return out, nil
	case xmlrpc.Struct:
		out := make(map[string]any, len(t))
		for _, m := range t {
			var err error
			if out[m.Key], err = toJSONValue(m.Value); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("a value of unexpected type %T", v)
}

// partitionFile is the part of the runner's partition file that call and
// exec read.
type partitionFile struct {
	ID    string `json:"id"`
	Nodes map[string]struct {
		Name string `json:"name"`
	} `json:"nodes"`
}

// resolveNode finds the node a command line names: a tag of the partition
// in $VTCLUSTER_PARTITION_FILE (inside a test body), else a registered
// node's name.
func resolveNode(ctx context.Context, cmd *cli.Command, name string) (cluster.Node, error) {
	var tags []string
	if pf := os.Getenv(envPartitionFile); pf != "" {
		p, err := readPartitionFile(pf)
		if err != nil {
			return cluster.Node{}, err
		}
		if n, ok := p.Nodes[name]; ok {
			name = n.Name
		}
		tags = slices.Sorted(maps.Keys(p.Nodes))
	}
	st, s, err := loadState(ctx, cmd)
	if err != nil {
		return cluster.Node{}, err
	}
	if n := s.Node(name); n != nil {
		return *n, nil
	}
	msg := fmt.Sprintf("no node named %q in %s (registered: %s)", name, st.Path(), strings.Join(s.SortedNames(), ", "))
	if tags != nil {
		msg += fmt.Sprintf(", and no such tag in $%s (tags: %s)", envPartitionFile, strings.Join(tags, ", "))
	}
	return cluster.Node{}, errors.New(msg)
}

func readPartitionFile(path string) (*partitionFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading $%s: %w", envPartitionFile, err)
	}
	if !gjson.ValidBytes(data) {
		return nil, fmt.Errorf("$%s: %s is not valid JSON", envPartitionFile, path)
	}
	if r := gjson.GetBytes(data, "nodes"); !r.IsObject() {
		return nil, fmt.Errorf("$%s: %s: key \"nodes\": want an object of tag to node", envPartitionFile, path)
	}
	var p partitionFile
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("$%s: %s: %w", envPartitionFile, path, err)
	}
	for tag, n := range p.Nodes {
		if n.Name == "" {
			return nil, fmt.Errorf("$%s: %s: nodes.%s.name: want the node's name", envPartitionFile, path, tag)
		}
	}
	return &p, nil
}

// connectTarget resolves NODE|TAG and connects to its agent.
func connectTarget(ctx context.Context, e *env, cmd *cli.Command, name string) (*cluster.NodeConn, error) {
	n, err := resolveNode(ctx, cmd, name)
	if err != nil {
		return nil, err
	}
	cfg, err := controllerConfig(e, cmd)
	if err != nil {
		return nil, err
	}
	return cluster.Connect(ctx, n, cfg.Connect)
}

func execCommand(e *env) *cli.Command {
	return &cli.Command{
		Name: "exec",
		// Environment values may hold commas; each --env is one value.
		DisableSliceFlagSeparator: true,
		Usage:                     "run a command on a node through its agent; exits with the command's exit code",
		ArgsUsage:                 "NODE|TAG -- COMMAND [ARG...]",
		Description: `Runs COMMAND (an argv, never a shell string: use sh -c '...' for shell
syntax) with the agent's process.run, in a minimal environment, and copies
its output to this command's stdout and stderr unchanged. The exit code is
the command's; 124 when it ran out of --timeout, 128+N when signal N
killed it.

NODE|TAG is resolved as for "vtcluster call".

Examples:
   vtcluster exec node1 -- uname -a
   vtcluster exec --timeout 30 src -- sh -c 'ip -br addr; exit 3'; echo $?
   vtcluster exec node2 --env LC_ALL=C --cwd /tmp -- ls -l`,
		Flags: slices.Concat([]cli.Flag{connectTimeoutFlag()}, []cli.Flag{
			&cli.StringFlag{
				Name: flagTimeout, Value: "10m", Sources: cli.EnvVars(envExecTimeout),
				Usage: "kill the command after `DURATION` (e.g. 30s, 5m, or plain seconds; at most a week)",
			},
			&cli.StringSliceFlag{Name: "env", Usage: "`KEY=VALUE` added to the command's environment (repeatable)"},
			&cli.StringFlag{Name: "cwd", Usage: "working `DIR` on the node"},
		}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			args := cmd.Args().Slice()
			if len(args) < 2 {
				return usageError{errors.New("exec: want NODE|TAG -- COMMAND [ARG...] (see --help)")}
			}
			timeout, err := durationFlag(cmd, flagTimeout)
			if err != nil {
				return err
			}
			if timeout <= 0 || timeout > maxExecTimeout {
				return flagError(flagTimeout, "%s is not between 1s and %s", timeout, maxExecTimeout)
			}
			opts := cluster.RunOptions{Timeout: timeout, Cwd: cmd.String("cwd")}
			// An interrupt ends the call early, and the agent then kills
			// the command too. (Run gives the call the timeout and the
			// moment the reply needs after it.)
			ctx, stop := withSignals(ctx)
			defer stop()
			if envs := cmd.StringSlice("env"); len(envs) > 0 {
				opts.Env = map[string]string{}
				for _, kv := range envs {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return flagError("env", "%q is not KEY=VALUE", kv)
					}
					opts.Env[k] = v
				}
			}
			// Inside a test body: the command belongs to the test's
			// partition, so the next test's hand-over stops it if it
			// outlives this test.
			opts.Owner = os.Getenv(cluster.EnvPartitionID)
			nc, err := connectTarget(ctx, e, cmd, args[0])
			if err != nil {
				return err
			}
			defer nc.Close()
			res, err := nc.Run(ctx, args[1:], opts)
			if err != nil && ctx.Err() != nil {
				return fmt.Errorf("exec: %w; the agent stops the command when its caller goes away", context.Cause(ctx))
			}
			if f, ok := xmlrpc.AsFault(err); ok && !cmd.Bool(flagJSON) {
				if code, ok := execStartFaults[f.ExcType]; ok {
					// The command did not start: a shell's exit codes.
					return exitError{code: code, err: fmt.Errorf("exec: %s: %s", args[0], f.ExcValue)}
				}
			}
			if err != nil {
				return faultExit(e, cmd, err)
			}
			return execResult(e, res, timeout)
		},
	}
}

// execStartFaults are the exception types the agent answers when the
// command could not be started, with the exit code a shell gives then.
var execStartFaults = map[string]int{
	"FileNotFoundError": 127, // no such command
	"PermissionError":   126, // not executable
}

// execResult copies a process.run result to our streams and picks the
// exit code.
func execResult(e *env, res cluster.RunResult, timeout time.Duration) error {
	for _, out := range []struct {
		name      string
		b         []byte
		truncated bool
		w         io.Writer
	}{{"stdout", res.Stdout, res.StdoutTruncated, e.stdout}, {"stderr", res.Stderr, res.StderrTruncated, e.stderr}} {
		if _, err := out.w.Write(out.b); err != nil {
			return fmt.Errorf("exec: writing the command's %s: %w", out.name, err)
		}
		if out.truncated {
			fmt.Fprintf(e.stderr, "vtcluster: exec: the command's %s was truncated by the agent\n", out.name)
		}
	}
	if res.TimedOut {
		fmt.Fprintf(e.stderr, "vtcluster: exec: the command ran out of its %s timeout and was killed\n", timeout)
		return exitError{code: 124}
	}
	switch code := res.ExitCode; {
	case code == 0:
		return nil
	case code < 0:
		return exitError{code: 128 - code} // Python's -N: killed by signal N
	case code > 255:
		return exitError{code: 1}
	default:
		return exitError{code: code}
	}
}

// maxExecTimeout bounds exec's --timeout: every call has a deadline.
const maxExecTimeout = 7 * 24 * time.Hour
