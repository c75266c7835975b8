package runner

import (
	"context"
	"log/slog"
	"strings"
)

// warnLogger returns the logger the cluster backend gets for one test: its
// warnings and errors (a lease renewal that failed, a resource sweep that
// could not finish, a node connection that broke) become lines of the
// test's debug.log, where the person reading the result looks; below
// warning stays silent, as the runner's stdout belongs to the protocol.
func (r *testRun) warnLogger(ctx context.Context) *slog.Logger {
	w := lineWriter(func(line string) { r.logf(ctx, "%s", line) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: slog.LevelWarn,
		// logf stamps the line with the time debug.log uses.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// lineWriter takes what slog's text handler writes, one record per Write.
type lineWriter func(line string)

func (f lineWriter) Write(p []byte) (int, error) {
	f(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
