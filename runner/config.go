package runner

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
)

// configurationUsed lists the Avocado settings the runner reads from -c.
// capabilities reports it, and Avocado then passes exactly these keys (plus
// runner.identifier_format). The Python shim registers the multihost.*
// ones; keep the two lists in step.
var configurationUsed = []string{
	"job.run.timeout",
	"multihost.alloc_timeout",
	"multihost.binary",
	"multihost.cluster",
	"multihost.hold_on_failure",
	"multihost.lease",
	"multihost.node_lost_after",
	"multihost.priority",
	"multihost.quarantine_after",
	"multihost.retry_infra",
	"multihost.state",
	"multihost.state_dir",
	"run.keep_tmp",
	"task.timeout.running",
}

// RunConfig is what the runner takes from Avocado's settings.
type RunConfig struct {
	// Binary is the vtcluster executable bodies should call
	// (multihost.binary, exported as VTCLUSTER_BIN); empty means this
	// runner's own executable.
	Binary string
	// State is where the state lives (multihost.state): etcd://...,
	// etcds://... or file:///dir; empty means VTCLUSTER_STATE, else the
	// state directory.
	State string
	// StateDir is the vtcluster state directory (multihost.state_dir);
	// empty means vtcluster's default.
	StateDir string
	// Cluster is the cluster name (multihost.cluster); empty means
	// vtcluster's default.
	Cluster string
	// AllocTimeout bounds waiting for nodes (multihost.alloc_timeout,
	// seconds).
	AllocTimeout time.Duration
	// Lease is the partition lease to ask for (multihost.lease, seconds);
	// zero means the cluster default.
	Lease time.Duration
	// Priority ranks the test's allocation among waiting ones
	// (multihost.priority; higher first, default 0).
	Priority int
	// QuarantineAfter is how many infrastructure failures in a row take a
	// node out of rotation (multihost.quarantine_after; 0 means the
	// default, cluster.DefaultQuarantineAfter; negative never).
	QuarantineAfter int
	// RetryInfra runs a test that failed for an infrastructure reason once
	// more, on other nodes (multihost.retry_infra).
	RetryInfra bool
	// KeepTmp keeps the body's scratch directory (run.keep_tmp).
	KeepTmp bool
	// StatusServerURI is run.status_server_uri, used like Avocado does
	// when no -s is given and the key is present.
	StatusServerURI string
	// JobTimeout (job.run.timeout) and TaskTimeout (task.timeout.running)
	// are Avocado's limits, zero for none. Avocado enforces them; the
	// runner only reads them to say which one ended a test (see
	// interruptClock).
	JobTimeout, TaskTimeout time.Duration
	// NodeLostAfter is how long a node's agent may leave the runner's
	// probes unanswered before the node counts as lost
	// (multihost.node_lost_after, seconds); zero means healthDeadline.
	// A node too starved of CPU to answer in time would otherwise be
	// reported lost, and counted towards its quarantine.
	NodeLostAfter time.Duration
	// HoldOnFailure keeps a failed or errored test's partition this long
	// for debugging (multihost.hold_on_failure: "2h", "30m", seconds);
	// zero tears it down as usual (hold.go).
	HoldOnFailure time.Duration
}

// defaultRunConfig returns the settings used for keys that are absent or
// null.
func defaultRunConfig() RunConfig {
	return RunConfig{
		AllocTimeout: 5 * time.Minute, // nodes held by other tests free up within minutes
	}
}

// runConfigFromSettings reads the settings Avocado passed with -c. Keys it
// does not know are ignored, as Avocado passes more than asked for.
func runConfigFromSettings(settings map[string]any) (RunConfig, error) {
	c := defaultRunConfig()
	str := func(key string, dst *string) error {
		switch v := settings[key].(type) {
		case nil:
		case string:
			*dst = v
		default:
			return fmt.Errorf("runner: setting %s: expected a string, got %s", key, py.Repr(v))
		}
		return nil
	}
	secs := func(key string, dst *time.Duration, zeroOK bool) error {
		var f float64
		switch v := settings[key].(type) {
		case nil:
			return nil
		case int64:
			f = float64(v)
		case float64:
			f = v
		case string:
			var err error
			if f, err = strconv.ParseFloat(v, 64); err != nil {
				return fmt.Errorf("runner: setting %s: expected seconds, got %s", key, py.Repr(v))
			}
		default:
			return fmt.Errorf("runner: setting %s: expected seconds, got %s", key, py.Repr(v))
		}
		if math.IsNaN(f) || f < 0 || (f == 0 && !zeroOK) || f > 365*24*3600 {
			return fmt.Errorf("runner: setting %s: %v seconds is out of range", key, f)
		}
		*dst = time.Duration(f * float64(time.Second))
		return nil
	}
	for _, err := range []error{
		str("multihost.binary", &c.Binary),
		str("multihost.state", &c.State),
		str("multihost.state_dir", &c.StateDir),
		str("multihost.cluster", &c.Cluster),
		str("run.status_server_uri", &c.StatusServerURI),
		secs("multihost.alloc_timeout", &c.AllocTimeout, false),
		secs("multihost.lease", &c.Lease, true),
		secs("multihost.node_lost_after", &c.NodeLostAfter, false),
	} {
		if err != nil {
			return c, err
		}
	}
	if err := holdSetting(settings["multihost.hold_on_failure"], &c.HoldOnFailure); err != nil {
		return c, err
	}
	// Only used to word an interruption: a value that does not read as
	// seconds is ignored rather than failing the test.
	_ = secs("job.run.timeout", &c.JobTimeout, true)
	_ = secs("task.timeout.running", &c.TaskTimeout, true)
	for key, dst := range map[string]*int{"multihost.priority": &c.Priority, "multihost.quarantine_after": &c.QuarantineAfter} {
		switch v := settings[key].(type) {
		case nil:
		case int64:
			if v < -1000 || v > 1000 {
				return c, fmt.Errorf("runner: setting %s: %d is out of range (-1000..1000)", key, v)
			}
			*dst = int(v)
		case string:
			n, err := strconv.Atoi(v)
			if err != nil || n < -1000 || n > 1000 {
				return c, fmt.Errorf("runner: setting %s: expected an integer within -1000..1000, got %s", key, py.Repr(v))
			}
			*dst = n
		default:
			return c, fmt.Errorf("runner: setting %s: expected an integer, got %s", key, py.Repr(v))
		}
	}
	switch v := settings["multihost.retry_infra"].(type) {
	case nil:
	case bool:
		c.RetryInfra = v
	default:
		return c, fmt.Errorf("runner: setting multihost.retry_infra: expected true or false, got %s", py.Repr(v))
	}
	switch v := settings["run.keep_tmp"].(type) {
	case nil:
	case bool:
		c.KeepTmp = v
	default:
		return c, fmt.Errorf("runner: setting run.keep_tmp: expected true or false, got %s", py.Repr(v))
	}
	return c, nil
}
