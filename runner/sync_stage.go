package runner

// The sync stage: the test's hub and its sockets for the body and the
// nodes, the environment that lets the test's own processes use them, the
// steps that synchronise, and the record (sync.json, debug.log).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/agent/py"
)

// SyncResultFile is the record of the test's synchronisation in its
// results directory: {"events": [SyncEvent...], "dropped": N}.
const SyncResultFile = "sync.json"

// syncForwarder is implemented by clusters that can bring the processes
// on a node to the test's sync service: serve gets a listener whose
// connections come from the node, socket is its path there, binDir holds
// the command aliases (lava-send, rhts-sync-set, ...). cleanup closes the
// way again; it is non-nil whenever err is nil.
type syncForwarder interface {
	ForwardSync(ctx context.Context, node PartitionNode, serve func(net.Listener)) (socket, binDir string, cleanup func(context.Context), err error)
}

// backgroundStarter is implemented by clusters that start commands in the
// background; stop ends the command (and is safe to call after it ended).
type backgroundStarter interface {
	StartBackground(ctx context.Context, node PartitionNode, argv []string, opts ExecOptions) (stop func(context.Context), err error)
}

// syncRun is one test's synchronisation while it runs.
type syncRun struct {
	hub      *syncHub
	srv      *syncServer
	dir      string                       // the body's socket directory
	nodeEnv  map[string]map[string]string // tag -> environment of its processes
	cleanups []func(context.Context)
	events   chan SyncEvent
	logDone  chan struct{}

	mu     sync.Mutex
	bg     []func(context.Context) // stops of background commands
	bgTags map[string]bool         // tags with a background command: they stay running
}

// syncStage sets up the hub before the body. A node that cannot be
// reached for sync only loses node-side sync (a warning); JSON steps and
// the body still synchronise.
func (r *testRun) syncStage(ctx context.Context, rs *runState) (outcome, bool) {
	if len(rs.part.Nodes) == 0 {
		return outcome{}, true
	}
	start := time.Now()
	var tags, nodes []string
	var members []SyncInfoMember
	for _, n := range rs.part.Nodes {
		tags, nodes = append(tags, n.Tag), append(nodes, n.Name)
		members = append(members, SyncInfoMember{Tag: n.Tag, Node: n.Name, Address: n.Address})
	}
	s := &syncRun{hub: newSyncHub(tags, nodes), nodeEnv: map[string]map[string]string{},
		events: make(chan SyncEvent, 1024), logDone: make(chan struct{}), bgTags: map[string]bool{}}
	s.hub.onEvent = func(ev SyncEvent) {
		// The timeline shows who arrived where and when (a short lock of
		// its own; never blocks the hub).
		r.events.Add(syncTimelineEvent(ev))
		select {
		case s.events <- ev:
		default: // the log falls behind; sync.json still has it
		}
	}
	go func() {
		defer close(s.logDone)
		for ev := range s.events {
			r.logf(ctx, "%s", formatSyncEvent(ev))
		}
	}()
	s.srv = newSyncServer(s.hub, members)
	// Read only by the body (op env), which starts after this stage.
	s.srv.envOf = func(tag string) map[string]string { return s.nodeEnv[tag] }
	fail := func(err error) (outcome, bool) {
		r.syncClose(ctx, s)
		return outcome{Result: resultError, Reason: "runner: sync: " + err.Error()}, false
	}
	// The body's socket: a private directory of its own, as the results
	// directory may be too deep for a socket path.
	dir, err := os.MkdirTemp("", "vtcluster-sync-")
	if err != nil {
		return fail(err)
	}
	s.dir = dir
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		return fail(err)
	}
	s.srv.serve(ln)
	// Not mergeEnv: that drops the partition's variables, which rs.env
	// holds by now.
	rs.env = append(slices.DeleteFunc(rs.env, func(kv string) bool {
		return strings.HasPrefix(kv, EnvSyncSocket+"=") || strings.HasPrefix(kv, EnvSyncToken+"=")
	}), EnvSyncSocket+"="+filepath.Join(dir, "s"), EnvSyncToken+"="+s.srv.newToken(""))
	if fw, ok := rs.cl.(syncForwarder); ok {
		// All nodes at once: each costs a few SSH round trips.
		type fwd struct {
			sock, binDir string
			cleanup      func(context.Context)
			err          error
		}
		got := make([]fwd, len(rs.part.Nodes))
		r.atOnce(len(rs.part.Nodes), func(i int) {
			got[i].sock, got[i].binDir, got[i].cleanup, got[i].err = fw.ForwardSync(ctx, rs.part.Nodes[i], s.srv.serve)
		})
		for i := range rs.part.Nodes {
			if got[i].cleanup != nil {
				s.cleanups = append(s.cleanups, got[i].cleanup)
			}
		}
		if ctx.Err() != nil {
			r.syncClose(ctx, s)
			return interruptOutcome(ctx), false
		}
		for i, n := range rs.part.Nodes {
			if err := got[i].err; err != nil {
				r.logf(ctx, "sync: processes on %s (%s) cannot synchronise: %v", n.Tag, n.Name, err)
				continue
			}
			path := agent.DefaultProcessConfig().BaseEnv["PATH"]
			if got[i].binDir != "" {
				path = got[i].binDir + ":" + path
			}
			s.nodeEnv[n.Tag] = map[string]string{EnvSyncSocket: got[i].sock, EnvSyncToken: s.srv.newToken(n.Tag), EnvSyncTag: n.Tag, "PATH": path}
		}
	}
	r.sync = s
	r.logf(ctx, "sync: ready for %d nodes in %.3f s", len(s.nodeEnv), time.Since(start).Seconds())
	return outcome{}, true
}

// syncTeardown ends every wait, stops background commands, closes the
// sockets and writes the record.
func (r *testRun) syncTeardown(ctx context.Context, _ *runState, _ *outcome) {
	if r.sync != nil {
		r.syncClose(ctx, r.sync)
	}
}

func (r *testRun) syncClose(ctx context.Context, s *syncRun) {
	s.hub.Abort("the test is over")
	tctx, cancel := teardownCtx(ctx, releaseTimeout)
	defer cancel()
	s.mu.Lock()
	bg := s.bg
	s.bg = nil
	s.mu.Unlock()
	for _, stop := range bg {
		stop(tctx)
	}
	s.srv.close(!interrupted(ctx))
	for _, c := range s.cleanups {
		if interrupted(ctx) {
			// After a signal the teardown has a fraction of a second,
			// which stopping the test's VMs and processes needs more than
			// removing a socket file on a node; that goes on meanwhile.
			go c(tctx)
			continue
		}
		c(tctx)
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
	close(s.events)
	<-s.logDone
	events, dropped := s.hub.Events()
	if events == nil {
		events = []SyncEvent{}
	}
	data, err := json.MarshalIndent(struct {
		Events  []SyncEvent `json:"events"`
		Dropped int         `json:"dropped"`
	}{events, dropped}, "", " ")
	if err == nil {
		err = os.WriteFile(filepath.Join(r.outputDir, SyncResultFile), append(data, '\n'), 0o644)
	}
	if err != nil {
		r.logf(tctx, "sync: writing %s: %v", SyncResultFile, err)
	}
}

// formatSyncEvent is an event's debug.log line.
func formatSyncEvent(ev SyncEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sync: %s (%s) %s", ev.Tag, ev.Node, ev.Kind)
	if ev.Name != "" {
		fmt.Fprintf(&b, " %s", py.Repr(ev.Name))
	}
	if ev.Waited > 0 {
		fmt.Fprintf(&b, " after %.3f s", ev.Waited)
	}
	if ev.Detail != "" {
		fmt.Fprintf(&b, ": %s", ev.Detail)
	}
	return b.String()
}

// syncLost tells the hub that a node is gone, before the body is
// cancelled, so that every wait on it ends naming it.
func (r *testRun) syncLost(err error) {
	if r.sync == nil {
		return
	}
	for _, m := range r.sync.hub.members {
		// The watch names the node: `node "n2" (tag b) lost: why`.
		prefix := fmt.Sprintf("node %q (tag %s) lost: ", m.node, m.tag)
		if why, ok := strings.CutPrefix(err.Error(), prefix); ok {
			r.sync.hub.SetLost(m.tag, why)
		}
	}
	r.sync.hub.Abort(err.Error())
}

// syncEnv is the environment of a command the test runs on tag's node.
func (r *testRun) syncEnv(tag string) map[string]string {
	if r.sync == nil {
		return nil
	}
	return r.sync.nodeEnv[tag]
}

type inGroupKey struct{}

// syncStepStarts marks the tags of a top-level step as running and the
// others as finished: a process waiting for a tag that runs nothing would
// wait for no one.
func (r *testRun) syncStepStarts(ctx context.Context, n int, on []string) {
	if r.sync == nil || ctx.Value(inGroupKey{}) != nil {
		return
	}
	r.sync.hub.SetRunning(on...)
	for _, tag := range r.sync.hub.Tags() {
		if !containsString(on, tag) && !r.sync.hasBackground(tag) {
			r.sync.hub.SetFinished(tag, fmt.Sprintf("runs nothing in step %d", n))
		}
	}
}

// syncExecDone marks tag finished once its command of a top-level step
// ended (inside a together group, the group does).
func (r *testRun) syncExecDone(ctx context.Context, n int, tag string, res ExecResult, err error) {
	if r.sync == nil || ctx.Value(inGroupKey{}) != nil || r.sync.hasBackground(tag) {
		return
	}
	why := fmt.Sprintf("its command of step %d exited with status %d", n, res.ExitCode)
	if err != nil {
		why = fmt.Sprintf("its command of step %d failed: %v", n, err)
	}
	r.sync.hub.SetFinished(tag, why)
}

func (s *syncRun) hasBackground(tag string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bgTags[tag]
}

// expandStepArgv is expandArgv with the test's extra names: its VMs
// ({VM.address}, vms.go) and {sync.KEY}, the latest value of message KEY,
// waited for as a wait step would.
func (r *testRun) expandStepArgv(ctx context.Context, tag string, argv []string, timeout time.Duration, p *Partition) ([]string, error) {
	vms, err := r.vmNames(p)
	if err != nil {
		return nil, err
	}
	return expandArgvWith(argv, p, &extraNames{
		has: func(name string) bool { return name == syncPlaceholder || vms.has(name) },
		value: func(name, field string) (string, error) {
			if name != syncPlaceholder {
				return vms.value(name, field)
			}
			return r.syncMessage(ctx, tag, field, timeout)
		},
	})
}

// syncMessage is the latest value of message key, waited for.
func (r *testRun) syncMessage(ctx context.Context, tag, key string, timeout time.Duration) (string, error) {
	if r.sync == nil {
		return "", errors.New("this test has no synchronisation")
	}
	vals, err := r.sync.hub.Wait(ctx, tag, WaitOptions{Keys: []string{key}, Timeout: timeout})
	if err != nil {
		return "", err
	}
	for _, v := range vals {
		return v, nil
	}
	return "", nil
}

// syncTimelineEvent is a sync record as the timeline draws it: failures
// (a peer lost or finished, a timeout) in red.
func syncTimelineEvent(ev SyncEvent) Event {
	sev := SeverityInfo
	if ev.Kind == "fail" || ev.Kind == "lost" {
		sev = SeverityError
	}
	detail := ev.Detail
	if ev.Waited > 0 {
		detail = strings.TrimSpace(fmt.Sprintf("%s (waited %.3fs)", detail, ev.Waited))
	}
	return Event{Time: ev.Time, Tag: ev.Tag, Node: ev.Node, Kind: KindSync, Name: ev.Kind + " " + ev.Name, Detail: detail, Severity: sev}
}
