package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The agent's data directory has upstream's layout:
//
//	<data>/log/agent.log, <data>/log/service.log
//	<data>/download/
//	<data>/job_data/<job_id>/{data/state.json, test_results/<suite>/…}
//	<data>/job_data/latest -> <job_id>
//	<data>/agent_tmp_*/
//
// Unlike upstream it is not wiped at start: a recursive delete descends
// into anything still mounted below it (NFS pools) and loses job data.
const (
	logDirName      = "log"
	downloadDirName = "download"
	jobDataDirName  = "job_data"
	agentLogName    = "agent.log"
	serviceLogName  = "service.log"
	latestName      = "latest"
	tmpPrefix       = "agent_tmp_"
)

// DataDir is the agent's data directory. Every access below it goes
// through an os.Root, so no name, symlink or ".." can reach outside.
type DataDir struct {
	path string
	root *os.Root
	log  *slog.Logger

	mu   sync.Mutex
	tmps []string // agent_tmp_* dirs made by this process
}

// OpenDataDir creates (if needed) the layout under path and removes
// agent_tmp_* directories last modified before started, which earlier runs
// left behind. logger may be nil.
func OpenDataDir(path string, started time.Time, logger *slog.Logger) (*DataDir, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, errors.New("agent: data dir: path is empty")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("agent: data dir %q: %w", path, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("agent: data dir: %w", err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("agent: data dir: %w", err)
	}
	d := &DataDir{path: abs, root: root, log: logger}
	for _, sub := range []string{logDirName, downloadDirName, jobDataDirName} {
		if err := root.MkdirAll(sub, 0o755); err != nil {
			root.Close()
			return nil, fmt.Errorf("agent: data dir %s: creating %s: %w", abs, sub, err)
		}
	}
	d.removeStaleTmp(started)
	return d, nil
}

// Path returns the absolute path of the data dir.
func (d *DataDir) Path() string { return d.path }

// Root returns the os.Root confining access to the data dir.
func (d *DataDir) Root() *os.Root { return d.root }

// LogDir returns <data>/log.
func (d *DataDir) LogDir() string { return filepath.Join(d.path, logDirName) }

// AgentLog returns <data>/log/agent.log.
func (d *DataDir) AgentLog() string { return filepath.Join(d.path, logDirName, agentLogName) }

// ServiceLog returns <data>/log/service.log.
func (d *DataDir) ServiceLog() string { return filepath.Join(d.path, logDirName, serviceLogName) }

// DownloadDir returns <data>/download.
func (d *DataDir) DownloadDir() string { return filepath.Join(d.path, downloadDirName) }

// JobDataDir returns <data>/job_data.
func (d *DataDir) JobDataDir() string { return filepath.Join(d.path, jobDataDirName) }

// TempDir creates a new <data>/agent_tmp_* directory, readable and
// traversable by everyone when public (as upstream's get_tmp_dir does, so
// unprivileged helpers such as qemu can read it). Close removes it.
func (d *DataDir) TempDir(public bool) (string, error) {
	dir, err := os.MkdirTemp(d.path, tmpPrefix)
	if err != nil {
		return "", fmt.Errorf("agent: data dir: %w", err)
	}
	if public {
		if err := os.Chmod(dir, 0o755); err != nil {
			d.log.Warn("agent: cannot make temp dir public", "path", dir, "err", err)
		}
	}
	d.mu.Lock()
	d.tmps = append(d.tmps, filepath.Base(dir))
	d.mu.Unlock()
	return dir, nil
}

// Close removes the temp dirs this process made and releases the root. It
// is safe to call more than once.
func (d *DataDir) Close() error {
	d.mu.Lock()
	tmps := d.tmps
	d.tmps = nil
	d.mu.Unlock()
	var errs []error
	for _, t := range tmps {
		if err := d.root.RemoveAll(t); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.root.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeStaleTmp removes agent_tmp_* directories older than started. A
// run killed by SIGKILL could not clean up after itself.
func (d *DataDir) removeStaleTmp(started time.Time) {
	entries, err := fs.ReadDir(d.root.FS(), ".")
	if err != nil {
		d.log.Warn("agent: cannot list data dir", "path", d.path, "err", err)
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(started) {
			continue
		}
		if err := d.root.RemoveAll(e.Name()); err != nil {
			d.log.Warn("agent: cannot remove stale temp dir", "path", filepath.Join(d.path, e.Name()), "err", err)
			continue
		}
		d.log.Debug("agent: removed stale temp dir", "path", filepath.Join(d.path, e.Name()))
	}
}

// CheckID refuses an id that would not name exactly one entry inside its
// parent directory: empty, ".", "..", containing a separator or NUL, or
// longer than a file name may be. kind names the argument in the fault
// ("job_id"). The error is a ValueError Fault.
func CheckID(kind, id string) error {
	switch {
	case id == "":
		return Faultf("ValueError", "%s must not be empty", kind)
	case id == "." || id == "..":
		return Faultf("ValueError", "%s %q is not allowed", kind, id)
	case strings.ContainsAny(id, "/\\\x00"):
		return Faultf("ValueError", "%s %q must not contain a path separator or NUL", kind, id)
	case len(id) > 255:
		return Faultf("ValueError", "%s is %d bytes long, at most 255 allowed", kind, len(id))
	}
	return nil
}
