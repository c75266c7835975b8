package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// LogRedirector forwards the services' log records to a controller's log
// server; *LogStreamer is the implementation.
type LogRedirector interface {
	Start(ctx context.Context, host string, port int) error
	StartUnix(ctx context.Context, path string) error
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
		"is_alive":                   noArgs(func() (any, error) { return true, nil }),
		"quit":                       noArgs(c.quitMethod),
		"start_log_redirection":      c.startLogRedirection,
		"stop_log_redirection":       noArgs(c.stopLogRedirection),
		"start_log_redirection_unix": c.startLogRedirectionUnix,
		"get_agent_log_filename":     c.logFileName(c.data.AgentLog()),
		"get_service_log_filename":   c.logFileName(c.data.ServiceLog()),
		"get_log_dir":                constant(c.data.LogDir()),
		"get_job_data_log":           c.getJobDataLog,
		"get_job_results_dir":        c.getJobResultsDir,
		"get_latest_job_results_dir": noArgs(c.getLatestJobResultsDir),
		"get_test_result_log_dir":    c.getTestResultLogDir,
		"save_job_data":              c.saveJobData,
		"load_job_data":              c.loadJobData,
		"delete_job_data":            c.deleteJobData,
		"save_suite_data":            c.saveSuiteData,
		"load_suite_data":            c.loadSuiteData,
		"delete_suite_data":          c.deleteSuiteData,
	}
}

// noArgs is a method that takes no arguments (refusing any, as Python
// refuses them with a TypeError) and answers f's result.
func noArgs(f func() (any, error)) Method {
	return func(_ context.Context, args Args) (any, error) {
		if err := args.Want(0, 0); err != nil {
			return nil, err
		}
		return f()
	}
}

// constant is a method without arguments that always answers v.
func constant(v string) Method {
	return noArgs(func() (any, error) { return v, nil })
}

// logFileName answers a log's path once every line logged before the call
// is in it: the caller is about to read it (the runner marks service.log's
// size before a test and copies what it gained), and the agent writes its
// logs a moment behind the calls (groupWriter).
func (c *coreService) logFileName(path string) Method {
	return noArgs(func() (any, error) {
		c.data.FlushLogs()
		return path, nil
	})
}

func (c *coreService) quitMethod() (any, error) {
	if c.quit == nil {
		return nil, xmlrpc.Faultf("RuntimeError", "this agent cannot be stopped remotely")
	}
	c.log.Info("requesting agent daemon to terminate", "pid", os.Getpid())
	go c.quit()
	return nil, nil
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
		return nil, xmlrpc.Faultf("ValueError", "Invalid host parameter: %s", py.Str(args[0]))
	}
	port64, ok := py.Int(args[1])
	if !ok || port64 < 1 || port64 > 65535 {
		return nil, xmlrpc.Faultf("ValueError", "Invalid port parameter: %s", py.Str(args[1]))
	}
	port := int(port64)
	if strings.ContainsAny(host, ";&|`$") {
		return nil, xmlrpc.Faultf("ValueError", "Host parameter contains invalid characters: %s", host)
	}
	if c.logs == nil {
		return nil, xmlrpc.Faultf("RuntimeError", "log redirection is not available on this agent")
	}
	if err := c.logs.Start(ctx, host, port); err != nil {
		switch {
		case errors.Is(err, ErrInvalidLogTarget):
			return nil, xmlrpc.Faultf("ValueError", "%v", err)
		case errors.Is(err, ErrStreamerClosed):
			return nil, xmlrpc.Faultf("RuntimeError", "%v", err)
		}
		return nil, err
	}
	c.log.Info("started the logger client", "addr", net.JoinHostPort(host, strconv.Itoa(port)))
	return nil, nil
}

// startLogRedirectionUnix is vtcluster's own start_log_redirection for a
// log server behind a Unix socket (the controller's SSH remote forward in
// the agent's directory), which only this node's SSH user can reach.
func (c *coreService) startLogRedirectionUnix(ctx context.Context, args Args) (any, error) {
	if err := args.Want(1, 1); err != nil {
		return nil, err
	}
	p, ok := args[0].(string)
	if !ok {
		return nil, xmlrpc.Faultf("ValueError", "Invalid socket path parameter: %s", py.Str(args[0]))
	}
	if c.logs == nil {
		return nil, xmlrpc.Faultf("RuntimeError", "log redirection is not available on this agent")
	}
	if err := c.logs.StartUnix(ctx, p); err != nil {
		if errors.Is(err, ErrInvalidLogTarget) {
			return nil, xmlrpc.Faultf("ValueError", "%v", err)
		}
		return nil, xmlrpc.Faultf("RuntimeError", "%v", err)
	}
	c.log.Info("started the logger client", "socket", p)
	return nil, nil
}

func (c *coreService) stopLogRedirection() (any, error) {
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

// ownJobArg checks that there are n arguments and reads the first as a
// job's own id, as save_job_data and delete_job_data take it: "latest" is
// refused (why, for this method).
func ownJobArg(args Args, n int, whyNotLatest string) (string, error) {
	if err := args.Want(n, n); err != nil {
		return "", err
	}
	job, err := args.String(0, "job_id")
	if err != nil {
		return "", err
	}
	if err := CheckID("job_id", job); err != nil {
		return "", err
	}
	if job == latestName {
		return "", xmlrpc.Faultf("ValueError", "job_id %q %s", job, whyNotLatest)
	}
	return job, nil
}

var errNoJob = errors.New("no job data saved yet")

// orNone answers a call whose job is not named or not saved yet as
// upstream does, with none (None or False) rather than an error; other
// errors stay errors.
func orNone(none any, err error) (any, error) {
	if errors.Is(err, errNoJob) {
		return none, nil
	}
	return nil, err
}

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
	if err != nil {
		return orNone(nil, err)
	}
	return c.existsOrNone(jobRel(job, sub)), nil
}

func (c *coreService) getLatestJobResultsDir() (any, error) {
	job, err := c.latestJob()
	if err != nil {
		return nil, nil
	}
	return c.existsOrNone(jobRel(job, "test_results")), nil
}

func (c *coreService) getTestResultLogDir(_ context.Context, args Args) (any, error) {
	suite, job, err := c.suiteJobArgs(args, 2)
	if err != nil {
		return orNone(nil, err)
	}
	return c.existsOrNone(jobRel(job, "test_results", suite)), nil
}

// saveJobData writes <job>/data/state.json, copies agent.log beside it and
// points "latest" at the job. Like upstream it answers False (and logs)
// when the state cannot be written, e.g. it holds bytes, and also when its
// JSON would exceed maxSavedJSON.
func (c *coreService) saveJobData(_ context.Context, args Args) (any, error) {
	job, err := ownJobArg(args, 2, "is reserved for the link to the last saved job")
	if err != nil {
		return nil, err
	}
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	root := c.data.Root()
	_, statErr := root.Lstat(jobRel(job))
	for _, d := range []string{jobRel(job, "test_results"), jobRel(job, "data")} {
		if err := root.MkdirAll(d, 0o755); err != nil {
			c.log.Error("failed to save job data", "job_id", job, "err", err)
			return false, nil
		}
	}
	if err := writeJSONFiles(root, jsonFile{jobRel(job, "data", "state.json"), args[1]}); err != nil {
		if errors.Is(statErr, fs.ErrNotExist) {
			// The state is only known to be unwritable once streamed; a
			// job that a refused save created must not seem saved.
			_ = root.RemoveAll(jobRel(job))
		}
		c.log.Error("failed to save job data", "job_id", job, "err", err)
		return false, nil
	}
	c.data.FlushLogs()
	if err := CopyLogTail(root, path.Join(logDirName, agentLogName), jobRel(job, "data", agentLogName), LogCopyMaxBytes); err != nil && !errors.Is(err, fs.ErrNotExist) {
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
	if err != nil {
		return orNone(nil, err)
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
	job, err := ownJobArg(args, 1, "is the link to the last saved job; delete the job by its id")
	if err != nil {
		return nil, err
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
	suite, job, err := c.suiteJobArgs(args, 4)
	if errors.Is(err, errNoJob) {
		// Upstream would create a real "latest" directory here, which then
		// breaks every later save_job_data.
		c.log.Error("failed to save suite data: no job_id given and no job saved yet", "suite_id", suite)
		return false, nil
	} else if err != nil {
		return nil, err
	}
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	root := c.data.Root()
	dir := jobRel(job, "test_results", suite)
	err = root.MkdirAll(dir, 0o755)
	if err == nil {
		err = writeJSONFiles(root, jsonFile{path.Join(dir, "state.json"), args[1]}, jsonFile{path.Join(dir, "result.json"), args[2]})
	}
	if err == nil {
		c.data.FlushLogs()
		if cerr := CopyLogTail(root, path.Join(logDirName, serviceLogName), path.Join(dir, serviceLogName), LogCopyMaxBytes); cerr != nil && !errors.Is(cerr, fs.ErrNotExist) {
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

// suiteJobArgs reads the suite_id first and the optional job_id last of
// n arguments, as the suite methods take them (n-1 are required):
// (suite_id, job_id=None) for most, (suite_id, state, results,
// job_id=None) for save_suite_data. errNoJob when no job is named or saved.
func (c *coreService) suiteJobArgs(args Args, n int) (suite, job string, err error) {
	if err := args.Want(n-1, n); err != nil {
		return "", "", err
	}
	if suite, err = suiteArg(args, 0); err != nil {
		return "", "", err
	}
	job, err = c.jobArg(args, n-1, true)
	return suite, job, err
}

func (c *coreService) loadSuiteData(_ context.Context, args Args) (any, error) {
	suite, job, err := c.suiteJobArgs(args, 2)
	if err != nil {
		return orNone(nil, err)
	}
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	dir := jobRel(job, "test_results", suite)
	var out xmlrpc.Struct
	if v, ok := c.readJSON(path.Join(dir, "state.json")); ok {
		out = append(out, xmlrpc.Member{Key: "state", Value: v})
	}
	if v, ok := c.readJSON(path.Join(dir, "result.json")); ok {
		out = append(out, xmlrpc.Member{Key: "results", Value: v})
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func (c *coreService) deleteSuiteData(_ context.Context, args Args) (any, error) {
	suite, job, err := c.suiteJobArgs(args, 2)
	if err != nil {
		return orNone(false, err)
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

// readJSON loads a JSON file below the root; false when it is absent,
// larger than maxSavedJSON or not valid JSON (logged), as upstream answers
// None then. Objects keep the file's key order, as json.load's dicts do.
func (c *coreService) readJSON(rel string) (any, bool) {
	data, err := readFileCapped(c.data.Root(), rel, maxSavedJSON)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.log.Error("failed to load data", "path", c.abs(rel), "err", err)
		}
		return nil, false
	}
	v, err := py.Loads(data)
	if err != nil {
		c.log.Error("failed to load data", "path", c.abs(rel), "err", err)
		return nil, false
	}
	return v, true
}

// ---- file helpers, all confined to the root ----

// maxSavedJSON bounds each saved state or result file, and what loading
// reads back. indent=4 costs four bytes per nesting level on every line,
// so a deeply nested call can grow fifty-fold: a 4 MiB call became a
// 200 MB file and 580 MiB of agent memory when the text was built whole.
const maxSavedJSON = 16 << 20

// savedJSON is json.dump(v, f, indent=4) as upstream writes state files,
// except that NaN and infinities are refused because they would not read
// back (Python reads them; Go and strict JSON do not).
var savedJSON = py.Options{Indent: 4, MaxBytes: maxSavedJSON}

type jsonFile struct {
	rel   string
	value any
}

// writeJSONFiles writes each value as savedJSON text, streamed through a
// buffer into a temporary file, and renames the files into place only
// once all of them are complete: a save that fails leaves the previous
// files as they were.
func writeJSONFiles(root *os.Root, files ...jsonFile) error {
	tmps := make([]string, 0, len(files))
	defer func() {
		for _, tmp := range tmps {
			_ = root.Remove(tmp)
		}
	}()
	for _, f := range files {
		tmp := fmt.Sprintf("%s.tmp.%d", f.rel, os.Getpid())
		tmps = append(tmps, tmp)
		if err := writeJSONFile(root, tmp, f.value); err != nil {
			return fmt.Errorf("%s: %w", path.Base(f.rel), err)
		}
	}
	for i, f := range files {
		if err := root.Rename(tmps[i], f.rel); err != nil {
			return err
		}
	}
	return nil
}

func writeJSONFile(root *os.Root, rel string, v any) error {
	f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 64<<10)
	err = py.Dump(w, v, savedJSON)
	if errors.Is(err, py.ErrTooLarge) {
		err = fmt.Errorf("the JSON text would exceed %d MiB", maxSavedJSON>>20)
	}
	if err == nil {
		err = w.Flush()
	}
	return errors.Join(err, f.Close())
}

// readFileCapped reads a file below the root, refusing one larger than
// limit without reading more than limit+1 bytes of it.
func readFileCapped(root *os.Root, rel string, limit int64) ([]byte, error) {
	f, err := root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("file is larger than %d MiB", limit>>20)
	}
	return data, nil
}
