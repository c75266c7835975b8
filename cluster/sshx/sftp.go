package sshx

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SFTP is an SFTP client on its own session, so that cancelling one
// transfer (closing its session) leaves other users of the connection alone.
type SFTP struct {
	*sftp.Client
	sess    *ssh.Session
	stop    func() bool
	release func()
}

// OpenSFTP starts the sftp subsystem on a new session. Every operation on
// the returned client fails promptly once ctx ends: the session is closed.
func (c *Client) OpenSFTP(ctx context.Context) (*SFTP, error) {
	release, err := c.acquire(ctx)
	if err != nil {
		return nil, err
	}
	sess, err := c.client.NewSession()
	if err != nil {
		release()
		return nil, c.sessionErr(err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	fail := func(err error) (*SFTP, error) {
		stop()
		sess.Close()
		release()
		return nil, c.ctxErr(ctx, "start sftp", err)
	}
	w, err := sess.StdinPipe()
	if err != nil {
		return fail(err)
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		return fail(fmt.Errorf("sftp subsystem refused (is \"Subsystem sftp\" set in sshd_config?): %w", err))
	}
	// Pipelined writes are what make uploads fast on links with latency;
	// callers truncate or remove files after a failed write, since
	// out-of-order writes can leave holes.
	cl, err := sftp.NewClientPipe(r, w, sftp.UseConcurrentWrites(true))
	if err != nil {
		return fail(err)
	}
	return &SFTP{Client: cl, sess: sess, stop: stop, release: release}, nil
}

// Owner is the uid owning a file that SFTP listed or stat'ed.
func Owner(st fs.FileInfo) (uint32, bool) {
	if sys, ok := st.Sys().(*sftp.FileStat); ok {
		return sys.UID, true
	}
	return 0, false
}

// Close ends the SFTP client and its session and frees its session slot.
func (s *SFTP) Close() {
	s.stop()
	s.Client.Close()
	s.sess.Close()
	s.release()
}

// ctxErr prefers the context's error: once ctx ends, SFTP calls fail with
// "connection lost" or EOF, which would hide the reason.
func (c *Client) ctxErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("ssh %s: %s: %w", c.addr, what, ctx.Err())
	}
	return fmt.Errorf("ssh %s: %s: %w", c.addr, what, err)
}

// withSFTP runs fn with a fresh SFTP client. Callers never hold one while
// waiting for another session (such as a command), so concurrent callers
// cannot deadlock on the MaxSessions slots.
func (c *Client) withSFTP(ctx context.Context, fn func(*SFTP) error) error {
	sc, err := c.OpenSFTP(ctx)
	if err != nil {
		return err
	}
	defer sc.Close()
	return fn(sc)
}

// UploadResult says what Upload did.
type UploadResult struct {
	// SHA256 is the hex digest of the file now at the remote path.
	SHA256 string
	// Skipped is true when the remote file already had that content, so
	// nothing was transferred (its mode was still set).
	Skipped bool
}

// Upload puts a local regular file at remotePath with the given mode (zero
// means the local file's permissions), atomically: it writes a temporary
// file in the same remote directory, checks its SHA-256, and renames it
// into place. It does nothing but fix the mode when the remote file
// already has the same SHA-256. The parent directory is created if needed.
func (c *Client) Upload(ctx context.Context, localPath, remotePath string, mode os.FileMode) (UploadResult, error) {
	f, err := os.Open(localPath)
	if err != nil {
		return UploadResult{}, fmt.Errorf("upload: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return UploadResult{}, fmt.Errorf("upload: %w", err)
	}
	if !st.Mode().IsRegular() {
		return UploadResult{}, fmt.Errorf("upload %s: not a regular file", localPath)
	}
	if mode == 0 {
		mode = st.Mode().Perm()
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return UploadResult{}, fmt.Errorf("upload: read %s: %w", localPath, err)
	}
	want := hex.EncodeToString(h.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return UploadResult{}, fmt.Errorf("upload: %w", err)
	}

	have, err := c.RemoteSHA256(ctx, remotePath)
	if err != nil {
		return UploadResult{}, err
	}
	if have == want {
		err := c.withSFTP(ctx, func(sc *SFTP) error {
			if err := sc.Chmod(remotePath, mode); err != nil {
				return c.ctxErr(ctx, "upload: chmod "+remotePath, err)
			}
			return nil
		})
		if err != nil {
			return UploadResult{}, err
		}
		c.logger.Debug("upload skipped, same content", "path", remotePath, "sha256", want)
		return UploadResult{SHA256: want, Skipped: true}, nil
	}

	dir := path.Dir(remotePath)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(dir, "."+path.Base(remotePath)+".vtc-"+hex.EncodeToString(rnd[:])+".tmp")
	err = c.withSFTP(ctx, func(sc *SFTP) error {
		if err := sc.MkdirAll(dir); err != nil {
			return c.ctxErr(ctx, "upload: mkdir "+dir, err)
		}
		return c.writeTemp(ctx, sc, f, tmp, mode)
	})
	if err == nil {
		var got string
		if got, err = c.RemoteSHA256(ctx, tmp); err == nil && got != want {
			err = fmt.Errorf("ssh %s: upload: %s has SHA-256 %q after writing, want %s", c.addr, tmp, got, want)
		}
	}
	if err == nil {
		err = c.withSFTP(ctx, func(sc *SFTP) error {
			if err := sc.PosixRename(tmp, remotePath); err != nil {
				return c.ctxErr(ctx, "upload: rename into "+remotePath, err)
			}
			return nil
		})
	}
	if err != nil {
		return UploadResult{}, errors.Join(err, c.removeTemp(ctx, tmp))
	}
	c.logger.Debug("uploaded", "path", remotePath, "bytes", st.Size(), "sha256", want)
	return UploadResult{SHA256: want}, nil
}

func (c *Client) writeTemp(ctx context.Context, sc *SFTP, src *os.File, tmp string, mode os.FileMode) error {
	rf, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return c.ctxErr(ctx, "upload: create "+tmp, err)
	}
	if err := fill(rf, src, mode); err != nil {
		return c.ctxErr(ctx, "upload: write "+tmp, err)
	}
	return nil
}

// fill writes src into the remote file rf, gives it perm and closes it;
// the first error is returned.
func fill(rf *sftp.File, src *os.File, perm os.FileMode) error {
	// *os.File reveals its size, so the writes are pipelined.
	_, err := rf.ReadFromWithConcurrency(src, 0)
	if err == nil {
		err = rf.Chmod(perm)
	}
	if cerr := rf.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeTemp removes a failed upload's temporary file, also after ctx
// ended (with a short deadline of its own). Should removal fail, it
// truncates the file so no partial binary lingers at full size.
func (c *Client) removeTemp(ctx context.Context, tmp string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return c.withSFTP(ctx, func(sc *SFTP) error {
		err := sc.Remove(tmp)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if terr := sc.Truncate(tmp, 0); terr == nil {
			return nil
		}
		return fmt.Errorf("ssh %s: remove temporary %s: %w", c.addr, tmp, err)
	})
}

// RemoteSHA256 returns the hex SHA-256 of a remote file, or "" when there
// is no readable file. It asks sha256sum on the node, and reads the file
// back over SFTP when the node has no sha256sum.
func (c *Client) RemoteSHA256(ctx context.Context, p string) (string, error) {
	out, err := c.Output(ctx, append(slices.Clip(c.sha256Argv), p))
	var ee *RemoteExitError
	switch {
	case err == nil:
		if f := strings.Fields(string(out)); len(f) > 0 && len(f[0]) == 64 {
			if _, herr := hex.DecodeString(f[0]); herr == nil {
				return strings.ToLower(f[0]), nil
			}
		}
		// Unexpected output: fall through to reading the file.
	case errors.As(err, &ee) && ee.Status != 126 && ee.Status != 127:
		// sha256sum ran and could not read the file: treat as absent.
		return "", nil
	case !errors.As(err, &ee):
		return "", err
	}
	var sum string
	err = c.withSFTP(ctx, func(sc *SFTP) error {
		rf, err := sc.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return c.ctxErr(ctx, "read back "+p, err)
		}
		defer rf.Close()
		h := sha256.New()
		if _, err := rf.WriteTo(h); err != nil {
			return c.ctxErr(ctx, "read back "+p, err)
		}
		sum = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	return sum, err
}

// CopyTo copies a local file or directory tree to remote over SFTP: remote
// names the copy itself, not a directory to put it in. Files and
// directories keep their permission bits; symlinks are recreated as
// symlinks. Failures are collected per file and returned joined; the copy
// goes on with the other files unless ctx ends.
func (c *Client) CopyTo(ctx context.Context, local, remote string) error {
	st, err := os.Stat(local)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", c.addr, err)
	}
	sc, err := c.OpenSFTP(ctx)
	if err != nil {
		return err
	}
	defer sc.Close()
	if !st.IsDir() {
		return c.putFile(ctx, sc, local, remote, st.Mode().Perm())
	}
	// WalkDir does not descend into a root that is a symlink.
	if local, err = filepath.EvalSymlinks(local); err != nil {
		return fmt.Errorf("copy to %s: %w", c.addr, err)
	}
	var errs []error
	walkErr := filepath.WalkDir(local, func(lp string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("copy to %s: %w", c.addr, err))
			return nil
		}
		rel, err := filepath.Rel(local, lp)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		rp := path.Join(remote, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			errs = append(errs, fmt.Errorf("copy to %s: %w", c.addr, err))
			return nil
		}
		switch {
		case d.IsDir():
			err = sc.MkdirAll(rp)
			if err == nil {
				err = sc.Chmod(rp, info.Mode().Perm()|0o700)
			}
			if err != nil {
				errs = append(errs, c.ctxErr(ctx, "copy: mkdir "+rp, err))
				return fs.SkipDir
			}
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(lp)
			if err == nil {
				if rerr := sc.Remove(rp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
					err = rerr
				}
			}
			if err == nil {
				err = sc.Symlink(target, rp)
			}
			if err != nil {
				errs = append(errs, c.ctxErr(ctx, "copy: symlink "+rp, err))
			}
		case d.Type().IsRegular():
			if err := c.putFile(ctx, sc, lp, rp, info.Mode().Perm()); err != nil {
				errs = append(errs, err)
			}
		default:
			errs = append(errs, fmt.Errorf("copy to %s: %s: %s is not a regular file, directory or symlink", c.addr, lp, info.Mode().Type()))
		}
		return nil
	})
	if walkErr != nil {
		errs = append(errs, c.ctxErr(ctx, "copy "+local, walkErr))
	}
	// Directory modes were widened with 0o700 to write into them; put
	// back any that said otherwise.
	if ctx.Err() == nil {
		filepath.WalkDir(local, func(lp string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if info, err := d.Info(); err == nil && info.Mode().Perm()&0o700 != 0o700 {
				rel, _ := filepath.Rel(local, lp)
				rp := path.Join(remote, filepath.ToSlash(rel))
				if err := sc.Chmod(rp, info.Mode().Perm()); err != nil {
					errs = append(errs, c.ctxErr(ctx, "copy: chmod "+rp, err))
				}
			}
			return nil
		})
	}
	return errors.Join(errs...)
}

func (c *Client) putFile(ctx context.Context, sc *SFTP, local, remote string, perm os.FileMode) error {
	lf, err := os.Open(local)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", c.addr, err)
	}
	defer lf.Close()
	rf, err := sc.OpenFile(remote, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return c.ctxErr(ctx, "copy: create "+remote, err)
	}
	if err := fill(rf, lf, perm); err != nil {
		// A half-written file (possibly with holes) must not pass for a copy.
		sc.Remove(remote)
		return c.ctxErr(ctx, "copy "+local+" to "+remote, err)
	}
	return nil
}

// Bounds of what CopyFrom brings from a node, whose files may be as large
// as a test (or someone on the node) makes them.
const (
	MaxCopyFromFile  = 1 << 30 // a file above it is refused
	MaxCopyFromTotal = 4 << 30 // one CopyFrom stops copying past it
)

// SymlinkManifest is the file, at the top of a directory copied by
// CopyFrom, that lists the remote symlinks it did not recreate: a JSON
// object of path (relative to the copy, with "/") to link target.
const SymlinkManifest = "vtcluster-symlinks.json"

// CopyFrom copies a remote file or directory tree to local over SFTP:
// local names the copy itself. Everything is written through an os.Root at
// local (or at its parent, for a single file), so no remote name can place
// a file outside it; names such as ".." or with "/" are refused. Only
// regular files and directories are created: a remote symlink becomes an
// entry of SymlinkManifest, so that nothing that later reads the results
// (an archiver, a report server) follows a node's link into the
// controller's own files. Files above MaxCopyFromFile, and files past
// MaxCopyFromTotal, are refused. Failures are collected per file and
// returned joined.
func (c *Client) CopyFrom(ctx context.Context, remote, local string) error {
	sc, err := c.OpenSFTP(ctx)
	if err != nil {
		return err
	}
	defer sc.Close()
	return c.CopyFromSFTP(ctx, sc, remote, local)
}

// CopyFromSFTP is CopyFrom over an SFTP client the caller keeps open (one
// of this connection's), so that a process copying often (the job's SSH
// connection holder) does not start an sftp subsystem per copy. ctx is
// checked between files only: an SFTP request in flight cannot be
// withdrawn, so to cut a copy short the caller closes sc.
func (c *Client) CopyFromSFTP(ctx context.Context, sc *SFTP, remote, local string) error {
	st, err := sc.Stat(remote)
	if err != nil {
		return c.ctxErr(ctx, "copy from "+remote, err)
	}
	budget := &copyBudget{left: MaxCopyFromTotal}
	if !st.IsDir() {
		if !st.Mode().IsRegular() {
			return fmt.Errorf("ssh %s: copy from %s: not a regular file or directory", c.addr, remote)
		}
		if err := budget.take(c.addr, remote, st.Size()); err != nil {
			return err
		}
		root, err := c.localRoot(filepath.Dir(local), 0o755)
		if err != nil {
			return err
		}
		defer root.Close()
		return c.getFile(ctx, sc, remote, root, filepath.Base(local), st.Mode().Perm(), budget)
	}
	root, err := c.localRoot(local, st.Mode().Perm()|0o700)
	if err != nil {
		return err
	}
	defer root.Close()
	var errs []error
	links := map[string]string{}
	c.getDir(ctx, sc, remote, root, ".", &errs, links, budget)
	if len(links) > 0 {
		if err := writeSymlinkManifest(root, links); err != nil {
			errs = append(errs, fmt.Errorf("copy from %s: %s: %w", c.addr, remote, err))
		}
	}
	return errors.Join(errs...)
}

// localRoot makes the local directory dir (with perm) as needed and opens
// an os.Root there, through which a copy from the node is written.
func (c *Client) localRoot(dir string, perm os.FileMode) (*os.Root, error) {
	if err := os.MkdirAll(dir, perm); err != nil {
		return nil, fmt.Errorf("copy from %s: %w", c.addr, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("copy from %s: %w", c.addr, err)
	}
	return root, nil
}

// writeSymlinkManifest records the links CopyFrom did not recreate.
func writeSymlinkManifest(root *os.Root, links map[string]string) error {
	data, err := json.MarshalIndent(links, "", "  ")
	if err != nil {
		return err
	}
	f, err := root.OpenFile(SymlinkManifest, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyBudget is what one CopyFrom may still write.
type copyBudget struct{ left int64 }

// take reserves size bytes for remote, or says why it may not be copied.
func (b *copyBudget) take(addr, remote string, size int64) error {
	switch {
	case size > MaxCopyFromFile:
		return fmt.Errorf("ssh %s: copy from %s: %d bytes, above the %d a collected file may have", addr, remote, size, int64(MaxCopyFromFile))
	case size > b.left:
		return fmt.Errorf("ssh %s: copy from %s: %d bytes would pass the %d one copy may bring", addr, remote, size, int64(MaxCopyFromTotal))
	}
	b.left -= size
	return nil
}

func (c *Client) getDir(ctx context.Context, sc *SFTP, rdir string, root *os.Root, ldir string, errs *[]error, links map[string]string, budget *copyBudget) {
	ents, err := sc.ReadDir(rdir)
	if err != nil {
		*errs = append(*errs, c.ctxErr(ctx, "copy from "+rdir, err))
		return
	}
	for _, e := range ents {
		if ctx.Err() != nil {
			*errs = append(*errs, c.ctxErr(ctx, "copy from "+rdir, ctx.Err()))
			return
		}
		name := e.Name()
		rp := path.Join(rdir, name)
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			*errs = append(*errs, fmt.Errorf("ssh %s: copy from %s: refusing entry name %q", c.addr, rdir, name))
			continue
		}
		lp := filepath.Join(ldir, name)
		if lp == SymlinkManifest {
			*errs = append(*errs, fmt.Errorf("ssh %s: copy from %s: entry %q not copied: the name is reserved for the symlink manifest", c.addr, rdir, name))
			continue
		}
		switch m := e.Mode(); {
		case m.IsDir():
			if err := root.Mkdir(lp, m.Perm()|0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				*errs = append(*errs, fmt.Errorf("copy from %s: %s: %w", c.addr, rp, err))
				continue
			}
			c.getDir(ctx, sc, rp, root, lp, errs, links, budget)
		case m&fs.ModeSymlink != 0:
			target, err := sc.ReadLink(rp)
			if err != nil {
				*errs = append(*errs, fmt.Errorf("copy from %s: %s: %w", c.addr, rp, err))
				continue
			}
			links[filepath.ToSlash(lp)] = target
		case m.IsRegular():
			if err := budget.take(c.addr, rp, e.Size()); err != nil {
				*errs = append(*errs, err)
				continue
			}
			if err := c.getFile(ctx, sc, rp, root, lp, m.Perm(), budget); err != nil {
				*errs = append(*errs, err)
			}
		default:
			*errs = append(*errs, fmt.Errorf("ssh %s: copy from %s: %s is not a regular file, directory or symlink", c.addr, rp, m.Type()))
		}
	}
}

// getFile copies one regular file, which the caller has charged to budget
// at its listed size; a file that grew since is cut at that size plus what
// the budget has left, and refused.
func (c *Client) getFile(ctx context.Context, sc *SFTP, remote string, root *os.Root, name string, perm os.FileMode, budget *copyBudget) error {
	rf, st, err := c.openRegular(ctx, sc, remote)
	if err != nil {
		return err
	}
	defer rf.Close()
	// Whatever is left of the budget, and never past the per-file cap,
	// covers a file that grows while it is copied.
	limit := min(st.Size()+budget.left, MaxCopyFromFile)
	lf, err := c.createLocal(root, name, perm, remote)
	if err != nil {
		return err
	}
	// WriteTo keeps SFTP's concurrent reads; the writer enforces the limit.
	w := &cappedWriter{w: lf, left: limit}
	_, err = rf.WriteTo(w)
	budget.left -= max(0, limit-w.left-st.Size())
	if cerr := lf.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// OpenFile's mode only applies to new files, and the umask cut it.
		err = root.Chmod(name, perm)
	}
	if err != nil {
		root.Remove(name)
		return c.ctxErr(ctx, "copy from "+remote, err)
	}
	return nil
}

// openRegular opens the node's file remote, which must be a regular file:
// a link is checked by name, and a swapped-in FIFO or device would never
// end.
func (c *Client) openRegular(ctx context.Context, sc *SFTP, remote string) (*sftp.File, os.FileInfo, error) {
	rf, err := sc.Open(remote)
	if err != nil {
		return nil, nil, c.ctxErr(ctx, "copy from "+remote, err)
	}
	st, err := rf.Stat()
	if err != nil {
		rf.Close()
		return nil, nil, c.ctxErr(ctx, "copy from "+remote, err)
	}
	if !st.Mode().IsRegular() {
		rf.Close()
		return nil, nil, fmt.Errorf("ssh %s: copy from %s: not a regular file", c.addr, remote)
	}
	return rf, st, nil
}

// createLocal creates name in root anew for remote's content: whatever is
// there first goes, so a symlink already at name is replaced, not followed.
func (c *Client) createLocal(root *os.Root, name string, perm os.FileMode, remote string) (*os.File, error) {
	if rerr := root.Remove(name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		return nil, fmt.Errorf("copy from %s: %s: %w", c.addr, remote, rerr)
	}
	lf, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, fmt.Errorf("copy from %s: %s: %w", c.addr, remote, err)
	}
	return lf, nil
}

// cappedWriter fails a write that would pass left bytes.
type cappedWriter struct {
	w    io.Writer
	left int64
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		return 0, fmt.Errorf("file grew past its size limit while being copied")
	}
	n, err := c.w.Write(p)
	c.left -= int64(n)
	return n, err
}

// InstallAuthorizedKey adds pubKey (one authorized_keys line) to the login
// user's ~/.ssh/authorized_keys unless that key is already there, creating
// ~/.ssh (0700) and the file (0600) as needed, like ssh-copy-id. It works
// over SFTP, so no shell command is built from the key.
func (c *Client) InstallAuthorizedKey(ctx context.Context, pubKey []byte) error {
	key, comment, options, rest, err := ssh.ParseAuthorizedKey(pubKey)
	if err != nil {
		return fmt.Errorf("ssh %s: install key: %w", c.addr, err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return fmt.Errorf("ssh %s: install key: want exactly one key line", c.addr)
	}
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n")
	if len(options) > 0 {
		line = strings.Join(options, ",") + " " + line
	}
	if comment != "" {
		line += " " + comment
	}
	sc, err := c.OpenSFTP(ctx)
	if err != nil {
		return err
	}
	defer sc.Close()
	home, err := sc.Getwd() // sftp sessions start in the login user's home
	if err != nil {
		return c.ctxErr(ctx, "install key: home directory", err)
	}
	dir := path.Join(home, ".ssh")
	if _, err := sc.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := sc.Mkdir(dir); err != nil {
			return c.ctxErr(ctx, "install key: mkdir "+dir, err)
		}
		if err := sc.Chmod(dir, 0o700); err != nil {
			return c.ctxErr(ctx, "install key: chmod "+dir, err)
		}
	} else if err != nil {
		return c.ctxErr(ctx, "install key: "+dir, err)
	}
	akPath := path.Join(dir, "authorized_keys")
	var existing []byte
	created := false
	if rf, err := sc.Open(akPath); err == nil {
		existing, err = io.ReadAll(io.LimitReader(rf, 4<<20))
		rf.Close()
		if err != nil {
			return c.ctxErr(ctx, "install key: read "+akPath, err)
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		created = true
	} else {
		return c.ctxErr(ctx, "install key: open "+akPath, err)
	}
	for rest := existing; len(rest) > 0; {
		k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			break // no more parseable keys
		}
		if bytes.Equal(k.Marshal(), key.Marshal()) {
			return nil
		}
		rest = r
	}
	if len(existing) > 0 && existing[len(existing)-1] != '\n' {
		line = "\n" + line
	}
	wf, err := sc.OpenFile(akPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return c.ctxErr(ctx, "install key: open "+akPath, err)
	}
	_, err = wf.Write([]byte(line + "\n"))
	if cerr := wf.Close(); err == nil {
		err = cerr
	}
	if err == nil && created {
		err = sc.Chmod(akPath, 0o600)
	}
	if err != nil {
		return c.ctxErr(ctx, "install key: write "+akPath, err)
	}
	c.logger.Info("installed authorized key", "key", keyDesc(key), "path", akPath)
	return nil
}

// ReadSmallFile returns the content of the node's regular file p, which
// must hold at most max bytes, over SFTP: no shell and no command process
// on the node, which a loaded node starts slowly (an agent's pid file, say).
func (c *Client) ReadSmallFile(ctx context.Context, p string, max int64) ([]byte, error) {
	var out []byte
	err := c.withSFTP(ctx, func(sc *SFTP) error {
		var err error
		out, err = ReadSmallFileSFTP(sc, p, max)
		return err
	})
	if err != nil {
		return nil, c.ctxErr(ctx, "read "+p, err)
	}
	return out, nil
}

// ReadSmallFileSFTP is ReadSmallFile on an open SFTP client.
func ReadSmallFileSFTP(sc *SFTP, p string, max int64) ([]byte, error) {
	f, err := sc.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("%s is larger than %d bytes", p, max)
	}
	return data, err
}

// CopyTailSFTP copies the bytes of the node's regular file remote from
// offset from to its end into the local file local, created anew (a
// symlink there is replaced, not followed), at most MaxCopyFromFile bytes.
// A file now shorter than from (rotated, truncated) is copied whole. It is
// how a test collects only what a long-lived log gained while it ran.
func (c *Client) CopyTailSFTP(ctx context.Context, sc *SFTP, remote, local string, from int64) error {
	rf, st, err := c.openRegular(ctx, sc, remote)
	if err != nil {
		return err
	}
	defer rf.Close()
	if from < 0 || from > st.Size() {
		from = 0
	}
	if st.Size()-from > MaxCopyFromFile {
		from = st.Size() - MaxCopyFromFile
	}
	if _, err := rf.Seek(from, io.SeekStart); err != nil {
		return c.ctxErr(ctx, "copy from "+remote, err)
	}
	root, err := c.localRoot(filepath.Dir(local), 0o755)
	if err != nil {
		return err
	}
	defer root.Close()
	name := filepath.Base(local)
	lf, err := c.createLocal(root, name, 0o644, remote)
	if err != nil {
		return err
	}
	// The file may grow while it is copied: what was there is enough.
	_, err = io.Copy(lf, io.LimitReader(rf, MaxCopyFromFile))
	if cerr := lf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		root.Remove(name)
		return c.ctxErr(ctx, "copy from "+remote, err)
	}
	return nil
}

// Size is the size of the node's file remote, over SFTP.
func (c *Client) Size(ctx context.Context, remote string) (int64, error) {
	var size int64
	err := c.withSFTP(ctx, func(sc *SFTP) error {
		st, err := sc.Stat(remote)
		if err == nil {
			size = st.Size()
		}
		return err
	})
	if err != nil {
		return 0, c.ctxErr(ctx, "stat "+remote, err)
	}
	return size, nil
}

// CopyTail is CopyTailSFTP on a fresh SFTP client.
func (c *Client) CopyTail(ctx context.Context, remote, local string, from int64) error {
	return c.withSFTP(ctx, func(sc *SFTP) error { return c.CopyTailSFTP(ctx, sc, remote, local, from) })
}
