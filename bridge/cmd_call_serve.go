package bridge

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/tidwall/gjson"
	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// maxServeInFlight bounds the requests "call --serve" runs at once; more
// wait to be read, so a flood of requests cannot grow memory without end.
const maxServeInFlight = 32

// serveRequest is one line of "call --serve" input.
type serveRequest struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// serveCalls is "call --serve": one connection to the node, many calls.
// It lets a long-lived client (the Python shim's node.proxy) pay for the
// SSH login once instead of once per call, without any listening port:
// the requests come on this process's stdin, from its parent.
func serveCalls(ctx context.Context, e *env, cmd *cli.Command, target string) error {
	perCall, err := durationFlag(cmd, flagTimeout)
	if err != nil {
		return err
	}
	ctx, stop := withSignals(ctx)
	defer stop()
	nc, err := connectTarget(ctx, e, cmd, target)
	if err != nil {
		return err
	}
	defer nc.Close()

	var outMu sync.Mutex
	reply := func(id json.RawMessage, key string, v any) {
		line, err := json.Marshal(map[string]any{"id": id, key: v})
		if err != nil { // a value toJSONValue accepted always marshals
			line, _ = json.Marshal(map[string]any{"id": id, "error": err.Error()})
		}
		outMu.Lock()
		defer outMu.Unlock()
		e.stdout.Write(append(line, '\n'))
	}
	one := func(req serveRequest) {
		if req.Method == "" {
			reply(req.ID, "error", `want {"id": ..., "method": "a.b", "params": [...]}`)
			return
		}
		params := []any{}
		if len(req.Params) > 0 {
			if !gjson.ValidBytes(req.Params) || !gjson.ParseBytes(req.Params).IsArray() {
				reply(req.ID, "error", "params: want a JSON array")
				return
			}
			v, err := parseJSONArg(string(req.Params))
			if err != nil {
				reply(req.ID, "error", "params: "+err.Error())
				return
			}
			params = v.([]any)
		}
		cctx, cancel := ctx, context.CancelFunc(func() {})
		if perCall > 0 {
			cctx, cancel = context.WithTimeout(ctx, perCall)
		}
		defer cancel()
		res, err := nc.Call(cctx, req.Method, params...)
		if f, ok := xmlrpc.AsFault(err); ok {
			reply(req.ID, "fault", map[string]string{"exc_type": f.ExcType, "exc_value": f.ExcValue, "tb_info": f.TbInfo})
			return
		}
		var wf *xmlrpc.WireFault
		if errors.As(err, &wf) {
			reply(req.ID, "wire_fault", map[string]any{"code": wf.Code, "string": wf.String})
			return
		}
		if err != nil {
			reply(req.ID, "error", fmt.Sprintf("calling %s: %v", req.Method, err))
			return
		}
		out, err := toJSONValue(res)
		if err != nil {
			reply(req.ID, "error", fmt.Sprintf("%s returned %v", req.Method, err))
			return
		}
		reply(req.ID, "result", out)
	}

	sem := make(chan struct{}, maxServeInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	sc := bufio.NewScanner(e.stdin)
	sc.Buffer(make([]byte, 0, 64<<10), maxStdinParams)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var req serveRequest
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			reply(nil, "error", "request is not a JSON object: "+err.Error())
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			one(req)
		}()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("call --serve: reading requests: %w", err)
	}
	return nil
}
