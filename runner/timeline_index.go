package runner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// JobTimelinesFile is the page in a job's results that links every
// multihost test's timeline.
const JobTimelinesFile = "multihost-timelines.html"

var indexTemplate = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>multihost timelines</title>
<style>
body { font: 14px/1.5 system-ui, sans-serif; margin: 20px; color: #1d2126; }
table { border-collapse: collapse; } td, th { padding: 4px 12px; border-bottom: 1px solid #dcdfe3; text-align: left; vertical-align: top; }
.r { font-weight: 600; text-transform: uppercase; } .pass { color: #2e7d32; } .fail, .error, .interrupted { color: #c62828; }
.why { color: #68707a; font-size: 12px; font-family: ui-monospace, monospace; }
</style></head><body>
<h1>Multihost tests of this job</h1>
<table><tr><th>result</th><th>test</th><th>timeline</th><th>failure bundle</th></tr>
{{range .}}<tr><td class="r {{.Result}}">{{.Result}}</td><td>{{.Test}}{{if .Reason}}<div class="why">{{.Reason}}</div>{{end}}</td>
<td><a href="{{.Timeline}}">timeline</a></td><td>{{if .Bundle}}<a href="{{.Bundle}}">{{.Bundle}}</a>{{end}}</td></tr>
{{end}}</table></body></html>
`))

type indexRow struct {
	Test, Result, Reason, Timeline, Bundle string
}

// WriteTimelineIndex writes JobTimelinesFile into the job results
// directory jobDir, linking the timeline of each test that has one, and
// returns its path; "" when no test has a timeline.
func WriteTimelineIndex(jobDir string) (string, error) {
	found, err := filepath.Glob(filepath.Join(jobDir, "test-results", "*", eventsFile))
	if err != nil || len(found) == 0 {
		return "", err
	}
	slices.Sort(found)
	var rows []indexRow
	for _, f := range found {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var rec struct{ Test, Result, Reason string }
		if json.Unmarshal(data, &rec) != nil {
			continue
		}
		dir, _ := filepath.Rel(jobDir, filepath.Dir(f))
		row := indexRow{Test: filepath.Base(dir), Result: rec.Result, Reason: rec.Reason, Timeline: filepath.ToSlash(filepath.Join(dir, timelineFile))}
		if rec.Test != "" && !strings.Contains(row.Test, rec.Test) {
			row.Test += " (" + rec.Test + ")"
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(f), bundleDir)); err == nil {
			row.Bundle = filepath.ToSlash(filepath.Join(dir, bundleDir)) + "/"
		}
		rows = append(rows, row)
	}
	var buf bytes.Buffer
	if err := indexTemplate.Execute(&buf, rows); err != nil {
		return "", fmt.Errorf("timeline index: %w", err)
	}
	out := filepath.Join(jobDir, JobTimelinesFile)
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("timeline index: %w", err)
	}
	return out, nil
}
