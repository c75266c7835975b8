package vm

// The typed replies of the vm service. The agent sends each as an
// XML-RPC struct with these JSON names (Python callers see dicts); the
// controller decodes them back with Decode.

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Started is vm.start's reply.
type Started struct {
	Name   string `json:"name"`
	Pid    int    `json:"pid"`
	Accel  string `json:"accel"`
	Status string `json:"status"`
	// Incoming is the address a destination listens on, with the port
	// QEMU chose when the spec asked for port 0.
	Incoming string `json:"incoming,omitempty"`
}

// Status is vm.status's reply and an item of vm.list's.
type Status struct {
	Name    string `json:"name"`
	Owner   string `json:"owner"`
	Pid     int    `json:"pid"`
	Accel   string `json:"accel"`
	Running bool   `json:"running"` // the QEMU process is alive
	// Status is QMP's query-status (running, paused, postmigrate,
	// inmigrate, ...), "exited" once QEMU is gone.
	Status   string `json:"status"`
	ExitCode int    `json:"exit_code"`
	Stderr   string `json:"stderr,omitempty"` // QEMU's last words, once exited
}

// Stopped is vm.stop's reply.
type Stopped struct {
	Name string `json:"name"`
	// How is powerdown (the guest shut itself down), quit (QMP quit),
	// killed (SIGTERM/SIGKILL) or exited (it was already gone).
	How      string `json:"how"`
	ExitCode int    `json:"exit_code"`
}

// Migration is vm.migrate's reply: QMP's query-migrate at the end.
type Migration struct {
	// Status is completed, failed, cancelled or timeout.
	Status      string `json:"status"`
	Error       string `json:"error,omitempty"` // QMP's error-desc
	TotalTimeMs int64  `json:"total_time_ms"`
	DowntimeMs  int64  `json:"downtime_ms"`
	SetupTimeMs int64  `json:"setup_time_ms"`
	Transferred int64  `json:"transferred"` // RAM bytes sent
}

// MigrateOptions is vm.migrate's options argument (JSON).
type MigrateOptions struct {
	// MaxBandwidth in bytes per second; 0: QEMU's default.
	MaxBandwidth int64 `json:"max_bandwidth,omitempty"`
	// DowntimeLimitMs; 0: QEMU's default (300 ms).
	DowntimeLimitMs int64 `json:"downtime_limit_ms,omitempty"`
	// TimeoutS bounds the migration; at the end it is cancelled. Default
	// 120, at most 3600.
	TimeoutS float64 `json:"timeout_s,omitempty"`
}

// ConsoleChunk is vm.console's and vm.events' reply.
type ConsoleChunk struct {
	Data   []byte `json:"data"`
	Offset int64  `json:"offset"` // where the next read starts
}

// ConsoleMatch is vm.wait_console's reply.
type ConsoleMatch struct {
	Matched bool   `json:"matched"`
	Match   string `json:"match"`  // the matching text
	Line    string `json:"line"`   // the whole line it is on
	Offset  int64  `json:"offset"` // just after the match
}

// toWire turns a reply into the value the XML-RPC encoder sends: a struct
// of its JSON fields, integers as int, []byte as binary.
func toWire(v any) map[string]any {
	// Our own reply types always marshal.
	b, _ := json.Marshal(v)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	_ = dec.Decode(&m)
	for k, x := range m {
		if n, ok := x.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				m[k] = i
			} else if f, err := n.Float64(); err == nil {
				m[k] = f
			}
		}
	}
	if c, ok := v.(ConsoleChunk); ok {
		m["data"] = c.Data
	}
	return m
}

// Decode turns an XML-RPC reply of the vm service back into its type.
func Decode[T any](v any) (T, error) {
	var out T
	b, err := json.Marshal(v)
	if err != nil {
		return out, fmt.Errorf("vm reply: %w", err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("vm reply %.200s: %w", b, err)
	}
	return out, nil
}
