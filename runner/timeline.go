package runner

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"time"
)

// The timeline page is one self-contained file: the record is embedded as
// JSON and drawn by inline script, so it opens from a results directory,
// an archive or a mail attachment with no server and no network. Its
// Content-Security-Policy forbids every load from anywhere, so nothing in
// a test's output (log lines, step output) can make it fetch anything.
//
//go:embed timeline.html.tmpl
var timelineSource string

var timelineTemplate = template.Must(template.New("timeline").Parse(timelineSource))

// timelinePage is what the template sees: a few things for the static
// head, and the record for the script. html/template escapes the record
// for its place inside <script>, so a log line holding "</script>" stays
// data.
type timelinePage struct {
	Title    string
	Result   string
	Reason   string
	Duration string
	Record   Record
}

// RenderTimeline returns the HTML page of rec.
func RenderTimeline(rec Record) ([]byte, error) {
	d := rec.End.Sub(rec.Start).Round(time.Millisecond)
	page := timelinePage{Title: rec.Test, Result: rec.Result, Reason: rec.Reason, Duration: d.String(), Record: rec}
	var buf bytes.Buffer
	if err := timelineTemplate.Execute(&buf, page); err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	return buf.Bytes(), nil
}
