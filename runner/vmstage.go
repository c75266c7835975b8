package runner

// The "vms" stage: the test's VMs start on their nodes after the
// resources exist, and every VM of the test (owned by its partition,
// wherever it runs now, started by the runner, a MultiHostTest or
// `vtcluster vm`) is stopped, its console and QMP event log collected
// under cluster/<tag>/, and removed, before the resources are released.
// A runner killed with SIGKILL never gets here: the next allocation's
// hand-over (process.stop_others) stops its VMs.
//
// Listing costs a round trip per node, so it is done only for tests that
// can own VMs (mayOwnVMs); the others leave nothing of the vm service's
// behind, and the hand-over covers what they start another way.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/vm"
)

// vmRun is what the VM steps know about the test's VMs.
type vmRun struct {
	mu      sync.Mutex
	at      map[string]string   // VM -> the tag it runs on
	places  map[string][]string // VM -> every tag it was started on
	offsets map[string]int64    // VM -> console offset of the last match
	figures []MigrateResult
}

func newVMRun() *vmRun {
	return &vmRun{at: map[string]string{}, places: map[string][]string{}, offsets: map[string]int64{}}
}

func (v *vmRun) where(name string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.at[name]
}

func (v *vmRun) addPlace(name, tag string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !slices.Contains(v.places[name], tag) {
		v.places[name] = append(v.places[name], tag)
	}
}

func (v *vmRun) offset(name string) int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.offsets[name]
}

func (v *vmRun) setOffset(name string, off int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.offsets[name] = off
}

func (v *vmRun) migrated(name, to string, res MigrateResult) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.at[name] = to
	v.offsets[name] = 0 // the destination's console is a new file
	v.figures = append(v.figures, res)
}

// vmStopTimeout bounds stopping one node's VMs at the end of a test.
const vmStopTimeout = 60 * time.Second

// vmsStage starts the declared VMs on their nodes.
func (r *testRun) vmsStage(ctx context.Context, rs *runState) (outcome, bool) {
	r.vms = newVMRun()
	if len(r.test.VMs) == 0 {
		return outcome{}, true
	}
	vc, ok := rs.cl.(agentCaller)
	if !ok {
		return outcome{Result: resultError, Reason: "runner: this test declares VMs but the cluster backend cannot reach the agents' vm service"}, false
	}
	for _, s := range r.test.VMs {
		node, _ := rs.part.Node(s.On)
		spec, err := s.resolve(rs.part, s.On)
		if err == nil {
			raw, _ := json.Marshal(spec)
			r.logf(ctx, "vm %s: starting on %s (%s): %d disk(s), %d nic(s)", s.Name, s.On, node.Name, len(spec.Disks), len(spec.NICs))
			r.vms.addPlace(s.Name, s.On)
			var v any
			if v, err = vc.CallAgent(ctx, node, "vm.start", string(raw)); err == nil {
				var st vm.Started
				if st, err = vm.Decode[vm.Started](v); err == nil {
					r.vms.at[s.Name] = s.On
					r.logf(ctx, "vm %s: running on %s (%s), QEMU pid %d, accel %s", s.Name, s.On, node.Name, st.Pid, st.Accel)
					continue
				}
			}
		}
		// This stage's teardown will not run: stop what did start.
		r.stopVMsStage(ctx, rs, &outcome{})
		if ctx.Err() != nil {
			return interruptOutcome(ctx), false
		}
		return outcome{Result: resultError, Reason: fmt.Sprintf("runner: vm %s on %s (%s): %s", s.Name, s.On, node.Name, faultText(err))}, false
	}
	return outcome{}, true
}

// mayOwnVMs says whether the test can own VMs on its nodes, decided from
// its spec:
//   - its "vms" (a JSON spec's or a MultiHostTest's vms attribute), which
//     the vms stage starts and migrate steps move;
//   - or its body command: a process on this host with the partition file,
//     which can start VMs owned by the partition out of the runner's sight
//     (`vtcluster vm start` connects to the node itself; vm.start can go
//     through the agent proxy), as MultiHostTest bodies do.
//
// A test of steps alone owns none: a step is an argv the node's process
// service runs, and a QEMU a step starts is a process of the partition
// like any other. The hand-over (process.stop_others) stops it, as it
// stops the vm service's QEMUs, which run under the same process service
// with their owner (agent.ProcessService.StartSupervised, agent/vm).
func (r *testRun) mayOwnVMs() bool {
	return len(r.test.VMs) > 0 || len(r.test.Body.Command) > 0
}

// stopVMsStage stops every VM the partition owns on every node of the
// test, in parallel, then collects each one's console and event log
// (not after a signal: the budget is for stopping) and removes it.
func (r *testRun) stopVMsStage(ctx context.Context, rs *runState, _ *outcome) {
	vc, ok := rs.cl.(agentCaller)
	if !ok || rs.part == nil || rs.part.ID == "" || !r.mayOwnVMs() {
		return
	}
	if rs.held {
		// Kept for debugging with the rest of the partition (hold.go);
		// the hold's end, or the next owner's hand-over, stops them.
		if len(r.test.VMs) > 0 {
			r.logf(ctx, "vm: left running while the partition is held for debugging")
		}
		return
	}
	tctx, cancel := teardownCtx(ctx, vmStopTimeout)
	defer cancel()
	if interrupted(ctx) && r.vms != nil {
		// A signal leaves a fraction of a second: no listing first, one
		// stop per VM and node at once (the agent kills a VM whose stop
		// call goes away; an orphan left by a lost call is stopped by the
		// next owner's hand-over).
		r.stopKnownVMs(tctx, vc, rs.part)
		return
	}
	var wg sync.WaitGroup
	for _, n := range rs.part.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.trap.catch()
			r.stopNodeVMs(tctx, ctx, vc, rs.part.ID, n)
		}()
	}
	wg.Wait()
}

// stopKnownVMs stops every VM the test started, on every node it was
// started on, all at once.
func (r *testRun) stopKnownVMs(ctx context.Context, vc agentCaller, p *Partition) {
	r.vms.mu.Lock()
	places := maps.Clone(r.vms.places)
	r.vms.mu.Unlock()
	var wg sync.WaitGroup
	for name, tags := range places {
		for _, tag := range tags {
			n, ok := p.Node(tag)
			if !ok {
				continue
			}
			wg.Go(func() {
				defer r.trap.catch()
				if _, err := vc.CallAgent(ctx, n, "vm.stop", name, 0); err != nil {
					r.logf(ctx, "vm %s on %s (%s): stop: %s", name, tag, n.Name, faultText(err))
					return
				}
				r.logf(ctx, "vm %s on %s (%s): stopped", name, tag, n.Name)
				_, _ = vc.CallAgent(ctx, n, "vm.remove", name)
			})
		}
	}
	wg.Wait()
}

func (r *testRun) stopNodeVMs(ctx, runCtx context.Context, vc agentCaller, owner string, n PartitionNode) {
	endList := timeSpan(ctx, "vms: list")
	v, err := vc.CallAgent(ctx, n, "vm.list")
	endList()
	if err != nil {
		if len(r.test.VMs) > 0 {
			r.logf(ctx, "vm: listing the VMs on %s (%s): %s", n.Tag, n.Name, faultText(err))
		}
		return
	}
	list, err := vm.Decode[[]vm.Status](v)
	if err != nil {
		r.logf(ctx, "vm: %s (%s): %v", n.Tag, n.Name, err)
		return
	}
	for _, st := range list {
		if st.Owner != owner {
			continue
		}
		if st.Running {
			v, err := vc.CallAgent(ctx, n, "vm.stop", st.Name, 0)
			if err != nil {
				r.logf(ctx, "vm %s on %s (%s): stop: %s", st.Name, n.Tag, n.Name, faultText(err))
				continue
			}
			how, _ := vm.Decode[vm.Stopped](v)
			r.logf(ctx, "vm %s on %s (%s): stopped (%s, was %s)", st.Name, n.Tag, n.Name, how.How, st.Status)
		}
		if !interrupted(runCtx) {
			r.collectVM(ctx, vc, n, st.Name)
		}
		if _, err := vc.CallAgent(ctx, n, "vm.remove", st.Name); err != nil {
			r.logf(ctx, "vm %s on %s (%s): remove: %s", st.Name, n.Tag, n.Name, faultText(err))
		}
	}
}

// maxVMLog bounds what is fetched of one console or event log.
const maxVMLog = 64 << 20

// collectVM writes the VM's console and QMP event log to
// cluster/<tag>/<vm>.console and <vm>.events.jsonl.
func (r *testRun) collectVM(ctx context.Context, vc agentCaller, n PartitionNode, name string) {
	dir := filepath.Join(r.outputDir, "cluster", n.Tag)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.logf(ctx, "vm %s: %v", name, err)
		return
	}
	for _, f := range []struct{ method, file string }{{"vm.console", name + ".console"}, {"vm.events", name + ".events.jsonl"}} {
		out, err := os.OpenFile(filepath.Join(dir, f.file), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL, 0o644)
		if err != nil {
			r.logf(ctx, "vm %s: %v", name, err)
			continue
		}
		var off int64
		for off < maxVMLog {
			v, err := vc.CallAgent(ctx, n, f.method, name, off)
			if err != nil {
				r.logf(ctx, "vm %s on %s: %s: %s", name, n.Tag, f.method, faultText(err))
				break
			}
			c, err := vm.Decode[vm.ConsoleChunk](v)
			if err != nil || len(c.Data) == 0 {
				break
			}
			out.Write(c.Data)
			off = c.Offset
		}
		out.Close()
	}
}

// reportMigrations puts the migration figures in the test's results: the
// whiteboard (results.json) and vm-migrations.json in its output dir.
func (r *testRun) reportMigrations(ctx context.Context) {
	r.vms.mu.Lock()
	data, _ := json.MarshalIndent(map[string]any{"migrations": r.vms.figures}, "", "  ")
	r.vms.mu.Unlock()
	if err := os.WriteFile(filepath.Join(r.outputDir, "vm-migrations.json"), append(data, '\n'), 0o644); err != nil {
		r.logf(ctx, "vm-migrations.json: %v", err)
	}
	r.rep.Send(ctx, message{{Key: "type", Value: "whiteboard"}, {Key: "log", Value: data}, {Key: "encoding", Value: "utf-8"}, {Key: "status", Value: "running"}})
}

// vmPartitionEntry is a VM in partition.json, for MultiHostTest and
// `vtcluster vm` inside the body: where it runs and its spec on each tag
// it can run on.
type vmPartitionEntry struct {
	On        string             `json:"on"`
	MigrateTo string             `json:"migrate_to,omitempty"`
	Specs     map[string]vm.Spec `json:"specs"`
}

// vmPartitionSection is partition.json's "vms" object.
func (r *testRun) vmPartitionSection(p *Partition) map[string]vmPartitionEntry {
	if len(r.test.VMs) == 0 {
		return nil
	}
	out := map[string]vmPartitionEntry{}
	for _, s := range r.test.VMs {
		e := vmPartitionEntry{On: s.On, MigrateTo: s.MigrateTo, Specs: map[string]vm.Spec{}}
		for _, n := range p.Nodes {
			if spec, err := s.resolve(p, n.Tag); err == nil {
				e.Specs[n.Tag] = spec
			}
		}
		out[s.Name] = e
	}
	return out
}
