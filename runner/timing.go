package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// A test's time, by stage: the lifecycle times each stage's setup and
// teardown, and the cluster backend the parts inside them (SSH connect,
// store, hand-over, log forwarding, ...). At the end of the test the
// breakdown goes to debug.log, one line, and to <output_dir>/timing.json,
// so the cost of one test can be read, compared and benchmarked
// (scripts/bench/avocado_walltime.sh sums it over a job).

// timingFile is the breakdown's file in the test's output directory.
const timingFile = "timing.json"

// timedSpan is one measured part of a test. Spans nest by name: the
// backend's "partition: ssh connect" is inside the lifecycle's
// "partition".
type timedSpan struct {
	Name string `json:"name"`
	// StartMS is when it began, in milliseconds after the test began.
	StartMS float64 `json:"start_ms"`
	MS      float64 `json:"ms"`
}

// stageClock collects the spans of one test. Safe for concurrent use:
// nodes are set up in parallel.
type stageClock struct {
	start time.Time

	mu    sync.Mutex
	spans []timedSpan
}

func newStageClock() *stageClock { return &stageClock{start: time.Now()} }

type clockKey struct{}

// withClock makes the spans measured under ctx land in c.
func withClock(ctx context.Context, c *stageClock) context.Context {
	return context.WithValue(ctx, clockKey{}, c)
}

// timeSpan starts measuring name; the returned func ends it. Without a
// clock in ctx it measures nothing.
func timeSpan(ctx context.Context, name string) func() {
	c, _ := ctx.Value(clockKey{}).(*stageClock)
	if c == nil {
		return func() {}
	}
	t0 := time.Now()
	return func() {
		d := time.Since(t0)
		c.mu.Lock()
		c.spans = append(c.spans, timedSpan{Name: name, StartMS: ms(t0.Sub(c.start)), MS: ms(d)})
		c.mu.Unlock()
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timingReport is timing.json.
type timingReport struct {
	TotalMS float64     `json:"total_ms"`
	Spans   []timedSpan `json:"spans"`
}

func (c *stageClock) report() timingReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return timingReport{TotalMS: ms(time.Since(c.start)), Spans: append([]timedSpan(nil), c.spans...)}
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

// reportTiming logs the test's breakdown and writes timing.json.
func (r *testRun) reportTiming(ctx context.Context, c *stageClock) {
	t := c.report()
	r.logf(context.WithoutCancel(ctx), "%s", t.summary())
	if r.outputDir == "" {
		return
	}
	if err := t.write(r.outputDir); err != nil {
		r.logf(context.WithoutCancel(ctx), "writing %s: %v", timingFile, err)
	}
}
