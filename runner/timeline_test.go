package runner

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sampleRecord is a two-node test whose third step fails on dst, with log
// lines that try to break out of the page's script and markup.
func sampleRecord() Record {
	e := NewEvents()
	t0 := e.start
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	e.Add(Event{Time: at(0), Kind: KindAllocation, Name: "allocation", Phase: PhaseBegin})
	e.Add(Event{Time: at(400), Kind: KindAllocation, Name: "allocation", Phase: PhaseEnd, Detail: "partition p1"})
	e.Add(Event{Time: at(450), Tag: "src", Node: "n1", Kind: KindHandOver, Name: "hand-over"})
	e.Add(Event{Time: at(460), Tag: "dst", Node: "n2", Kind: KindHandOver, Name: "hand-over", Severity: SeverityWarning, Detail: "node n2: stopped ['sleep', '60']"})
	e.Add(Event{Time: at(500), Kind: KindBody, Name: "body", Phase: PhaseBegin})
	e.Add(Event{Time: at(500), Tag: "src", Node: "n1", Kind: KindStep, Name: "step 1", Phase: PhaseBegin})
	e.Add(Event{Time: at(900), Tag: "src", Node: "n1", Kind: KindStep, Name: "step 1", Phase: PhaseEnd, Detail: "exit status 0"})
	e.Add(Event{Time: at(950), Tag: "dst", Node: "n2", Kind: "vm", Name: "vm1", Phase: PhaseBegin})
	e.Add(Event{Time: at(1000), Tag: "dst", Node: "n2", Kind: KindStep, Name: "step 2", Phase: PhaseBegin})
	e.Add(Event{Time: at(1300), Tag: "dst", Node: "n2", Kind: KindStep, Name: "step 2", Phase: PhaseEnd, Severity: SeverityError, Detail: "exit status 3 after 0.30 s\nstderr: </script><b>boom</b>"})
	e.Add(Event{Time: at(1300), Tag: "src", Node: "n1", Kind: "sync", Name: "barrier ready"})
	e.Add(Event{Time: at(1320), Kind: KindBody, Name: "body", Phase: PhaseEnd, Severity: SeverityError, Detail: "FAIL: step 2 on dst"})
	// The stage breakdown (timing.go) is in the record but not drawn.
	e.Add(Event{Time: at(1400), Kind: KindStage, Name: "partition: store release", Phase: PhaseBegin})
	e.Add(Event{Time: at(1450), Kind: KindStage, Name: "partition: store release", Phase: PhaseEnd})
	e.Add(Event{Time: at(1400), Kind: KindTeardown, Name: "partition", Phase: PhaseBegin})
	e.Add(Event{Time: at(1500), Kind: KindTeardown, Name: "partition", Phase: PhaseEnd})
	e.Log("", "INFO", "allocating nodes src, dst")
	e.Log("dst", "ERROR", "</script><script>document.title='pwned'</script> & <img src=x>")
	rec := e.Snapshot()
	for i := range rec.Logs {
		rec.Logs[i].Time = at(1100 + 10*i)
	}
	rec.End = at(1600)
	rec.Test, rec.Result, rec.Reason, rec.Partition = "fails-on-dst", "fail", "step 2 on dst: 'sh' exited with status 3", "p1"
	rec.Nodes = []RecordNode{{Tag: "src", Node: "n1", Address: "10.0.0.1"}, {Tag: "dst", Node: "n2", Address: "10.0.0.2"}}
	return rec
}

func TestRenderTimeline_EmbedsTheRecordAsData(t *testing.T) {
	page, err := RenderTimeline(sampleRecord())
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	// The only </script> is the page's own: a log line cannot close it.
	if n := strings.Count(s, "</script>"); n != 1 {
		t.Errorf("page has %d </script>, want 1 (the record must be escaped)", n)
	}
	if strings.Contains(s, "<img src=x>") || strings.Contains(s, "<b>boom</b>") {
		t.Error("markup from the record reached the page unescaped")
	}
	for _, forbidden := range []string{"http://", "https://", "src=\"", "<link"} {
		if strings.Contains(s, forbidden) {
			t.Errorf("page refers to something outside itself: %q", forbidden)
		}
	}
	if !strings.Contains(s, "default-src 'none'") {
		t.Error("page has no Content-Security-Policy forbidding loads")
	}
}

// TestTimeline_InChromium loads the page in a real headless browser: it
// must render without a console error, with one lane per node plus the
// controller's, and mark the failing step. TIMELINE_SCREENSHOT=FILE also
// saves what a person would see.
func TestTimeline_InChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (scripts/system-packages.txt lists it)")
	}
	dir := t.TempDir()
	page, err := RenderTimeline(sampleRecord())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, timelineFile)
	if err := os.WriteFile(file, page, 0o644); err != nil {
		t.Fatal(err)
	}
	dom, console := runChromium(t, browser, dir, "--dump-dom", "file://"+file)
	CheckTimelineDOM(t, dom, console, 3, "step 2")
	if strings.Contains(dom, `data-kind="stage"`) || !strings.Contains(dom, `data-kind="teardown"`) {
		t.Error("the page draws the stage breakdown, or not the teardown")
	}
	if shot := os.Getenv("TIMELINE_SCREENSHOT"); shot != "" {
		runChromium(t, browser, dir, "--screenshot="+shot, "--window-size=1400,900", "file://"+file)
	}
}

func runChromium(t *testing.T, browser, dir string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=" + filepath.Join(dir, "profile"),
		"--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000"}, args...)
	cmd := exec.CommandContext(ctx, browser, argv...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

var consoleErrorRE = regexp.MustCompile(`(?m)^.*(CONSOLE\(\d+\)|Uncaught|Refused to).*$`)

// CheckTimelineDOM asserts on a timeline page as chromium rendered it.
func CheckTimelineDOM(t *testing.T, dom, console string, lanes int, failing string) {
	t.Helper()
	if m := consoleErrorRE.FindAllString(console, -1); len(m) > 0 {
		t.Errorf("console messages while loading the page:\n%s", strings.Join(m, "\n"))
	}
	if !strings.Contains(dom, `data-rendered="yes"`) {
		t.Fatalf("the page's script did not finish; its body tag: %s", regexp.MustCompile(`<body[^>]*>`).FindString(dom))
	}
	if !strings.Contains(dom, fmt.Sprintf(`data-lanes="%d"`, lanes)) || strings.Count(dom, `class="lane"`) != lanes {
		t.Errorf("want %d lanes (controller + one per node); DOM has %d", lanes, strings.Count(dom, `class="lane"`))
	}
	if !regexp.MustCompile(`class="mark failed"[^>]*>✗ ` + regexp.QuoteMeta(failing)).MatchString(dom) {
		t.Errorf("the failing %s is not marked", failing)
	}
	if m := regexp.MustCompile(`id="errors"[^>]*>([^<]+)<`).FindStringSubmatch(dom); m != nil {
		t.Errorf("the page reported an error: %s", m[1])
	}
}
