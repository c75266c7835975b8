package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LogRedirector forwards the services' log records to a controller's log
// server; *LogStreamer is the implementation.
type LogRedirector interface {
	Start(ctx context.Context, host string, port int) error
	Stop() error
}

// CoreConfig is what the core service needs from the daemon.
type CoreConfig struct {
	// Data is the agent's data dir; required.
	Data *DataDir
	// Logs serves start/stop_log_redirection; nil makes them raise
	// RuntimeError.
	Logs LogRedirector
	// Quit asks the daemon to shut down gracefully. It is called on its own
	// goroutine after core.quit returned, so the reply reaches the caller.
	// nil makes core.quit raise RuntimeError.
	Quit func()
	// Logger is the service's logger ("avocado.service.core"); nil discards.
	Logger *slog.Logger
}

// coreService implements upstream's core.* methods.
type coreService struct {
	data *DataDir
	logs LogRedirector
	quit func()
	log  *slog.Logger

	// jobMu serialises the job/suite data calls: they move the "latest"
	// link and write files that a parallel call could read half-written.
	jobMu sync.Mutex
}

// NewCoreService returns the "core" service. Register it a second time
// under "agent.services.core" for upstream's alias.
func NewCoreService(cfg CoreConfig) (Service, error) {
	if cfg.Data == nil {
		return nil, errors.New("agent: core service: Data is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &coreService{data: cfg.Data, logs: cfg.Logs, quit: cfg.Quit, log: logger}, nil
}

// CoreAlias is the prefix under which upstream's agent also exposes core.
const CoreAlias = "agent.services.core"

func (c *coreService) Name() string { return "core" }

func (c *coreService) Methods() map[string]Method {
	return map[string]Method{
		"is_alive":                   c.isAlive,
		"quit":                       c.quitMethod,
		"start_log_redirection":      c.startLogRedirection,
		"stop_log_redirection":       c.stopLogRedirection,
		"get_agent_log_filename":     c.constant(c.data.AgentLog()),
		"get_service_log_filename":   c.constant(c.data.ServiceLog()),
		"get_log_dir":                c.constant(c.data.LogDir()),
		"get_job_data_log":           c.getJobDataLog,
		"get_job_results_dir":        c.getJobResultsDir,
		"get_latest_job_results_dir": c.getLatestJobResultsDir,
		"get_test_result_log_dir":    c.getTestResultLogDir,
		"save_job_data":              c.saveJobData,
		"load_job_data":              c.loadJobData,
		"delete_job_data":            c.deleteJobData,
		"save_suite_data":            c.saveSuiteData,
		"load_suite_data":            c.loadSuiteData,
		"delete_suite_data":          c.deleteSuiteData,
	}
}

func (c *coreService) isAlive(_ context.Context, args Args) (any, error) {
	if err := args.Want(0, 0); err != nil {
		return nil, err
	}
	return true, nil
}

func (c *coreService) quitMethod(_ context.Context, args Args) (any, error) {
	if err := args.Want(0, 0); err != nil {
		return nil, err
	}
	if c.quit == nil {
		return nil, Faultf("RuntimeError", "this agent cannot be stopped remotely")
	}
	c.log.Info("requesting agent daemon to terminate", "pid", os.Getpid())
	go c.quit()
	return nil, nil
}

func (c *coreService) constant(v string) Method {
	return func(_ context.Context, args Args) (any, error) {
		if err := args.Want(0, 0); err != nil {
			return nil, err
		}
		return v, nil
	}
}

// startLogRedirection validates exactly as upstream does (ValueError for
// an empty or non-str host, a non-int or out-of-range port, or shell
// metacharacters in the host) before connecting out.
func (c *coreService) startLogRedirection(ctx context.Context, args Args) (any, error) {
	if err := args.Want(2, 2); err != nil {
		return nil, err
	}
	host, ok := args[0].(string)
	if !ok || host == "" {
		return nil, Faultf("ValueError", "Invalid host parameter: %s", pyStr(args[0]))
	}
	port, ok := args[1].(int)
	if !ok || port < 1 || port > 65535 {
		return nil, Faultf("ValueError", "Invalid port parameter: %s", pyStr(args[1]))
	}
	if strings.ContainsAny(host, ";&|`$") {
		return nil, Faultf("ValueError", "Host parameter contains invalid characters: %s", host)
	}
	if c.logs == nil {
		return nil, Faultf("RuntimeError", "log redirection is not available on this agent")
	}
	if err := c.logs.Start(ctx, host, port); err != nil {
		switch {
		case errors.Is(err, ErrInvalidLogTarget):
			return nil, Faultf("ValueError", "%v", err)
		case errors.Is(err, ErrStreamerClosed):
			return nil, Faultf("RuntimeError", "%v", err)
		}
		return nil, err
	}
	c.log.Info("started the logger client", "addr", net.JoinHostPort(host, strconv.Itoa(port)))
	return nil, nil
}

func (c *coreService) stopLogRedirection(_ context.Context, args Args) (any, error) {
	if err := args.Want(0, 0); err != nil {
		return nil, err
	}
	if c.logs == nil {
		return nil, nil
	}
	return nil, c.logs.Stop()
}

// ---- job and suite data ----

// Relative paths below the data dir's root.
func jobRel(job string, elem ...string) string {
	return path.Join(append([]string{jobDataDirName, job}, elem...)...)
}

func (c *coreService) abs(rel string) string {
	return filepath.Join(c.data.Path(), filepath.FromSlash(rel))
}

// existsOrNone returns the absolute path of rel when it exists, else nil,
// as upstream's get_* functions do.
func (c *coreService) existsOrNone(rel string) any {
	if _, err := c.data.Root().Stat(rel); err != nil {
		return nil
	}
	return c.abs(rel)
}

// jobArg reads a job id argument. "latest" (and an absent id where allowed)
// resolves through the latest link, which must name a valid job; errNoJob
// means there is no such link.
func (c *coreService) jobArg(args Args, i int, optional bool) (string, error) {
	var id string
	var err error
	if optional {
		id, err = args.OptString(i, "job_id", "")
	} else {
		id, err = args.String(i, "job_id")
	}
	if err != nil {
		return "", err
	}
	if optional && id == "" {
		id = latestName
	}
	if err := CheckID("job_id", id); err != nil {
		return "", err
	}
	if id != latestName {
		return id, nil
	}
	return c.latestJob()
}

var errNoJob = errors.New("no job data saved yet")

// latestJob reads the latest link. Only a link to a sibling job dir is
// followed, so a link planted by someone else cannot lead anywhere else.
func (c *coreService) latestJob() (string, error) {
	target, err := c.data.Root().Readlink(path.Join(jobDataDirName, latestName))
	if err != nil {
		return "", errNoJob
	}
	target = strings.TrimSuffix(target, "/")
	if filepath.IsAbs(target) {
		// Upstream writes an absolute link; accept it only if it points
		// into our own job_data.
		rel, err := filepath.Rel(c.data.JobDataDir(), target)
		if err != nil {
			return "", errNoJob
		}
		target = rel
	}
	if CheckID("latest", target) != nil || target == latestName {
		return "", errNoJob
	}
	return target, nil
}

func suiteArg(args Args, i int) (string, error) {
	id, err := args.String(i, "suite_id")
	if err != nil {
		return "", err
	}
	return id, CheckID("suite_id", id)
}

func (c *coreService) getJobDataLog(_ context.Context, args Args) (any, error) {
	return c.jobSubdir(args, "data")
}

func (c *coreService) getJobResultsDir(_ context.Context, args Args) (any, error) {
	return c.jobSubdir(args, "test_results")
}

// jobSubdir answers get_job_data_log and get_job_results_dir: the job's
// sub directory if it exists, None otherwise.
func (c *coreService) jobSubdir(args Args, sub string) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	job, err := c.jobArg(args, 0, false)
	if errors.Is(err, errNoJob) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return c.existsOrNone(jobRel(job, sub)), nil
}

func (c *coreService) getLatestJobResultsDir(_ context.Context, args Args) (any, error) {
	if err := args.Want(0, 0); err != nil {
		return nil, err
	}
	job, err := c.latestJob()
	if err != nil {
		return nil, nil
	}
	return c.existsOrNone(jobRel(job, "test_results")), nil
}

func (c *coreService) getTestResultLogDir(_ context.Context, args Args) (any, error) {
	if err := args.Want(1, 2); err != nil {
		return nil, err
	}
	suite, err := suiteArg(args, 0)
	if err != nil {
		return nil, err
	}
	job, err := c.jobArg(args, 1, true)
	if errors.Is(err, errNoJob) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return c.existsOrNone(jobRel(job, "test_results", suite)), nil
}

// saveJobData writes <job>/data/state.json, copies agent.log beside it and
// points "latest" at the job. Like upstream it answers False (and logs)
// when the state cannot be written, e.g. it holds bytes.
func (c *coreService) saveJobData(_ context.Context, args Args) (any, error) {
	if err := args.Want(2, 2); err != nil {
		return nil, err
	}
	job, err := args.String(0, "job_id")
	if err != nil {
		return nil, err
	}
	if err := CheckID("job_id", job); err != nil {
		return nil, err
	}
	if job == latestName {
		return nil, Faultf("ValueError", "job_id %q is reserved for the link to the last saved job", job)
	}
	state, err := pyJSONIndent(args[1])
	if err != nil {
		c.log.Error("failed to save job data", "job_id", job, "err", err)
		return false, nil
	}
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	root := c.data.Root()
	for _, d := range []string{jobRel(job, "test_results"), jobRel(job, "data")} {
		if err := root.MkdirAll(d, 0o755); err != nil {
			c.log.Error("failed to save job data", "job_id", job, "err", err)
			return false, nil
		}
	}
	if err := writeFileAtomic(root, jobRel(job, "data", "state.json"), state); err != nil {
		c.log.Error("failed to save job data", "job_id", job, "err", err)
		return false, nil
	}
	if err := copyInRoot(root, path.Join(logDirName, agentLogName), jobRel(job, "data", agentLogName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Error("failed to save job data", "job_id", job, "err", err)
		return false, nil
	}
	if err := c.pointLatest(job); err != nil {
		c.log.Error("failed to save job data", "job_id", job, "err", err)
		return false, nil
	}
	c.log.Info("saved job data", "job_id", job)
	return true, nil
}

// pointLatest replaces the latest link atomically with a relative link,
// which survives moving the data dir.
func (c *coreService) pointLatest(job string) error {
	root := c.data.Root()
	tmp := path.Join(jobDataDirName, fmt.Sprintf(".latest.%d.%d", os.Getpid(), time.Now().UnixNano()))
	if err := root.Symlink(job, tmp); err != nil {
		return err
	}
	if err := root.Rename(tmp, path.Join(jobDataDirName, latestName)); err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("pointing %s at %s: %w", latestName, job, err)
	}
	return nil
}

// loadJobData reads what saveJobData wrote (upstream reads <job>/state.json
// and so always answers None). None when absent or unreadable.
func (c *coreService) loadJobData(_ context.Context, args Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	job, err := c.jobArg(args, 0, false)
	if errors.Is(err, errNoJob) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	v, ok := c.readJSON(jobRel(job, "data", "state.json"))
	if !ok {
		return nil, nil
	}
	return v, nil
}

func (c *coreService) deleteJobData(_ context.Context, args Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	job, err := args.String(0, "job_id")
	if err != nil {
		return nil, err
	}
	if err := CheckID("job_id", job); err != nil {
		return nil, err
	}
	if job == latestName {
		return nil, Faultf("ValueError", "job_id %q is the link to the last saved job; delete the job by its id", job)
	}
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	root := c.data.Root()
	rel := jobRel(job)
	if fi, err := root.Lstat(rel); err != nil || !fi.IsDir() {
		c.log.Warn("no data directory found", "job_id", job)
		return false, nil
	}
	if err := root.RemoveAll(rel); err != nil {
		c.log.Error("failed to delete job data", "job_id", job, "err", err)
		return false, nil
	}
	if latest, err := c.latestJob(); err == nil && latest == job {
		// A dangling latest link would make suite calls fail obscurely.
		_ = root.Remove(path.Join(jobDataDirName, latestName))
	}
	c.log.Info("deleted job data", "job_id", job)
	return true, nil
}

func (c *coreService) saveSuiteData(_ context.Context, args Args) (any, error) {
	if err := args.Want(3, 4); err != nil {
		return nil, err
	}
	suite, err := suiteArg(args, 0)
	if err != nil {
		return nil, err
	}
	job, err := c.jobArg(args, 3, true)
	if errors.Is(err, errNoJob) {
		// Upstream would create a real "latest" directory here, which then
		// breaks every later save_job_data.
		c.log.Error("failed to save suite data: no job_id given and no job saved yet", "suite_id", suite)
		return false, nil
	} else if err != nil {
		return nil, err
	}
	state, err1 := pyJSONIndent(args[1])
	result, err2 := pyJSONIndent(args[2])
	if err := errors.Join(err1, err2); err != nil {
		c.log.Error("failed to save suite data", "job_id", job, "suite_id", suite, "err", err)
		return false, nil
	}
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	root := c.data.Root()
	dir := jobRel(job, "test_results", suite)
	err = root.MkdirAll(dir, 0o755)
	if err == nil {
		err = writeFileAtomic(root, path.Join(dir, "state.json"), state)
	}
	if err == nil {
		err = writeFileAtomic(root, path.Join(dir, "result.json"), result)
	}
	if err == nil {
		if cerr := copyInRoot(root, path.Join(logDirName, serviceLogName), path.Join(dir, serviceLogName)); cerr != nil && !errors.Is(cerr, fs.ErrNotExist) {
			err = cerr
		}
	}
	if err != nil {
		c.log.Error("failed to save suite data", "job_id", job, "suite_id", suite, "err", err)
		return false, nil
	}
	c.log.Info("saved suite data", "job_id", job, "suite_id", suite)
	return true, nil
}

// suiteJobArgs reads (suite_id, job_id=None) as load_suite_data and
// delete_suite_data take them; errNoJob when no job is named or saved.
func (c *coreService) suiteJobArgs(args Args) (suite, job string, err error) {
	if err := args.Want(1, 2); err != nil {
		return "", "", err
	}
	if suite, err = suiteArg(args, 0); err != nil {
		return "", "", err
	}
	job, err = c.jobArg(args, 1, true)
	return suite, job, err
}

func (c *coreService) loadSuiteData(_ context.Context, args Args) (any, error) {
	suite, job, err := c.suiteJobArgs(args)
	if errors.Is(err, errNoJob) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	dir := jobRel(job, "test_results", suite)
	var out Struct
	if v, ok := c.readJSON(path.Join(dir, "state.json")); ok {
		out = append(out, Member{"state", v})
	}
	if v, ok := c.readJSON(path.Join(dir, "result.json")); ok {
		out = append(out, Member{"results", v})
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func (c *coreService) deleteSuiteData(_ context.Context, args Args) (any, error) {
	suite, job, err := c.suiteJobArgs(args)
	if errors.Is(err, errNoJob) {
		return false, nil
	} else if err != nil {
		return nil, err
	}
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	root := c.data.Root()
	dir := jobRel(job, "test_results", suite)
	if fi, err := root.Lstat(dir); err != nil || !fi.IsDir() {
		c.log.Warn("no data directory found", "job_id", job, "suite_id", suite)
		return false, nil
	}
	if err := root.RemoveAll(dir); err != nil {
		c.log.Error("failed to delete suite data", "job_id", job, "suite_id", suite, "err", err)
		return false, nil
	}
	return true, nil
}

// readJSON loads a JSON file below the root; false when it is absent or
// not valid JSON (logged), as upstream answers None then.
func (c *coreService) readJSON(rel string) (any, bool) {
	data, err := c.data.Root().ReadFile(rel)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.log.Error("failed to load data", "path", c.abs(rel), "err", err)
		}
		return nil, false
	}
	v, err := decodeJSONValue(data)
	if err != nil {
		c.log.Error("failed to load data", "path", c.abs(rel), "err", err)
		return nil, false
	}
	return v, true
}

// ---- file helpers, all confined to the root ----

func writeFileAtomic(root *os.Root, rel string, data []byte) error {
	tmp := fmt.Sprintf("%s.tmp.%d", rel, os.Getpid())
	if err := root.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := root.Rename(tmp, rel); err != nil {
		_ = root.Remove(tmp)
		return err
	}
	return nil
}

func copyInRoot(root *os.Root, src, dst string) error {
	in, err := root.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := root.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ---- JSON as Python's json.dump(obj, f, indent=4) writes it ----

// pyJSONIndent encodes an XML-RPC value as json.dump(v, indent=4) does:
// insertion order is lost (keys are sorted), floats keep Python's repr so
// 1.0 stays a float when read back. Like Python, bytes and datetimes are
// not JSON serialisable; unlike Python, NaN and infinities are refused
// because they would not read back.
func pyJSONIndent(v any) ([]byte, error) {
	return appendPyJSON(nil, v, 0)
}

func appendPyJSON(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	indent := func(b []byte, n int) []byte {
		b = append(b, '\n')
		for range n {
			b = append(b, "    "...)
		}
		return b
	}
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("float %v is not representable in JSON", x)
		}
		return append(b, PyFloatRepr(x)...), nil
	case string:
		return AppendPyJSONString(b, x), nil
	case []any:
		if len(x) == 0 {
			return append(b, "[]"...), nil
		}
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = indent(b, depth+1)
			var err error
			if b, err = appendPyJSON(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		b = indent(b, depth)
		return append(b, ']'), nil
	case map[string]any:
		if len(x) == 0 {
			return append(b, "{}"...), nil
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = indent(b, depth+1)
			b = AppendPyJSONString(b, k)
			b = append(b, ": "...)
			var err error
			if b, err = appendPyJSON(b, x[k], depth+1); err != nil {
				return nil, err
			}
		}
		b = indent(b, depth)
		return append(b, '}'), nil
	// These messages are Python's json.dumps TypeError, word for word:
	// callers compare them with what upstream's agent says.
	case []byte:
		//lint:ignore ST1005 Python's exception text, capital included
		return nil, errors.New("Object of type Binary is not JSON serializable")
	case time.Time:
		//lint:ignore ST1005 Python's exception text, capital included
		return nil, errors.New("Object of type DateTime is not JSON serializable")
	}
	//lint:ignore ST1005 Python's exception text, capital included
	return nil, fmt.Errorf("Object of type %T is not JSON serializable", v)
}

// decodeJSONValue reads JSON into the codec's value types: integers stay
// int (Python's int), everything with a fraction or exponent is float64.
func decodeJSONValue(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON value")
	}
	return fromJSONNumbers(v), nil
}

func fromJSONNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return int(n)
			}
		}
		f, _ := strconv.ParseFloat(s, 64)
		return f
	case []any:
		for i := range x {
			x[i] = fromJSONNumbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = fromJSONNumbers(x[k])
		}
	}
	return v
}

// pyStr renders a decoded value as Python's str() would, for messages.
func pyStr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return x
	case []byte:
		return fmt.Sprintf("<xmlrpc.client.Binary of %d bytes>", len(x))
	}
	return fmt.Sprint(v)
}
