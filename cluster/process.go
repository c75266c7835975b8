package cluster

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/vtcluster/vtcluster/agent/py"
)

// RunOptions are process.run's options, as the agent's process service
// takes them. The zero value runs the command with the agent's defaults.
type RunOptions struct {
	// Timeout kills the command after this long; 0 keeps the agent's
	// default. The call itself waits RunGrace longer for the reply.
	Timeout time.Duration
	// Env is added to the agent's minimal environment.
	Env map[string]string
	// Cwd is the working directory on the node (absolute).
	Cwd string
	// Owner is the partition the command belongs to: the next owner's
	// hand-over stops it if it outlives its test.
	Owner string
	// LogOutput logs each line of output into the agent's log stream.
	LogOutput bool
}

// RunResult is what process.run reports of a finished command.
type RunResult struct {
	// ExitCode is Python's returncode: negative -N when signal N ended it.
	ExitCode        int
	Stdout, Stderr  []byte
	StdoutTruncated bool
	StderrTruncated bool
	TimedOut        bool
	Duration        time.Duration
}

// RunGrace is how much longer than the command's own timeout a process.run
// call waits for its reply: the agent kills the command at the timeout and
// still has to answer.
const RunGrace = 30 * time.Second

// Run runs argv on the node through the agent's process.run, the one
// typed client of that call (the runner's steps and `vtcluster exec` use
// it). A command that ran and failed is a result, not an error; an error
// means the call itself failed (CallError, or a reply that is not what the
// process service sends).
func (c *Client) Run(ctx context.Context, argv []string, opts RunOptions) (RunResult, error) {
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout+RunGrace)
		defer cancel()
	}
	args, o := processParams(argv, opts)
	v, err := c.Call(ctx, "process.run", args, o)
	if err != nil {
		return RunResult{}, err
	}
	res, err := decodeRunResult(v)
	if err != nil {
		return RunResult{}, &CallError{Node: c.node, Method: "process.run", Err: err}
	}
	return res, nil
}

// Start starts argv on the node with the agent's process.start and returns
// the process id the agent gave it (for process.kill, process.wait). The
// options are Run's; Timeout bounds the command, not the call.
func (c *Client) Start(ctx context.Context, argv []string, opts RunOptions) (string, error) {
	args, o := processParams(argv, opts)
	v, err := c.Call(ctx, "process.start", args, o)
	if err != nil {
		return "", err
	}
	id, ok := v.(string)
	if !ok {
		return "", &CallError{Node: c.node, Method: "process.start", Err: fmt.Errorf("reply is %s, want str", py.TypeName(v))}
	}
	return id, nil
}

// processParams is the (argv, options) params of process.run and
// process.start.
func processParams(argv []string, opts RunOptions) ([]any, map[string]any) {
	o := map[string]any{}
	if opts.Timeout > 0 {
		o["timeout"] = opts.Timeout.Seconds()
	}
	if len(opts.Env) > 0 {
		env := make(map[string]any, len(opts.Env))
		for k, v := range opts.Env {
			env[k] = v
		}
		o["env"] = env
	}
	if opts.Cwd != "" {
		o["cwd"] = opts.Cwd
	}
	if opts.Owner != "" {
		o["owner"] = opts.Owner
	}
	if opts.LogOutput {
		o["log_output"] = true
	}
	args := make([]any, len(argv))
	for i, a := range argv {
		args[i] = a
	}
	return args, o
}

// decodeRunResult reads process.run's reply. Output may come as bytes (our
// agent) or str (a Python agent's text); anything else is a protocol
// error, never a silently empty field.
func decodeRunResult(v any) (RunResult, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return RunResult{}, fmt.Errorf("reply is %s, want a struct", py.TypeName(v))
	}
	var res RunResult
	code, ok := py.Int(m["exit_code"])
	if !ok {
		return RunResult{}, fmt.Errorf("exit_code is %s, want int", py.TypeName(m["exit_code"]))
	}
	res.ExitCode = int(code)
	var err error
	if res.Stdout, err = outputField(m, "stdout"); err != nil {
		return RunResult{}, err
	}
	if res.Stderr, err = outputField(m, "stderr"); err != nil {
		return RunResult{}, err
	}
	res.StdoutTruncated, _ = m["stdout_truncated"].(bool)
	res.StderrTruncated, _ = m["stderr_truncated"].(bool)
	res.TimedOut, _ = m["timed_out"].(bool)
	if d, ok := m["duration"].(float64); ok {
		res.Duration = time.Duration(d * float64(time.Second))
	}
	return res, nil
}

func outputField(m map[string]any, key string) ([]byte, error) {
	switch v := m[key].(type) {
	case []byte:
		return v, nil
	case string:
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%s is not valid text", key)
		}
		return []byte(v), nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("%s is %s, want bytes", key, py.TypeName(m[key]))
}

// Run runs argv on the node; see Client.Run.
func (nc *NodeConn) Run(ctx context.Context, argv []string, opts RunOptions) (RunResult, error) {
	return nc.agent.Run(ctx, argv, opts)
}

// Start starts argv on the node; see Client.Start.
func (nc *NodeConn) Start(ctx context.Context, argv []string, opts RunOptions) (string, error) {
	return nc.agent.Start(ctx, argv, opts)
}
