package vm

// Live migration, driven on the source: set the bandwidth and downtime
// limit, start it, poll query-migrate until it completes, fails or runs
// out of time (then it is cancelled), and return QMP's own figures.

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/vtcluster/vtcluster/agent"
)

// migrateURIRE accepts the transports a test needs, with no option list.
var migrateURIRE = regexp.MustCompile(`^tcp:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$`)

// pollMigrate is how often query-migrate is asked; migrations of a
// small guest take a few hundred ms.
const pollMigrate = 20 * time.Millisecond

// migrate(name, uri[, options_json]) migrates the VM to the destination
// listening on uri and returns Migration. A failed or timed-out migration
// is a reply, not a fault: the caller decides, and sees QMP's error.
func (s *Service) migrate(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(2, 3); err != nil {
		return nil, err
	}
	m, err := s.running(args)
	if err != nil {
		return nil, err
	}
	uri, err := args.String(1, "uri")
	if err != nil {
		return nil, err
	}
	if !migrateURIRE.MatchString(uri) {
		return nil, fault("ValueError", "uri %q must be tcp:HOST:PORT", uri)
	}
	var o MigrateOptions
	if raw, err := args.OptString(2, "options", ""); err != nil {
		return nil, err
	} else if raw != "" {
		if err := json.Unmarshal([]byte(raw), &o); err != nil {
			return nil, fault("ValueError", "options must be a JSON object with max_bandwidth, downtime_limit_ms, timeout_s: %v", err)
		}
	}
	if o.TimeoutS == 0 {
		o.TimeoutS = 120
	}
	if o.TimeoutS < 0 || o.TimeoutS > 3600 || o.MaxBandwidth < 0 || o.DowntimeLimitMs < 0 {
		return nil, fault("ValueError", "options: timeout_s must be within 0..3600, max_bandwidth and downtime_limit_ms not negative")
	}
	res, err := s.runMigration(ctx, m, uri, o)
	if err != nil {
		return nil, fault("RuntimeError", "vm %s: migrate to %s: %v", m.spec.Name, uri, err)
	}
	return toWire(res), nil
}

func (s *Service) runMigration(ctx context.Context, m *machine, uri string, o MigrateOptions) (Migration, error) {
	q := m.qmp
	params := map[string]any{}
	if o.MaxBandwidth > 0 {
		params["max-bandwidth"] = o.MaxBandwidth
	}
	if o.DowntimeLimitMs > 0 {
		params["downtime-limit"] = o.DowntimeLimitMs
	}
	// MIGRATION and MIGRATION_PASS events in the event log.
	caps := map[string]any{"capabilities": []any{map[string]any{"capability": "events", "state": true}}}
	if _, err := q.execute(ctx, "migrate-set-capabilities", caps); err != nil {
		return Migration{}, err
	}
	if len(params) > 0 {
		if _, err := q.execute(ctx, "migrate-set-parameters", params); err != nil {
			return Migration{}, err
		}
	}
	s.log.Info(fmt.Sprintf("vm %s: migrating to %s", m.spec.Name, uri))
	if _, err := q.execute(ctx, "migrate", map[string]any{"uri": uri}); err != nil {
		// QMP refused at once (a bad URI, a migration in progress).
		return Migration{Status: "failed", Error: err.Error()}, nil
	}
	deadline := time.Now().Add(time.Duration(o.TimeoutS * float64(time.Second)))
	for {
		raw, err := q.execute(ctx, "query-migrate", nil)
		if err != nil {
			return Migration{}, err
		}
		var r struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
			TotalTime int64  `json:"total-time"`
			Downtime  int64  `json:"downtime"`
			SetupTime int64  `json:"setup-time"`
			RAM       struct {
				Transferred int64 `json:"transferred"`
			} `json:"ram"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return Migration{}, fmt.Errorf("query-migrate: %w", err)
		}
		out := Migration{Status: r.Status, Error: r.ErrorDesc, TotalTimeMs: r.TotalTime,
			DowntimeMs: r.Downtime, SetupTimeMs: r.SetupTime, Transferred: r.RAM.Transferred}
		// QEMU sets completed a moment before it computes the figures.
		if r.Status == "completed" && r.TotalTime == 0 && time.Now().Before(deadline) {
			time.Sleep(pollMigrate)
			continue
		}
		switch r.Status {
		case "completed", "failed", "cancelled":
			s.log.Info(fmt.Sprintf("vm %s: migration %s: total %d ms, downtime %d ms, %d bytes%s", m.spec.Name, r.Status, r.TotalTime, r.Downtime, r.RAM.Transferred, errNote(r.ErrorDesc)))
			return out, nil
		}
		if time.Now().After(deadline) {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = q.execute(cctx, "migrate_cancel", nil)
			cancel()
			out.Status = "timeout"
			out.Error = fmt.Sprintf("not completed within %g s (last status %s); cancelled", o.TimeoutS, r.Status)
			s.log.Warn(fmt.Sprintf("vm %s: migration %s", m.spec.Name, out.Error))
			return out, nil
		}
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = q.execute(cctx, "migrate_cancel", nil)
			cancel()
			return Migration{}, context.Cause(ctx)
		case <-time.After(pollMigrate):
		}
	}
}

func errNote(desc string) string {
	if desc == "" {
		return ""
	}
	return ": " + desc
}
