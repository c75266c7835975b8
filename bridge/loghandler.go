package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// lineHandler writes log records for a person at a terminal, as the
// CLI's other messages read: "vtcluster: waiting for idle nodes (tags: a,
// b; wait_seconds: 30)", an error attribute on the lines below, indented,
// instead of slog's key=value text with escaped newlines.
type lineHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	level slog.Level
	attrs []slog.Attr
}

func newLineLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(&lineHandler{mu: &sync.Mutex{}, w: w, level: level})
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

// WithGroup is not used by the packages that log to the CLI; groups are
// flattened.
func (h *lineHandler) WithGroup(string) slog.Handler { return h }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("vtcluster: ")
	if r.Level >= slog.LevelWarn {
		b.WriteString("warning: ")
	}
	b.WriteString(r.Message)
	var fields []string
	var detail string
	add := func(a slog.Attr) bool {
		v := a.Value.Resolve()
		if a.Key == "err" {
			detail = v.String()
			return true
		}
		s := v.String()
		if ss, ok := v.Any().([]string); ok {
			s = strings.Join(ss, ", ")
		}
		fields = append(fields, a.Key+": "+s)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	if len(fields) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(fields, "; "))
	}
	b.WriteByte('\n')
	for _, l := range strings.Split(detail, "\n") {
		if l != "" {
			b.WriteString("  " + l + "\n")
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}
