package runner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The breakdown is a view of the record: stage spans by name, teardowns
// as "<stage> teardown", nothing else; each end found by its own begin
// even when spans of one name overlap; an earlier attempt left out.
func TestTiming_isAViewOfTheEvents(t *testing.T) {
	e := NewEvents()
	since := e.start.Add(100 * time.Millisecond)
	at := func(ms int) time.Time { return e.start.Add(time.Duration(ms) * time.Millisecond) }
	span := uint64(0)
	add := func(kind, name string, from, to int) {
		span++
		e.Add(Event{Time: at(from), Kind: kind, Name: name, Phase: PhaseBegin, span: span})
		e.Add(Event{Time: at(to), Kind: kind, Name: name, Phase: PhaseEnd, span: span})
	}
	add(KindStage, "partition", 0, 50) // the first attempt's
	// Two nodes connect at once; the second to begin ends first.
	span += 2
	e.Add(Event{Time: at(110), Kind: KindStage, Name: "partition: connect", Phase: PhaseBegin, span: span - 1})
	e.Add(Event{Time: at(120), Kind: KindStage, Name: "partition: connect", Phase: PhaseBegin, span: span})
	e.Add(Event{Time: at(130), Kind: KindStage, Name: "partition: connect", Phase: PhaseEnd, span: span})
	e.Add(Event{Time: at(170), Kind: KindStage, Name: "partition: connect", Phase: PhaseEnd, span: span - 1})
	add(KindStep, "step 1", 200, 300)
	add(KindTeardown, "partition", 300, 310)
	e.Add(Event{Time: at(320), Kind: KindStage, Name: "never ended", Phase: PhaseBegin, span: 99})
	rec := e.Snapshot()
	rec.End = at(400)

	got := timingOf(rec, since)
	want := timingReport{TotalMS: 300, Spans: []timedSpan{
		{Name: "partition: connect", StartMS: 20, MS: 10},
		{Name: "partition: connect", StartMS: 10, MS: 60},
		{Name: "partition teardown", StartMS: 200, MS: 10},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("timing = %+v\nwant %+v", got, want)
	}
	if s := got.summary(); s != "timing: 300.0 ms in all; partition: connect 10.0; partition: connect 60.0; partition teardown 10.0" {
		t.Errorf("summary = %q", s)
	}
}

// timeSpan records into the test's record through ctx, and nowhere
// without one.
func TestTiming_timeSpanRecordsStageEvents(t *testing.T) {
	timeSpan(context.Background(), "nowhere")()
	e := NewEvents()
	ctx := ContextWithEvents(context.Background(), e)
	end := timeSpan(ctx, "logs: remote listen")
	end()
	evs := e.Snapshot().Events
	if len(evs) != 2 || evs[0].Kind != KindStage || evs[0].Name != "logs: remote listen" || evs[0].Phase != PhaseBegin ||
		evs[1].Phase != PhaseEnd || evs[0].span == 0 || evs[0].span != evs[1].span {
		t.Fatalf("events = %+v", evs)
	}
}

// A whole test writes both views of one record: timing.json with every
// stage's setup and teardown (the names avocado_walltime.sh reads) and
// the timing line, and events.json whose stage and teardown spans are
// exactly timing.json's.
func TestTiming_testWritesBothViewsOfOneRecord_fakeCluster(t *testing.T) {
	cl := &fakeCluster{nodes: twoNodes()}
	code, msgs, out := runInProcess(t, context.Background(), writeSpec(t, twoNodeSpec), "ok", cl)
	if fin := finishedOf(msgs); code != 0 || fin["result"] != "pass" {
		t.Fatalf("exit %d, finished %v\nlog:\n%s", code, fin, logText(msgs))
	}
	var timing struct {
		TotalMS *float64 `json:"total_ms"`
		Spans   []struct {
			Name    string   `json:"name"`
			StartMS *float64 `json:"start_ms"`
			MS      *float64 `json:"ms"`
		} `json:"spans"`
	}
	data, err := os.ReadFile(filepath.Join(out, timingFile))
	if err != nil || json.Unmarshal(data, &timing) != nil || timing.TotalMS == nil {
		t.Fatalf("timing.json: %v\n%s", err, data)
	}
	names := map[string]int{}
	for _, s := range timing.Spans {
		if s.StartMS == nil || s.MS == nil || *s.MS < 0 || *s.StartMS < 0 || *s.StartMS+*s.MS > *timing.TotalMS {
			t.Errorf("span %s outside the test: %s", s.Name, data)
		}
		names[s.Name]++
	}
	for _, want := range []string{"cluster", "partition", "logs", "resources", "vms", "body", "partition file",
		"vms teardown", "collect teardown", "resources teardown", "partition teardown", "cluster teardown"} {
		if names[want] != 1 {
			t.Errorf("timing.json has %s %d times: %s", want, names[want], data)
		}
	}
	if !strings.Contains(logText(msgs), "timing: ") {
		t.Error("no timing line in the test's log")
	}
	var rec struct{ Events []Event }
	data, err = os.ReadFile(filepath.Join(out, eventsFile))
	if err != nil || json.Unmarshal(data, &rec) != nil {
		t.Fatalf("events.json: %v", err)
	}
	recorded := map[string]int{}
	for _, ev := range rec.Events {
		if name, ok := timingName(ev); ok && ev.Phase == PhaseEnd {
			recorded[name]++
		}
	}
	if !reflect.DeepEqual(recorded, names) {
		t.Errorf("events.json's spans %v are not timing.json's %v", recorded, names)
	}
}
