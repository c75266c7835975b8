package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A test's time, by stage: a view of the test's Events (events.go). The
// lifecycle records each stage's setup (a KindStage span) and teardown (a
// KindTeardown span), and the cluster backend the parts inside them (SSH
// connect, store, hand-over, log forwarding, ...: timeSpan). At the end of
// the test the breakdown goes to debug.log, one line, and to
// <output_dir>/timing.json, so the cost of one test can be read, compared
// and benchmarked (scripts/bench/avocado_walltime.sh sums it over a job).

// timingFile is the breakdown's file in the test's output directory.
const timingFile = "timing.json"

// timeSpan records the start of a timed part of the test carried by ctx;
// the returned func records its end. Without a record in ctx it records
// nothing. Names nest by prefix: the backend's "partition: connect" is
// inside the lifecycle's "partition".
func timeSpan(ctx context.Context, name string) func() {
	end := EventsFrom(ctx).Begin(Event{Kind: KindStage, Name: name})
	return func() { end(SeverityInfo, "") }
}

// timedSpan is one measured part of a test.
type timedSpan struct {
	Name string `json:"name"`
	// StartMS is when it began, in milliseconds after the test began.
	StartMS float64 `json:"start_ms"`
	MS      float64 `json:"ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timingReport is timing.json.
type timingReport struct {
	TotalMS float64     `json:"total_ms"`
	Spans   []timedSpan `json:"spans"`
}

// timingName is the breakdown's name of a span's events: stages and their
// parts by their own name, a stage's teardown as "<stage> teardown".
func timingName(ev Event) (string, bool) {
	switch ev.Kind {
	case KindStage:
		return ev.Name, true
	case KindTeardown:
		return ev.Name + " teardown", true
	}
	return "", false
}

// timingOf is the breakdown of the spans in rec that began at or after
// since (the start of this attempt of the test: a retry shares the
// record), in the order they ended. A span whose begin or end the
// record's bounds dropped is left out.
func timingOf(rec Record, since time.Time) timingReport {
	begun := map[uint64]time.Time{}
	spans := []timedSpan{}
	for _, ev := range rec.Events {
		name, ok := timingName(ev)
		switch {
		case !ok || ev.span == 0:
		case ev.Phase == PhaseBegin && !ev.Time.Before(since):
			begun[ev.span] = ev.Time
		case ev.Phase == PhaseEnd:
			if t0, ok := begun[ev.span]; ok {
				delete(begun, ev.span)
				spans = append(spans, timedSpan{Name: name, StartMS: ms(t0.Sub(since)), MS: ms(ev.Time.Sub(t0))})
			}
		}
	}
	return timingReport{TotalMS: ms(rec.End.Sub(since)), Spans: spans}
}

// summary is the debug.log line: every span in the order it ended.
func (t timingReport) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "timing: %.1f ms in all", t.TotalMS)
	for _, s := range t.Spans {
		fmt.Fprintf(&b, "; %s %.1f", s.Name, s.MS)
	}
	return b.String()
}

// write saves the report as dir/timing.json.
func (t timingReport) write(dir string) error {
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, timingFile), append(data, '\n'), 0o644)
}

// reportTiming logs the breakdown of the attempt that began at since and
// writes timing.json.
func (r *testRun) reportTiming(ctx context.Context, since time.Time) {
	t := timingOf(r.events.Snapshot(), since)
	r.logf(context.WithoutCancel(ctx), "%s", t.summary())
	if r.outputDir == "" {
		return
	}
	if err := t.write(r.outputDir); err != nil {
		r.logf(context.WithoutCancel(ctx), "writing %s: %v", timingFile, err)
	}
}
