package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// ControllerConfig tunes cluster-wide operations.
type ControllerConfig struct {
	// Binary is the vtcluster executable uploaded to nodes as their agent.
	// Required for Bootstrap; other operations do not need it.
	Binary string
	// InstallKeys makes Bootstrap add the public half of a host's key_file
	// to the login user's authorized_keys when the config gives the host a
	// password (like ssh-copy-id), so the password is needed this once
	// only. A host with a password but no key_file is then an error.
	InstallKeys bool
	// Parallel bounds how many nodes are worked on at once; zero means
	// DefaultParallel.
	Parallel int
	// Connect is used for every node connection.
	Connect ConnectOptions
	// StartTimeout bounds one node's agent start when ctx has no earlier
	// deadline; zero means 60 s.
	StartTimeout time.Duration
	// Progress, when set, receives one line per node as each finishes
	// (and a summary); nil prints nothing.
	Progress io.Writer
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
}

// DefaultParallel is how many nodes are worked on at once by default.
// SSH handshakes dominate; 16 keeps a 16-host bring-up in one wave.
const DefaultParallel = 16

// Controller runs operations over a cluster's registered nodes.
type Controller struct {
	st  Store
	cfg ControllerConfig
	log *slog.Logger
}

// NewController returns a controller over the state in st.
func NewController(st Store, cfg ControllerConfig) *Controller {
	if cfg.Parallel <= 0 {
		cfg.Parallel = DefaultParallel
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.Connect.Logger = log
	return &Controller{st: st, cfg: cfg, log: log}
}

// Store returns the controller's state store.
func (c *Controller) Store() Store { return c.st }

// NodeResult is the outcome of one node in a cluster-wide operation.
type NodeResult struct {
	Node     string        `json:"node"`
	OK       bool          `json:"ok"`
	Detail   string        `json:"detail,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	err      error
}

// Err returns the node's error, nil if it succeeded.
func (r NodeResult) Err() error { return r.err }

// forEachConn is forEach with a connection to each node, closed when fn
// returns.
func (c *Controller) forEachConn(ctx context.Context, what string, nodes []Node, fn func(ctx context.Context, n Node, nc *NodeConn) (string, error)) []NodeResult {
	return c.forEach(ctx, what, nodes, func(ctx context.Context, n Node) (string, error) {
		nc, err := c.Connect(ctx, n)
		if err != nil {
			return "", err
		}
		defer nc.Close()
		return fn(ctx, n, nc)
	})
}

// forEach runs fn on every node, at most cfg.Parallel at once, printing a
// progress line as each finishes. Results come back in the nodes' order.
func (c *Controller) forEach(ctx context.Context, what string, nodes []Node, fn func(ctx context.Context, n Node) (string, error)) []NodeResult {
	results := make([]NodeResult, len(nodes))
	sem := make(chan struct{}, c.cfg.Parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] = NodeResult{Node: n.Name, Error: ctx.Err().Error(), err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			start := time.Now()
			detail, err := fn(ctx, n)
			r := NodeResult{Node: n.Name, OK: err == nil, Detail: detail, Duration: time.Since(start), err: err}
			if err != nil {
				r.Error = err.Error()
			}
			results[i] = r
			mu.Lock()
			done++
			if c.cfg.Progress != nil {
				status := "ok"
				if err != nil {
					status = "FAILED: " + err.Error()
				} else if detail != "" {
					status = detail
				}
				fmt.Fprintf(c.cfg.Progress, "[%d/%d] %s %s: %s (%.1fs)\n", done, len(nodes), what, n.Name, status, r.Duration.Seconds())
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if c.cfg.Progress != nil && len(nodes) > 0 {
		failed := 0
		for _, r := range results {
			if !r.OK {
				failed++
			}
		}
		fmt.Fprintf(c.cfg.Progress, "%s: %d of %d nodes ok", what, len(nodes)-failed, len(nodes))
		if failed > 0 {
			fmt.Fprintf(c.cfg.Progress, ", %d failed", failed)
		}
		fmt.Fprintln(c.cfg.Progress)
	}
	return results
}

// joinResults turns failed results into one error, nil if all succeeded.
func joinResults(results []NodeResult) error {
	var errs []error
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	return errors.Join(errs...)
}

// Nodes returns the registered nodes named, all of them when names is
// empty. An unknown name is an error.
func (c *Controller) Nodes(ctx context.Context, names ...string) ([]Node, error) {
	s, err := c.st.Load(ctx)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return s.Nodes, nil
	}
	out := make([]Node, 0, len(names))
	for _, name := range names {
		n := s.Node(name)
		if n == nil {
			return nil, fmt.Errorf("cluster: no node named %q (registered: %s)", name, strings.Join(s.SortedNames(), ", "))
		}
		out = append(out, *n)
	}
	return out, nil
}

// Connect reaches one registered node.
func (c *Controller) Connect(ctx context.Context, n Node) (*NodeConn, error) {
	return Connect(ctx, n, c.cfg.Connect)
}

// Bootstrap registers the hosts of a validated cluster config and deploys
// the agent binary to each, in parallel. Like upstream, a failing host
// does not stop the others; unlike upstream, it is not registered half
// way, and the error lists every failure. Passwords are used for this
// login only and never stored.
func (c *Controller) Bootstrap(ctx context.Context, conf *Config) ([]NodeResult, error) {
	if c.cfg.Binary == "" {
		return nil, errors.New("cluster: bootstrap needs the agent binary path")
	}
	nodes := make([]Node, len(conf.Hosts))
	byName := map[string]HostConfig{}
	for i, h := range conf.Hosts {
		nodes[i] = h.Node()
		byName[h.Name] = h
	}
	results := c.forEach(ctx, "deploy", nodes, func(ctx context.Context, n Node) (string, error) {
		opts := c.cfg.Connect
		opts.Password = byName[n.Name].Password
		if c.cfg.InstallKeys && opts.Password != "" {
			if err := installKey(ctx, n, opts); err != nil {
				return "", err
			}
		}
		return c.deploy(ctx, n, opts)
	})
	var deployed []Node
	for i, r := range results {
		if r.OK {
			deployed = append(deployed, nodes[i])
		}
	}
	err := c.st.Update(ctx, func(s *State) error {
		for _, n := range deployed {
			if old := s.Node(n.Name); old != nil {
				// Keep what we learnt about the running agent and the node.
				n.Agent, n.Properties, n.PropertiesAt = old.Agent, old.Properties, old.PropertiesAt
			}
			if err := s.RegisterNode(n, true); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return results, err
	}
	return results, joinResults(results)
}

// Deploy uploads the agent binary to the named registered nodes (all when
// none is named), as Bootstrap does for a config's hosts; it serves nodes
// registered one by one (vtcluster node add). Logins use keys only, since
// no password is ever stored.
func (c *Controller) Deploy(ctx context.Context, names ...string) ([]NodeResult, error) {
	if c.cfg.Binary == "" {
		return nil, errors.New("cluster: deploy needs the agent binary path")
	}
	nodes, err := c.Nodes(ctx, names...)
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, ErrNoNodes
	}
	results := c.forEach(ctx, "deploy", nodes, func(ctx context.Context, n Node) (string, error) {
		return c.deploy(ctx, n, c.cfg.Connect)
	})
	return results, joinResults(results)
}

// installKey authorizes the public half of n's key file for the login user,
// logging in with opts (and its password).
func installKey(ctx context.Context, n Node, opts ConnectOptions) error {
	if n.KeyFile == "" {
		return fmt.Errorf("cluster: node %q: installing a login key needs key_file in the host's config", n.Name)
	}
	pem, err := os.ReadFile(n.KeyFile)
	if err != nil {
		return fmt.Errorf("cluster: node %q: key_file: %w", n.Name, err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return fmt.Errorf("cluster: node %q: key_file %s: %w", n.Name, n.KeyFile, err)
	}
	nc, err := Connect(ctx, n, opts)
	if err != nil {
		return err
	}
	defer nc.Close()
	sc, err := nc.SSH(ctx)
	if err != nil {
		return err
	}
	line := append(bytes.TrimSpace(ssh.MarshalAuthorizedKey(signer.PublicKey())), " vtcluster"...)
	if err := sc.InstallAuthorizedKey(ctx, line); err != nil {
		return fmt.Errorf("cluster: node %q: %w", n.Name, err)
	}
	return nil
}

// deploy puts the agent binary on one node; the detail says whether it
// had to be uploaded.
func (c *Controller) deploy(ctx context.Context, n Node, opts ConnectOptions) (string, error) {
	nc, err := Connect(ctx, n, opts)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	res, err := nc.SetupAgentEnv(ctx, c.cfg.Binary)
	if err != nil {
		return "", err
	}
	if res.Skipped {
		return "agent binary already up to date", nil
	}
	return "agent binary uploaded", nil
}

// StartAgents starts the agents of the named nodes (all when none is
// named), collects their properties and records both. An agent that
// already answers is reused.
func (c *Controller) StartAgents(ctx context.Context, names ...string) ([]NodeResult, error) {
	nodes, err := c.Nodes(ctx, names...)
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, ErrNoNodes
	}
	type started struct {
		info  AgentInfo
		props map[string]any
	}
	var mu sync.Mutex
	got := map[string]started{}
	results := c.forEach(ctx, "start agent", nodes, func(ctx context.Context, n Node) (string, error) {
		sctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
		defer cancel()
		nc, err := c.Connect(sctx, n)
		if err != nil {
			return "", err
		}
		defer nc.Close()
		info, err := nc.StartAgent(sctx)
		if err != nil {
			return "", err
		}
		props, err := CollectProperties(sctx, nc.Agent())
		if err != nil {
			return "", fmt.Errorf("cluster: node %q: collecting properties: %w", n.Name, err)
		}
		props, err = MergeLabels(props, n.Labels)
		if err != nil {
			return "", fmt.Errorf("cluster: node %q: %w", n.Name, err)
		}
		mu.Lock()
		got[n.Name] = started{info, props}
		mu.Unlock()
		return fmt.Sprintf("agent up (pid %d)", info.PID), nil
	})
	now := time.Now().UTC()
	uerr := c.st.Update(ctx, func(s *State) error {
		for name, g := range got {
			if n := s.Node(name); n != nil {
				n.Agent = g.info
				n.Properties = g.props
				n.PropertiesAt = now
			}
		}
		return nil
	})
	return results, errors.Join(joinResults(results), uerr)
}

// StopAgents stops the agents of the named nodes (all when none named).
func (c *Controller) StopAgents(ctx context.Context, names ...string) ([]NodeResult, error) {
	nodes, err := c.Nodes(ctx, names...)
	if err != nil {
		return nil, err
	}
	results := c.forEachConn(ctx, "stop agent", nodes, func(ctx context.Context, n Node, nc *NodeConn) (string, error) {
		if h := c.heldElsewhere(ctx, nc); h != nil {
			// Another controller's test runs there (owner.go): stopping
			// the agent would kill it.
			return fmt.Sprintf("left running: held by controller host %s (partition %s of %s), outside this state", h.Owner.Host, h.ID, h.Owner), nil
		}
		return "stopped", nc.StopAgent(ctx)
	})
	return results, errors.Join(joinResults(results), c.forgetAgents(ctx, results))
}

// FetchLogs copies every named node's agent logs into dir/<node>/.
func (c *Controller) FetchLogs(ctx context.Context, dir func(node string) string, names ...string) ([]NodeResult, error) {
	nodes, err := c.Nodes(ctx, names...)
	if err != nil {
		return nil, err
	}
	results := c.forEachConn(ctx, "fetch logs", nodes, func(ctx context.Context, n Node, nc *NodeConn) (string, error) {
		return dir(n.Name), nc.FetchAgentLogs(ctx, dir(n.Name))
	})
	return results, joinResults(results)
}

// NodeStatus is one row of `vtcluster status`; its JSON is that of
// `vtcluster status --json`, which adds what other packages know.
type NodeStatus struct {
	Name       string         `json:"node"`
	Address    string         `json:"address"`
	Bind       string         `json:"agent_bind"`
	AgentUp    bool           `json:"agent_up"`
	AgentError string         `json:"agent_error,omitempty"`
	Properties map[string]any `json:"properties,omitempty"`
	Partition  string         `json:"partition,omitempty"`
	Tag        string         `json:"tag,omitempty"`
	Owner      string         `json:"owner,omitempty"`
	// OwnerHost is the host of the partition's owner: with a shared
	// (etcd) state, which controller machine holds the node.
	OwnerHost string `json:"owner_host,omitempty"`
	// LeaseLeft is in seconds. It is not in the JSON because 0 there must
	// tell a lease that ran out from no partition: the CLI writes it as
	// lease_seconds_left only with a partition.
	LeaseLeft float64 `json:"-"`
}

// Status probes every node's agent in parallel and reports, with what the
// state says about partitions and properties.
func (c *Controller) Status(ctx context.Context) ([]NodeStatus, error) {
	s, err := c.st.Load(ctx)
	if err != nil {
		return nil, err
	}
	rows := make([]NodeStatus, len(s.Nodes))
	idx := map[string]int{}
	for i, n := range s.Nodes {
		rows[i] = NodeStatus{Name: n.Name, Address: n.Host(), Bind: n.AgentBind, Properties: n.Properties}
		idx[n.Name] = i
	}
	now := time.Now()
	for _, p := range s.Partitions {
		for _, a := range p.Nodes {
			if i, ok := idx[a.Node]; ok {
				rows[i].Partition, rows[i].Tag, rows[i].Owner = p.ID, a.Tag, p.Owner.String()
				rows[i].OwnerHost = p.Owner.Host
				rows[i].LeaseLeft = p.Expires.Sub(now).Seconds()
			}
		}
	}
	quiet := *c
	quiet.cfg.Progress = nil
	results := quiet.forEach(ctx, "probe", s.Nodes, func(ctx context.Context, n Node) (string, error) {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		nc, err := c.Connect(pctx, n)
		if err != nil {
			return "", err
		}
		defer nc.Close()
		if _, err := nc.Call(pctx, "core.is_alive"); err != nil {
			return "", err
		}
		return "", nil
	})
	for i, r := range results {
		rows[i].AgentUp = r.OK
		rows[i].AgentError = r.Error
	}
	sort.SliceStable(rows, func(a, b int) bool { return idx[rows[a].Name] < idx[rows[b].Name] })
	return rows, nil
}

// Reachable tells the named nodes (all when none is named) that accept a
// TCP connection within timeout, on their SSH port or, for a direct-mode
// node, their agent port, from those that do not. It lets a caller that
// must touch every node (a job's post hook) skip a node it already knows
// is gone, instead of waiting a full SSH connect timeout on it once per
// step. Down results carry the dial error.
func (c *Controller) Reachable(ctx context.Context, timeout time.Duration, names ...string) (up []string, down []NodeResult, err error) {
	nodes, err := c.Nodes(ctx, names...)
	if err != nil {
		return nil, nil, err
	}
	quiet := *c
	quiet.cfg.Progress = nil
	results := quiet.forEach(ctx, "probe", nodes, func(ctx context.Context, n Node) (string, error) {
		port := n.ShellPort
		if n.AgentBind == AgentBindDirect {
			port = n.ProxyPort
		}
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var d net.Dialer
		conn, err := d.DialContext(dctx, "tcp", net.JoinHostPort(n.Host(), strconv.Itoa(port)))
		if err != nil {
			return "", fmt.Errorf("node %q is unreachable: %w", n.Name, err)
		}
		return "", conn.Close()
	})
	for _, r := range results {
		if r.OK {
			up = append(up, r.Node)
		} else {
			down = append(down, r)
		}
	}
	return up, down, nil
}

// NodeHeldError refuses to work on a node that a live partition holds.
type NodeHeldError struct {
	Node, Partition string
	Owner           Owner
}

func (e *NodeHeldError) Error() string {
	return fmt.Sprintf("node %q is held by partition %s (%s)", e.Node, e.Partition, e.Owner)
}

// CleanupAgents stops the named nodes' agents (all when none is named)
// and removes their agent directories: what upstream's
// cleanup_agent_env does, so that nothing of vtcluster stays on a node.
// A node held by a live partition whose owner still runs is refused
// (*NodeHeldError) before any node is touched, unless the partition is one
// of own: the caller's, which upstream's example cleans up inside of.
func (c *Controller) CleanupAgents(ctx context.Context, own []string, names ...string) ([]NodeResult, error) {
	s, err := c.st.Load(ctx)
	if err != nil {
		return nil, err
	}
	nodes, err := c.Nodes(ctx, names...)
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, ErrNoNodes
	}
	now := time.Now()
	var held []error
	for _, n := range nodes {
		if p := s.partitionOf(n.Name); p != nil && p.Live(now) && !slices.Contains(own, p.ID) {
			if gone, _ := p.Owner.Gone(); !gone {
				held = append(held, &NodeHeldError{Node: n.Name, Partition: p.ID, Owner: p.Owner})
			}
		}
	}
	if len(held) > 0 {
		return nil, errors.Join(held...)
	}
	results := c.forEachConn(ctx, "clean up agent", nodes, func(ctx context.Context, n Node, nc *NodeConn) (string, error) {
		if err := nc.StopAgent(ctx); err != nil {
			return "", err
		}
		if err := nc.CleanupAgentEnv(ctx); err != nil {
			return "", err
		}
		return "agent stopped, " + n.AgentDir() + " removed", nil
	})
	return results, errors.Join(joinResults(results), c.forgetAgents(ctx, results))
}

// forgetAgents clears the agent record of every node whose result is OK:
// its agent is stopped.
func (c *Controller) forgetAgents(ctx context.Context, results []NodeResult) error {
	return c.st.Update(ctx, func(s *State) error {
		for _, r := range results {
			if n := s.Node(r.Node); n != nil && r.OK {
				n.Agent = AgentInfo{}
			}
		}
		return nil
	})
}
