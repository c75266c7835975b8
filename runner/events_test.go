package runner

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestEvents_BeginEndAndNil(t *testing.T) {
	var none *Events
	none.Add(Event{Kind: "x"})
	none.Begin(Event{Kind: "x"})(SeverityError, "")
	none.Log("", "INFO", "x")
	if rec := none.Snapshot(); len(rec.Events) != 0 {
		t.Fatalf("nil record recorded %v", rec.Events)
	}
	e := NewEvents()
	end := e.Begin(Event{Tag: "src", Node: "n1", Kind: KindStep, Name: "step 1"})
	end(SeverityError, "exit status 3")
	evs := e.Snapshot().Events
	if len(evs) != 2 || evs[0].Phase != PhaseBegin || evs[1].Phase != PhaseEnd || evs[1].Severity != SeverityError ||
		evs[1].Tag != "src" || evs[1].Detail != "exit status 3" || evs[0].Severity != SeverityInfo {
		t.Fatalf("events = %+v", evs)
	}
}

// A test that logs or records without end keeps its beginning and its
// end, and says how much fell in between.
func TestEvents_Bounded(t *testing.T) {
	e := NewEvents()
	for i := range maxEvents + 100 {
		e.Add(Event{Kind: "k", Name: fmt.Sprint(i), Detail: strings.Repeat("x", 2*maxDetailBytes)})
	}
	for i := range logHeadLines + logTailLines + 7 {
		e.Log("", "INFO", fmt.Sprint(i))
	}
	rec := e.Snapshot()
	if len(rec.Events) != maxEvents || rec.Dropped.Events != 100 || rec.Events[0].Name != "0" || rec.Events[maxEvents-1].Name != fmt.Sprint(maxEvents+99) {
		t.Errorf("events: %d kept, %d dropped, first %q, last %q", len(rec.Events), rec.Dropped.Events, rec.Events[0].Name, rec.Events[len(rec.Events)-1].Name)
	}
	if len(rec.Events[0].Detail) > maxDetailBytes {
		t.Errorf("detail of %d bytes kept", len(rec.Events[0].Detail))
	}
	if len(rec.Logs) != logHeadLines+logTailLines || rec.Dropped.LogLines != 7 || rec.Logs[len(rec.Logs)-1].Text != fmt.Sprint(logHeadLines+logTailLines+6) ||
		rec.Logs[logHeadLines].Text != fmt.Sprint(logHeadLines+7) {
		t.Errorf("logs: %d kept, %d dropped", len(rec.Logs), rec.Dropped.LogLines)
	}
	data, err := MarshalRecord(rec)
	if err != nil || !json.Valid(data) {
		t.Fatal(err)
	}
}

func TestHoldSetting(t *testing.T) {
	for in, want := range map[any]time.Duration{
		nil: 0, "": 0, "0": 0, "off": 0, false: 0, "2h": 2 * time.Hour, "90": 90 * time.Second,
		int64(30): 30 * time.Second, 1.5: 1500 * time.Millisecond, " 30m ": 30 * time.Minute,
	} {
		var got time.Duration
		if err := holdSetting(in, &got); err != nil || got != want {
			t.Errorf("holdSetting(%#v) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []any{"forever", "-1h", "100h", true, int64(-5), []any{}} {
		var got time.Duration
		if err := holdSetting(in, &got); err == nil || !strings.Contains(err.Error(), "multihost.hold_on_failure") {
			t.Errorf("holdSetting(%#v) = %s, %v; want an error naming the setting", in, got, err)
		}
	}
}

func TestLogSince_KeepsTheTestsWindowWithContinuations(t *testing.T) {
	since := time.Date(2026, 12, 7, 10, 0, 5, 0, time.Local)
	log := "2026-12-07 10:00:01,000 a INFO | before\n" +
		"2026-12-07 10:00:05,100 a INFO | during\nTraceback line\n" +
		"2026-12-07 10:00:09,000 a ERROR| later\n"
	got := string(logSince([]byte(log), since))
	if got != "2026-12-07 10:00:05,100 a INFO | during\nTraceback line\n2026-12-07 10:00:09,000 a ERROR| later\n" {
		t.Errorf("got %q", got)
	}
	if got := string(logSince([]byte("no dates\n"), since)); got != "no dates\n" {
		t.Errorf("undated log: got %q", got)
	}
}
