package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// filesystem: a directory of the node (shared storage when every node
// mounts the same one).
func init() {
	registerPoolKind(PoolFilesystem, poolKind{
		holds: TypeVolume,
		open: func(ctx context.Context, s *Service, c *poolConn, spec PoolSpec) error {
			root, err := s.poolDir(spec.Path, "root_dir")
			if err != nil {
				return err
			}
			c.Root = root
			if c.Made, err = mkdirNew(root); err != nil {
				return err
			}
			if err := attachDir(c); err != nil {
				if c.Made {
					os.Remove(root)
				}
				return err
			}
			return nil
		},
		close: func(ctx context.Context, s *Service, c *poolConn) error {
			removeRoot(s, c)
			return nil
		},
		reply: func(c *poolConn) any {
			return xmlrpc.Struct{{Key: "spec", Value: xmlrpc.Struct{{Key: "path", Value: c.Root}}}}
		},
		capacity: dirCapacity,
	})
}

// attachDir checks c's directory (checkPoolDir) and records where it
// resolves to and what it is, for every later operation.
func attachDir(c *poolConn) error {
	real, err := checkPoolDir(c.Root, c.AllowOtherWriters)
	if err != nil {
		return err
	}
	c.Real = real
	f, err := openRoot(c)
	if err != nil {
		return err
	}
	defer f.Close()
	id, err := fdID(f)
	if err != nil {
		return err
	}
	c.RootID = &id
	return nil
}

// poolDir resolves a pool path as upstream does: "" is <data>/<def>, a
// relative path is under the data dir, an absolute one is itself.
func (s *Service) poolDir(p, def string) (string, error) {
	switch {
	case p == "":
		return filepath.Join(s.dataDir, def), nil
	case filepath.IsAbs(p):
		return p, CheckAbsPath(p)
	default:
		if err := CheckFilename(p); err != nil {
			return "", err
		}
		return filepath.Join(s.dataDir, p), nil
	}
}

// mkdirNew creates dir (and parents) and reports whether dir itself was
// created by us. A symlink at dir is kept as it is (checkPoolDir judges
// it).
func mkdirNew(dir string) (bool, error) {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return false, fmt.Errorf("%s exists and is not a directory", dir)
		}
		return false, nil
	}
	// What is created must be created under directories only root can
	// change, or it could be made through someone else's link.
	anc := filepath.Dir(dir)
	for {
		if _, err := os.Lstat(anc); err == nil || anc == "/" {
			break
		}
		anc = filepath.Dir(anc)
	}
	if _, err := checkPoolDir(anc, false); err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return false, err
	}
	if err := unix.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return false, nil
		}
		return false, &os.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	return true, nil
}

// removeRoot removes the root if we made it and it is empty (never
// recursively: it may be, or hold, a share).
func removeRoot(s *Service, c *poolConn) {
	if c.Made && c.Root != "" {
		if err := os.Remove(c.Root); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Info("pool root kept", "root", c.Root, "err", err)
		}
	}
}

// dirCapacity is statfs of the pool's directory, through its descriptor.
func dirCapacity(c *poolConn) (Capacity, error) {
	f, err := openRoot(c)
	if err != nil {
		return Capacity{}, err
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return Capacity{}, &os.PathError{Op: "statfs", Path: c.Root, Err: err}
	}
	return Capacity{Size: int64(st.Blocks) * st.Bsize, Free: int64(st.Bavail) * st.Bsize}, nil
}
