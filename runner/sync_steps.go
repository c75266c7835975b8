package runner

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/vtcluster/vtcluster/agent/py"
)

// syncStep runs a step that has a sync part (sync_spec.go). Sync failures
// are ERROR: the test could not get to the point where it checks
// anything.
func (r *testRun) syncStep(ctx context.Context, cl Cluster, p *Partition, n int, st Step) (outcome, bool) {
	ss := st.Sync
	if r.sync == nil {
		return outcome{Result: resultError, Reason: fmt.Sprintf("step %d: %s: this test has no synchronisation", n, describeSyncStep(st))}, false
	}
	if ss.Kind == "together" {
		return r.togetherStep(ctx, cl, p, n, st)
	}
	if ss.Kind == "background" {
		return r.backgroundStep(ctx, cl, p, n, st)
	}
	r.syncStepStarts(ctx, n, st.On)
	hub := r.sync.hub
	errs := make([]error, len(st.On))
	one := func(i int) {
		tag := st.On[i]
		switch ss.Kind {
		case "barrier":
			errs[i] = hub.Barrier(ctx, tag, ss.Name, ss.Tags, st.Timeout)
		case "send":
			v, err := r.expandStepArgv(ctx, tag, []string{ss.Value}, st.Timeout, p)
			if err == nil {
				err = hub.Send(tag, ss.Name, v[0])
			}
			errs[i] = err
		case "wait":
			var vals map[string]string
			vals, errs[i] = hub.Wait(ctx, tag, WaitOptions{Keys: []string{ss.Name}, From: ss.Tags, Timeout: st.Timeout})
			for sender, v := range vals { // one: a wait step waits for one sender
				r.logf(ctx, "step %d on %s: %s = %s (from %s)", n, tag, py.Repr(ss.Name), py.Repr(v), sender)
			}
		case "lock":
			errs[i] = hub.Lock(ctx, tag, ss.Name, st.Timeout)
		case "unlock":
			errs[i] = hub.Unlock(tag, ss.Name)
		}
	}
	// A barrier's tags arrive at once; the others act for one tag.
	r.atOnce(len(st.On), one)
	if ctx.Err() != nil && ctx.Value(inGroupKey{}) == nil {
		return interruptOutcome(ctx), false
	}
	for i, err := range errs {
		if err != nil {
			return outcome{Result: resultError, Reason: fmt.Sprintf("step %d on %s: %v", n, st.On[i], err)}, false
		}
	}
	return outcome{}, true
}

// backgroundStep starts a command on each tag of the step and goes on; the
// sync stage stops what is still running when the test ends. A tag with a
// background command counts as running for the rest of the test.
func (r *testRun) backgroundStep(ctx context.Context, cl Cluster, p *Partition, n int, st Step) (outcome, bool) {
	bs, ok := cl.(backgroundStarter)
	if !ok {
		return outcome{Result: resultError, Reason: fmt.Sprintf("step %d: this cluster backend cannot start background commands", n)}, false
	}
	for _, tag := range st.On {
		node, _ := p.Node(tag)
		argv, err := r.expandStepArgv(ctx, tag, st.Run, st.Timeout, p)
		if err == nil {
			r.logf(ctx, "step %d on %s (%s), in the background: %s", n, tag, node.Name, py.Repr(argv))
			var stop func(context.Context)
			stop, err = bs.StartBackground(ctx, node, argv, ExecOptions{Timeout: st.Timeout, Env: r.syncEnv(tag)})
			if err == nil {
				r.sync.mu.Lock()
				r.sync.bg = append(r.sync.bg, stop)
				r.sync.bgTags[tag] = true
				r.sync.mu.Unlock()
				r.sync.hub.SetRunning(tag)
				continue
			}
		}
		if ctx.Err() != nil {
			return interruptOutcome(ctx), false
		}
		return outcome{Result: resultError, Reason: fmt.Sprintf("step %d on %s: %v", n, tag, err)}, false
	}
	return outcome{}, true
}

// togetherStep runs each tag's steps at once. A tag whose steps end or
// fail is finished: peers waiting for it end at once, naming it. The
// outcome is the first failure that is not a consequence of another (a
// sync error caused by a failed peer), in the test's tag order.
func (r *testRun) togetherStep(ctx context.Context, cl Cluster, p *Partition, n int, st Step) (outcome, bool) {
	roles := st.Sync.Together
	hub := r.sync.hub
	var tags []string
	for _, role := range roles {
		tags = append(tags, role.Tag)
	}
	r.syncStepStarts(ctx, n, tags)
	gctx := context.WithValue(ctx, inGroupKey{}, true)
	outs := make([]outcome, len(roles))
	oks := make([]bool, len(roles))
	r.atOnce(len(roles), func(i int) {
		role := roles[i]
		oks[i] = true
		for _, inner := range role.Steps {
			var o outcome
			var ok bool
			if inner.Sync != nil {
				o, ok = r.syncStep(gctx, cl, p, n, inner)
			} else {
				o, ok = r.step(gctx, cl, p, n, inner)
			}
			if !ok {
				outs[i], oks[i] = o, false
				hub.SetFinished(role.Tag, fmt.Sprintf("failed in step %d: %s", n, o.Reason))
				return
			}
		}
		hub.SetFinished(role.Tag, fmt.Sprintf("its steps in step %d ended", n))
	})
	if ctx.Err() != nil {
		return interruptOutcome(ctx), false
	}
	hub.SetRunning(hub.Tags()...)
	var consequence *outcome
	for i := range roles {
		if oks[i] {
			continue
		}
		if isPeerConsequence(outs[i].Reason) {
			if consequence == nil {
				consequence = &outs[i]
			}
			continue
		}
		return outs[i], false
	}
	if consequence != nil {
		return *consequence, false
	}
	return outcome{}, true
}

// atOnce runs f(0) ... f(n-1) each in its own goroutine and waits for
// them all; a panic is the test's error, as everywhere in the run.
func (r *testRun) atOnce(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.trap.catch()
			f(i)
		}()
	}
	wg.Wait()
}

// isPeerConsequence tells a sync failure caused by a peer that stopped
// coming from a root cause.
func isPeerConsequence(reason string) bool {
	return strings.Contains(reason, "finished without reaching it") || strings.Contains(reason, "no tag can send it any more") ||
		strings.Contains(reason, "finished without unlocking it")
}
