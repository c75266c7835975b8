package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// What the runner writes into a test's results for the person who debugs
// it: events.json (the record, events.go) and timeline.html (the page
// drawn from it, timeline.go), for every test, whatever its result.
const (
	eventsFile   = "events.json"
	timelineFile = "timeline.html"
)

// noSetup is the setup of stages that only act on the way out.
func noSetup(context.Context, *runState) (outcome, bool) { return outcome{}, true }

// writeRecordStage is the teardown of the first stage, so it runs last
// and sees the final outcome and every other stage's events.
func (r *testRun) writeRecordStage(ctx context.Context, rs *runState, out *outcome) {
	r.events.Add(Event{Kind: KindResult, Name: strings.ToUpper(out.Result), Detail: out.Reason, Severity: outcomeSeverity(*out)})
	rec := r.events.Snapshot()
	rec.Test = r.test.Name
	rec.Result, rec.Reason = out.Result, out.Reason
	rec.Partition = rs.part.ID
	for _, tag := range r.test.NodeTags() {
		n, _ := rs.part.Node(tag)
		rec.Nodes = append(rec.Nodes, RecordNode{Tag: tag, Node: n.Name, Address: n.Address})
	}
	for _, f := range []string{"debug.log", bundleDir, "cluster"} {
		if _, err := os.Stat(filepath.Join(r.outputDir, f)); err == nil {
			rec.Files = append(rec.Files, f)
		}
	}
	data, err := MarshalRecord(rec)
	if err == nil {
		err = os.WriteFile(filepath.Join(r.outputDir, eventsFile), data, 0o644)
	}
	if err != nil {
		r.logf(ctx, "writing %s: %v", eventsFile, err)
		return
	}
	page, err := RenderTimeline(rec)
	if err == nil {
		err = os.WriteFile(filepath.Join(r.outputDir, timelineFile), page, 0o644)
	}
	if err != nil {
		r.logf(ctx, "writing %s: %v", timelineFile, err)
		return
	}
	r.logf(ctx, "timeline of this test (open in a browser): %s", filepath.Join(r.outputDir, timelineFile))
}

// recordHandOver records, per node, what the hand-over found left by
// earlier tests (HandOver lines start with "node NAME:").
func (r *testRun) recordHandOver(p *Partition) {
	for _, n := range p.Nodes {
		var stopped []string
		for _, h := range p.HandOver {
			if strings.HasPrefix(h, "node "+n.Name+":") {
				stopped = append(stopped, h)
			}
		}
		ev := Event{Tag: n.Tag, Node: n.Name, Kind: KindHandOver, Name: "hand-over", Detail: "clean: nothing of earlier tests was running"}
		if len(stopped) > 0 {
			ev.Detail, ev.Severity = strings.Join(stopped, "\n"), SeverityWarning
		}
		r.events.Add(ev)
	}
}

func severityOf(err error) Severity {
	if err != nil {
		return SeverityError
	}
	return SeverityInfo
}

func errText(err error) string {
	if err != nil {
		return err.Error()
	}
	return ""
}

// outcomeSeverity marks a failed, errored or interrupted test as an error
// and other results short of a pass (skip, warn, cancel) as warnings.
func outcomeSeverity(o outcome) Severity {
	switch o.Result {
	case resultPass, "":
		return SeverityInfo
	case resultFail, resultError, resultInterrupted:
		return SeverityError
	}
	return SeverityWarning
}

func outcomeText(o outcome) string {
	if o.Reason == "" {
		return strings.ToUpper(o.Result)
	}
	return strings.ToUpper(o.Result) + ": " + o.Reason
}

func stepSeverity(res ExecResult, err error) Severity {
	if err != nil || res.TimedOut || res.ExitCode != 0 {
		return SeverityError
	}
	return SeverityInfo
}

// stepText says how a step ended, with the end of its stderr (where a
// failing command usually says why).
func stepText(res ExecResult, err error) string {
	if err != nil {
		return err.Error()
	}
	s := fmt.Sprintf("exit status %d after %.2f s", res.ExitCode, res.Duration.Seconds())
	if res.TimedOut {
		s = fmt.Sprintf("timed out after %.2f s", res.Duration.Seconds())
	}
	if tail := lastBytes(res.Stderr, 1024); tail != "" {
		s += "\nstderr: " + tail
	}
	return s
}

// lastBytes returns the end of b as text, trimmed.
func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
}
