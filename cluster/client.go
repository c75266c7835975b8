package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// DefaultCallTimeout bounds a call whose context has no deadline: Python's
// client has none and a hung agent would block it forever; ours must not.
const DefaultCallTimeout = 2 * time.Minute

// maxReply bounds a reply body. The agent keeps its replies below it:
// process output is capped at 16 MiB per stream, about 43 MiB as base64
// for both.
const maxReply = 64 << 20

// Client calls one node's agent over XML-RPC. It is safe for concurrent
// use; connections are kept alive and reused.
type Client struct {
	node  string
	url   string
	token string
	http  *http.Client
	tr    *http.Transport
}

// CallError is returned for every failed call; it names the node and the
// method. Err is an *xmlrpc.Fault when the agent raised, otherwise the
// transport or protocol error.
type CallError struct {
	Node   string
	Method string
	Err    error
}

// Error names the node and the method; the package prefix is the
// wrapper's to add, so that a call failing inside a cluster operation
// does not read "cluster: …: cluster: …".
func (e *CallError) Error() string {
	return fmt.Sprintf("node %q: %s: %v", e.Node, e.Method, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

// NewClient returns a client that reaches node's agent through t. token,
// when not empty, is sent as HTTP Basic auth (user "vtc"), which is how
// our agent's token is presented by Python's ServerProxy too.
func NewClient(node string, t Transport, token string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return t.DialAgent(ctx)
		},
		MaxIdleConns:        8,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	return &Client{
		node: node,
		// The transport decides where bytes go; the URL only sets the
		// Host header, and the agent accepts a loopback address there
		// whatever way it is reached (it refuses foreign names against
		// DNS rebinding).
		url:   "http://127.0.0.1/",
		token: token,
		tr:    tr,
		http:  &http.Client{Transport: tr},
	}
}

// Node returns the node name the client was made for.
func (c *Client) Node() string { return c.node }

// Call invokes method with positional args and returns the decoded result.
// Errors are *CallError; errors.As(err, **xmlrpc.Fault) finds a remote
// exception.
func (c *Client) Call(ctx context.Context, method string, args ...any) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	wrap := func(err error) error { return &CallError{Node: c.node, Method: method, Err: err} }
	if args == nil {
		args = []any{}
	}
	body, err := xmlrpc.EncodeCall(method, args)
	if err != nil {
		return nil, wrap(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, wrap(err)
	}
	req.Header.Set("Content-Type", "text/xml")
	req.Header.Set("User-Agent", "vtcluster")
	if c.token != "" {
		req.SetBasicAuth("vtc", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, wrap(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return nil, wrap(fmt.Errorf("reading reply: %w", err))
	}
	if len(data) > maxReply {
		return nil, wrap(fmt.Errorf("reply larger than %d bytes", maxReply))
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return nil, wrap(errors.New("agent refused the token (HTTP 401): check token_file"))
	default:
		return nil, wrap(fmt.Errorf("agent answered HTTP %s", resp.Status))
	}
	v, err := xmlrpc.DecodeResponse(data)
	if err != nil {
		if f, ok := xmlrpc.AsFault(err); ok {
			return nil, wrap(f)
		}
		return nil, wrap(err)
	}
	return v, nil
}

// RoundTripper returns the HTTP transport that reaches the agent, for
// proxies that relay other clients' calls; it adds the token, if any.
func (c *Client) RoundTripper() http.RoundTripper {
	if c.token == "" {
		return c.tr
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.SetBasicAuth("vtc", c.token)
		return c.tr.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Close drops idle connections. The transport is not closed: its owner
// (the node) decides when the SSH connection goes away.
func (c *Client) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}
