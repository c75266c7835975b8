// Package atomicfile replaces a file so that a reader, or a process that
// crashes half-way, sees the old content or the new, never a mixture. It is
// the one way this module writes a file that others read while it changes
// (the cluster state, the agent's process record and pid file, the lab
// registry, the resource manager's backings).
//
// google/renameio was considered: it writes the temporary file in $TMPDIR
// when that is on the same file system (a shared, world-writable
// directory, where root must not create files for a private one) and does
// not sync the directory, so a power loss may lose the rename. What is
// needed here is twenty lines, so they live here.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Option changes how WriteFile writes.
type Option func(*config)

type config struct{ durable bool }

// NotDurable skips the two fsyncs. The replacement stays atomic for every
// reader and against a crash of the writing process, but a power loss may
// bring the old content back. Use it for records that are worthless after
// a reboot anyway (a pid file, the processes an agent started), where an
// fsync on every update would cost each call milliseconds.
func NotDurable() Option { return func(c *config) { c.durable = false } }

// WriteFile replaces path with data, created with perm (not subject to the
// umask). The temporary file is made beside path (O_EXCL, a random name,
// mode 0600 until it is complete), so it never leaves path's directory. By
// default the file and then its directory are synced before WriteFile
// returns, so the new content survives a power loss.
func WriteFile(path string, data []byte, perm fs.FileMode, opts ...Option) (err error) {
	c := config{durable: true}
	for _, o := range opts {
		o(&c)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if c.durable {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if c.durable {
		if serr := syncDir(dir); serr != nil {
			// The new content is in place; only its durability is in
			// doubt, so the caller learns of it without a rollback.
			return fmt.Errorf("sync %s: %w", dir, serr)
		}
	}
	return nil
}

// tempPrefix names WriteFile's temporary files for path: hidden, beside it.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// TempGlob is the pattern of the temporary files WriteFile makes for path.
// A writer that was killed between create and rename leaves one behind;
// whoever holds the file's lock may remove what matches.
func TempGlob(path string) string {
	return filepath.Join(filepath.Dir(path), tempPrefix(path)+"*")
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
