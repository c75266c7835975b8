package runner

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func testHub() *syncHub { return newSyncHub([]string{"a", "b", "c"}, []string{"n1", "n2", "n3"}) }

// waitBlocked waits until tag has an "arrive", "wait" or "lock" event for
// name, so that a test orders its steps on the hub's own record, never on
// sleeps.
func waitEvent(t *testing.T, h *syncHub, tag, kind, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		evs, _ := h.Events()
		for _, ev := range evs {
			if ev.Tag == tag && ev.Kind == kind && ev.Name == name {
				return
			}
		}
		h.mu.Lock()
		ch := h.changed
		h.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("no %s %s event of %s", kind, name, tag)
}

func goErr(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func TestSyncBarrierPassesWhenAllArriveAndCanBeReused(t *testing.T) {
	h := testHub()
	ctx := context.Background()
	for round := 0; round < 2; round++ {
		var errs [3]<-chan error
		for i, tag := range []string{"a", "b", "c"} {
			errs[i] = goErr(func() error { return h.Barrier(ctx, tag, "ready", nil, 0) })
		}
		for i := range errs {
			if err := <-errs[i]; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	evs, _ := h.Events()
	passes := 0
	for _, ev := range evs {
		if ev.Kind == "pass" {
			passes++
			if ev.Node == "" {
				t.Errorf("event without node: %+v", ev)
			}
		}
	}
	if passes != 6 {
		t.Errorf("%d pass events, want 6: %+v", passes, evs)
	}
}

func TestSyncBarrierFailsAtOnceWhenAPartyFinishesOrIsLost(t *testing.T) {
	for _, c := range []struct {
		name string
		end  func(h *syncHub)
		want string
	}{
		{"finished", func(h *syncHub) { h.SetFinished("b", "its steps ended") }, `barrier 'x': tag 'b' (node n2) finished without reaching it (its steps ended)`},
		{"lost", func(h *syncHub) { h.SetLost("c", "agent gone") }, `barrier 'x': tag 'c' (node n3) was lost: agent gone`},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := testHub()
			done := goErr(func() error { return h.Barrier(context.Background(), "a", "x", nil, 0) })
			waitEvent(t, h, "a", "arrive", "x")
			c.end(h)
			err := <-done
			var se *SyncError
			if !errors.As(err, &se) || err.Error() != c.want {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			// The waiter no longer counts as arrived.
			if n := len(h.barriers["x"].arrived); n != 0 {
				t.Errorf("%d still counted as arrived", n)
			}
			evs, _ := h.Events()
			if last := evs[len(evs)-1]; last.Kind != "fail" || last.Tag != "a" {
				t.Errorf("last event %+v, want a's fail", last)
			}
		})
	}
}

func TestSyncBarrierOfListedTagsIgnoresOthers(t *testing.T) {
	h := testHub()
	h.SetFinished("c", "not in this step")
	ctx := context.Background()
	e1 := goErr(func() error { return h.Barrier(ctx, "a", "ab", []string{"a", "b"}, 0) })
	if err := h.Barrier(ctx, "b", "ab", []string{"b", "a"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := <-e1; err != nil {
		t.Fatal(err)
	}
	if err := h.Barrier(ctx, "c", "ab", []string{"a", "b"}, 0); err == nil || !strings.Contains(err.Error(), "not one of its parties") {
		t.Fatalf("outsider: %v", err)
	}
	if err := h.Barrier(ctx, "a", "x", []string{"a", "zz"}, 0); err == nil || !strings.Contains(err.Error(), "unknown tag 'zz'") {
		t.Fatalf("unknown tag: %v", err)
	}
}

func TestSyncTimeoutsAndTheTestsEnd(t *testing.T) {
	h := testHub()
	err := h.Barrier(context.Background(), "a", "slow", nil, 50*time.Millisecond)
	if err == nil || err.Error() != "barrier 'slow': timed out after 0.05 s" {
		t.Fatalf("timeout: %v", err)
	}
	done := goErr(func() error {
		_, err := h.Wait(context.Background(), "a", WaitOptions{Keys: []string{"k"}})
		return err
	})
	waitEvent(t, h, "a", "wait", "k")
	h.Abort("node \"n2\" (tag b) lost: gone")
	if err := <-done; err == nil || err.Error() != `waiting for 'k': node "n2" (tag b) lost: gone` {
		t.Fatalf("abort: %v", err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("test timeout"))
	if err := h.Lock(ctx, "a", "m", 0); err != nil {
		t.Fatalf("a free mutex is taken even late: %v", err)
	}
}

func TestSyncMessagesPersistForLateWaiters(t *testing.T) {
	h := testHub()
	ctx := context.Background()
	if err := h.Send("b", "port", "5201"); err != nil {
		t.Fatal(err)
	}
	// b finishes before anyone waits: its message stays.
	h.SetFinished("b", "done")
	got, err := h.Wait(ctx, "a", WaitOptions{Keys: []string{"port"}})
	if err != nil || got["b"] != "5201" || len(got) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
	// Others leaves the waiter's own message out; all waits for every sender.
	if err := h.Send("a", "x", "from-a"); err != nil {
		t.Fatal(err)
	}
	done := make(chan map[string]string, 1)
	go func() {
		v, err := h.Wait(ctx, "a", WaitOptions{Keys: []string{"x"}, Others: true, All: true, From: []string{"a", "c"}})
		if err != nil {
			t.Error(err)
		}
		done <- v
	}()
	waitEvent(t, h, "a", "wait", "x")
	h.Send("c", "x", "from-c")
	if v := <-done; len(v) != 1 || v["c"] != "from-c" {
		t.Fatalf("all others: %v", v)
	}
	// A wait for one sender ends when no sender is left.
	h.SetFinished("a", "done")
	h.SetLost("c", "cut")
	_, err = h.Wait(ctx, "b", WaitOptions{Keys: []string{"never"}})
	if err == nil || !strings.Contains(err.Error(), "no tag can send it any more") || !strings.Contains(err.Error(), "tag 'c' (node n3) was lost: cut") {
		t.Fatalf("nobody left: %v", err)
	}
}

func TestSyncWaitAllFailsNamingTheFinishedSender(t *testing.T) {
	h := testHub()
	h.Send("b", "s", "1")
	done := goErr(func() error {
		_, err := h.Wait(context.Background(), "a", WaitOptions{Keys: []string{"s", "t"}, All: true, Others: true})
		return err
	})
	waitEvent(t, h, "a", "wait", "s|t")
	h.SetFinished("c", "exit status 3")
	if err := <-done; err == nil || err.Error() != "waiting for 's|t': tag 'c' (node n3) finished without reaching it (exit status 3)" {
		t.Fatalf("got %v", err)
	}
}

func TestSyncMutexSerialisesAndNamesADeadHolder(t *testing.T) {
	h := testHub()
	ctx := context.Background()
	if err := h.Lock(ctx, "a", "db", 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Unlock("b", "db"); err == nil || err.Error() != "mutex 'db' is held by tag 'a', not 'b'" {
		t.Fatalf("unlock by another tag: %v", err)
	}
	got := goErr(func() error { return h.Lock(ctx, "b", "db", 0) })
	waitEvent(t, h, "b", "lock", "db")
	select {
	case err := <-got:
		t.Fatalf("b took a held mutex: %v", err)
	default:
	}
	if err := h.Unlock("a", "db"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// b holds it and finishes without unlocking: c fails at once.
	got = goErr(func() error { return h.Lock(ctx, "c", "db", 0) })
	waitEvent(t, h, "c", "lock", "db")
	h.SetFinished("b", "exit status 0")
	if err := <-got; err == nil || err.Error() != "mutex 'db': its holder tag 'b' (node n2) finished without unlocking it (exit status 0)" {
		t.Fatalf("dead holder: %v", err)
	}
	if err := h.Unlock("c", "nope"); err == nil || err.Error() != "mutex 'nope' is not locked" {
		t.Fatalf("unlocked: %v", err)
	}
}

func TestSyncBounds(t *testing.T) {
	h := testHub()
	ctx := context.Background()
	for _, name := range []string{"", strings.Repeat("x", maxSyncName+1), "two words", "nl\n"} {
		if err := h.Send("a", name, "v"); err == nil {
			t.Errorf("name %q accepted", name)
		}
		if err := h.Barrier(ctx, "a", name, nil, time.Millisecond); err == nil {
			t.Errorf("barrier %q accepted", name)
		}
	}
	if err := h.Send("a", "big", strings.Repeat("v", maxSyncValue+1)); err == nil {
		t.Error("oversized value accepted")
	}
	for i := 0; i < maxSyncKeys; i++ {
		if err := h.Send("a", "k"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+strconv.Itoa(i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Send("a", "one-too-many", "v"); err == nil || !strings.Contains(err.Error(), "already has 1024 message keys") {
		t.Fatalf("key bound: %v", err)
	}
	if err := h.Send("a", "k"+"a"+strconv.Itoa(0), "again"); err != nil {
		t.Fatalf("an existing key stays usable: %v", err)
	}
	for i := 0; i < maxSyncEvents; i++ {
		h.mu.Lock()
		h.record("a", "send", "x", "", 0)
		h.mu.Unlock()
	}
	if evs, dropped := h.Events(); len(evs) != maxSyncEvents || dropped == 0 {
		t.Fatalf("%d events, %d dropped", len(evs), dropped)
	}
}

// TestSyncWireTokens: only a known token gets in, and a node's token acts
// only for its own tag.
func TestSyncWireTokens(t *testing.T) {
	h := testHub()
	srv := newSyncServer(h, []SyncInfoMember{{Tag: "a", Node: "n1"}, {Tag: "b", Node: "n2"}, {Tag: "c", Node: "n3"}})
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv.serve(ln)
	defer srv.close(true)
	body := &SyncClient{Socket: sock, Token: srv.newToken("")}
	nodeA := &SyncClient{Socket: sock, Token: srv.newToken("a")}
	stranger := &SyncClient{Socket: sock, Token: "guessed"}
	ctx := context.Background()

	for _, req := range []SyncRequest{{Op: "send", Name: "k", Value: "v"}, {Op: "unlock", Name: "m"}, {Op: "barrier", Name: "x"}, {Op: "info"}} {
		if _, err := stranger.Call(ctx, req); err == nil || !strings.Contains(err.Error(), "is not one of the test's") {
			t.Errorf("%s by a stranger: %v", req.Op, err)
		}
	}
	if _, err := nodeA.Call(ctx, SyncRequest{Op: "send", Tag: "b", Name: "k", Value: "v"}); err == nil || !strings.Contains(err.Error(), `cannot act for tag "b"`) {
		t.Errorf("node a acting for b: %v", err)
	}
	if _, err := nodeA.Call(ctx, SyncRequest{Op: "state", Value: "finished"}); err == nil {
		t.Error("a node set a state")
	}
	if _, err := nodeA.Call(ctx, SyncRequest{Op: "lock", Name: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := body.Call(ctx, SyncRequest{Op: "unlock", Tag: "b", Name: "m"}); err == nil || !strings.Contains(err.Error(), "held by tag 'a'") {
		t.Errorf("unlock for b: %v", err)
	}
	if _, err := nodeA.Call(ctx, SyncRequest{Op: "send", Name: "port", Value: "80"}); err != nil {
		t.Fatal(err)
	}
	rep, err := body.Call(ctx, SyncRequest{Op: "wait", Tag: "c", Name: "port"})
	if err != nil || rep.Values["a"] != "80" {
		t.Fatalf("wait: %v %v", rep, err)
	}
	rep, err = nodeA.Call(ctx, SyncRequest{Op: "info"})
	if err != nil || rep.Info.Tag != "a" || rep.Info.Node != "n1" || len(rep.Info.Members) != 3 {
		t.Fatalf("info: %+v %v", rep.Info, err)
	}
	// A client that goes away ends its wait (and is recorded as failed).
	cctx, cancel := context.WithCancel(ctx)
	done := goErr(func() error { _, err := nodeA.Call(cctx, SyncRequest{Op: "barrier", Name: "never"}); return err })
	waitEvent(t, h, "a", "arrive", "never")
	cancel()
	if err := <-done; err == nil {
		t.Fatal("cancelled call returned no error")
	}
	waitEvent(t, h, "a", "fail", "never")
	// An oversized request is refused without reading it all.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.Write([]byte(strings.Repeat("x", maxSyncRequest+10)))
	}()
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	c.Close()
	wg.Wait()
	if !strings.Contains(string(buf[:n]), "no complete request line") {
		t.Errorf("oversized request: %q", buf[:n])
	}
}

func TestSyncSpecSteps(t *testing.T) {
	f, err := parseSpec("sync.json", []byte(`{"name": "t", "nodes": {"srv": null, "cli": null},
	  "body": {"steps": [
	    {"on": "srv", "run": ["nc", "-l"], "background": true},
	    {"barrier": "up"},
	    {"send": "port", "value": "{srv.address}:5201", "on": "srv"},
	    {"wait": "port", "on": "cli", "tags": ["srv"], "timeout": 5},
	    {"on": "cli", "run": ["nc", "{sync.port}"]},
	    {"together": {"cli": [{"barrier": "go"}, {"run": ["true"]}],
	                  "srv": [{"lock": "m"}, {"barrier": "go"}, {"unlock": "m"}]}}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	steps := f.Tests[0].Body.Steps
	if k := steps[0].Sync.Kind; k != "background" || steps[0].On[0] != "srv" {
		t.Errorf("background: %+v", steps[0])
	}
	if s := steps[1]; s.Sync.Kind != "barrier" || strings.Join(s.On, ",") != "srv,cli" || s.Sync.Tags != nil {
		t.Errorf("barrier: %+v %+v", s, s.Sync)
	}
	if s := steps[3]; s.Sync.Kind != "wait" || s.Timeout != 5*time.Second || s.Sync.Tags[0] != "srv" {
		t.Errorf("wait: %+v", s.Sync)
	}
	if steps[4].Sync != nil {
		t.Errorf("a run step with {sync.port} is a plain step")
	}
	g := steps[5].Sync.Together
	// In the test's tag order, each step on its own tag, barriers among the group.
	if len(g) != 2 || g[0].Tag != "srv" || g[1].Steps[1].On[0] != "cli" || strings.Join(g[1].Steps[0].Sync.Tags, ",") != "srv,cli" {
		t.Errorf("together: %+v", g)
	}
	for _, c := range []struct{ step, want string }{
		{`{"barrier": "x", "run": ["true"], "on": "srv"}`, "does not run a command"},
		{`{"send": "k", "on": "srv"}`, "a send step needs one"},
		{`{"send": "k", "value": "v"}`, `needs "on"`},
		{`{"wait": "k", "on": ["srv", "cli"]}`, "acts for one tag"},
		{`{"barrier": "two words"}`, "no spaces"},
		{`{"barrier": "x", "send": "y", "value": "v", "on": "srv"}`, "already a barrier"},
		{`{"barrier": "x", "on": "cli", "tags": ["srv"]}`, "not one of its"},
		{`{"together": {"srv": [{"together": {"cli": [{"run": ["true"]}]}}]}}`, "do not nest"},
		{`{"together": {"srv": [{"on": "cli", "run": ["true"]}]}}`, "leave \"on\" out"},
		{`{"together": {"nope": [{"run": ["true"]}]}}`, "unknown node tag"},
		{`{"value": "v", "on": "srv", "run": ["true"]}`, "belong to a barrier, send or wait"},
		{`{"on": "srv", "run": ["echo", "{snyc.x}"]}`, "unknown node tag"},
	} {
		_, err := parseSpec("bad.json", []byte(`{"name": "t", "nodes": {"srv": null, "cli": null}, "body": {"steps": [`+c.step+`]}}`))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.step, err, c.want)
		}
	}
}
