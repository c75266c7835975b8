package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
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

	mu       sync.Mutex
	tmps     []string // agent_tmp_* dirs made by this process
	flushers []func() // the log files' Flush (FlushLogs)
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
		return xmlrpc.Faultf("ValueError", "%s must not be empty", kind)
	case id == "." || id == "..":
		return xmlrpc.Faultf("ValueError", "%s %q is not allowed", kind, id)
	case strings.ContainsAny(id, "/\\\x00"):
		return xmlrpc.Faultf("ValueError", "%s %q must not contain a path separator or NUL", kind, id)
	case len(id) > 255:
		return xmlrpc.Faultf("ValueError", "%s is %d bytes long, at most 255 allowed", kind, len(id))
	}
	return nil
}

// Log sizes: a long-lived agent rotates its logs while running, and job and
// suite dirs get only the end of a log, so neither a flood of requests nor
// a chatty command fills the node's disk.
const (
	// LogMaxBytes is the size at which agent.log and service.log rotate.
	LogMaxBytes = 10 << 20
	// LogGenerations is how many rotated files (log.1 … log.N) are kept.
	LogGenerations = 3
	// LogCopyMaxBytes bounds the copy of a log saved with job or suite
	// data: its last LogCopyMaxBytes bytes.
	LogCopyMaxBytes = 8 << 20
)

// RotatingFile is an append-only log file that, before a write would take
// it past maxBytes, moves path to path.1 (path.1 to path.2 and so on,
// keeping keep old files) and starts a new one. It is safe for concurrent
// use.
type RotatingFile struct {
	path string
	max  int64
	keep int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// OpenRotatingFile opens path for appending, rotating it first when it is
// already too large.
func OpenRotatingFile(path string, maxBytes int64, keep int) (*RotatingFile, error) {
	if maxBytes <= 0 || keep < 1 {
		return nil, fmt.Errorf("agent: log %s: size %d and generations %d must be positive", path, maxBytes, keep)
	}
	r := &RotatingFile{path: path, max: maxBytes, keep: keep}
	if fi, err := os.Stat(path); err == nil && fi.Size() >= maxBytes {
		r.shift()
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("agent: log: %w", err)
	}
	r.f, r.size = f, 0
	if fi, err := f.Stat(); err == nil {
		r.size = fi.Size()
	}
	return nil
}

// shift renames path.N-1 → path.N … path → path.1; failures leave the
// file where it is, which only means it grows.
func (r *RotatingFile) shift() {
	for i := r.keep - 1; i >= 1; i-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", r.path, i), fmt.Sprintf("%s.%d", r.path, i+1))
	}
	_ = os.Rename(r.path, r.path+".1")
}

// Write appends p, rotating first when p would take the file past its size.
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, os.ErrClosed
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		r.f.Close()
		r.shift()
		if err := r.open(); err != nil {
			r.f = nil
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// WriteString is Write for a string.
func (r *RotatingFile) WriteString(s string) (int, error) { return r.Write([]byte(s)) }

// Close closes the file; later writes fail.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// CopyLogTail copies the last maxBytes of the file src to dst (created or
// truncated, mode 0644), both inside root, so a saved copy of a log is bounded
// however large the log grew. A copy that starts mid-file begins at the
// next line and is preceded by a note saying how much was left out.
func CopyLogTail(root *os.Root, src, dst string, maxBytes int64) error {
	in, err := root.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := root.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	var r io.Reader = in
	if skip := fi.Size() - maxBytes; skip > 0 {
		if _, err := in.Seek(skip, io.SeekStart); err != nil {
			out.Close()
			return err
		}
		br := bufio.NewReader(io.LimitReader(in, maxBytes))
		dropped, _ := br.ReadString('\n')
		fmt.Fprintf(out, "[vtcluster: the first %d bytes of %s were left out; the copy keeps its last %d bytes]\n", skip+int64(len(dropped)), filepath.Base(src), maxBytes)
		r = br
	} else {
		r = io.LimitReader(in, maxBytes)
	}
	_, cerr := io.Copy(out, r)
	return errors.Join(cerr, out.Close())
}
