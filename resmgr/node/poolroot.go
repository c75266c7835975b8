package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// File operations inside a pool. A pool's directory may be writable by
// users other than root (an NFS export with root_squash must be, and the
// pool then says so with allow-other-writers), so every operation starts
// from a descriptor of the pool's directory and walks to its file one
// component at a time with O_NOFOLLOW: a symlink anywhere on the way, or
// as the file itself, is refused, never followed, and nothing outside the
// pool can be reached. Whose file it is is then checked on the opened
// descriptor (see trusted and backing.Made), not on a path.

// checkPoolDir refuses a pool directory an unprivileged user could turn
// against the agent: each directory above it (as given and as resolved)
// must belong to root and be writable only by root, unless it is sticky
// (/tmp: others cannot rename what root made there); the directory itself
// must belong to root and be writable only by root, unless the pool
// allows other writers.
func checkPoolDir(path string, allowOthers bool) (real string, err error) {
	if err := checkTrustedPath(path, allowOthers); err != nil {
		return "", err
	}
	real, err = filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	if real != path {
		if err := checkTrustedPath(real, allowOthers); err != nil {
			return "", err
		}
	}
	return real, nil
}

func checkTrustedPath(path string, allowOthers bool) error {
	euid := uint32(os.Geteuid())
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	cur := "/"
	for i, name := range parts {
		cur = filepath.Join(cur, name)
		var st unix.Stat_t
		if err := unix.Lstat(cur, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: cur, Err: err}
		}
		last := i == len(parts)-1
		if st.Uid != 0 && st.Uid != euid && !(last && allowOthers && st.Mode&unix.S_IFMT == unix.S_IFDIR) {
			return refusedf("pool directory %s: %s belongs to uid %d, who could point the agent's file operations elsewhere; a pool must lie in directories of root (or set allow-other-writers on the pool for a shared directory such as an NFS export)", path, cur, st.Uid)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			continue // its target is checked as the resolved path
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("pool directory %s: %s is not a directory", path, cur)
		}
		// Sticky protects what root made in a directory above the pool;
		// in the pool itself others could still plant names.
		if st.Mode&0o022 != 0 && (last || st.Mode&unix.S_ISVTX == 0) && !(last && allowOthers) {
			what := "a directory above it"
			if last {
				what = "it"
			}
			return refusedf("pool directory %s: %s (%s) is writable by others (mode %04o): another user could plant links in it; make it writable only by root, or set allow-other-writers on the pool if it must be shared (an NFS export with root_squash), and the agent then still follows no link in it", path, what, cur, st.Mode&0o7777)
		}
	}
	return nil
}

// openRoot opens c's directory, where every operation on its files
// starts; the directory must still be the one attached (RootID).
func openRoot(c *poolConn) (*os.File, error) {
	dir := c.Real
	if dir == "" {
		dir = c.Root
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open pool directory", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir)
	if c.RootID != nil {
		id, err := fdID(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		if id != *c.RootID {
			f.Close()
			return nil, refusedf("pool directory %s was replaced since the pool was attached", dir)
		}
	}
	return f, nil
}

// walk opens the directory that holds rel under root, component by
// component and never through a symlink; mkdir creates missing ones.
// It returns that directory and rel's last component.
func walk(root *os.File, rel string, mkdir bool) (*os.File, string, error) {
	parts := strings.Split(rel, "/")
	dir := root
	for _, name := range parts[:len(parts)-1] {
		if mkdir {
			if err := unix.Mkdirat(int(dir.Fd()), name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				closeUnlessRoot(dir, root)
				return nil, "", &os.PathError{Op: "mkdir", Path: name, Err: err}
			}
		}
		fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		closeUnlessRoot(dir, root)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, "", refusedf("%s: %s is a symlink or not a directory, and the agent follows no link in a pool", rel, name)
		}
		if err != nil {
			return nil, "", &os.PathError{Op: "open", Path: rel, Err: err}
		}
		dir = os.NewFile(uintptr(fd), name)
	}
	if dir == root {
		// The caller closes what walk returns; root stays the caller's.
		fd, err := unix.Dup(int(root.Fd()))
		if err != nil {
			return nil, "", err
		}
		unix.CloseOnExec(fd)
		dir = os.NewFile(uintptr(fd), root.Name())
	}
	return dir, parts[len(parts)-1], nil
}

func closeUnlessRoot(dir, root *os.File) {
	if dir != root {
		dir.Close()
	}
}

// openIn opens name in dir without following a symlink.
func openIn(dir *os.File, rel, name string, flags int, mode uint32) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if errors.Is(err, unix.ELOOP) {
		return nil, refusedf("%s is a symlink, and the agent follows no link in a pool", rel)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), rel), nil
}

// lstatIn is fstatat(dir, name) without following a symlink.
func lstatIn(dir *os.File, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

func idOf(st *unix.Stat_t) fileID { return fileID{Dev: st.Dev, Ino: st.Ino} }

func fdID(f *os.File) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fileID{}, err
	}
	return idOf(&st), nil
}

// trusted checks an opened volume file before the agent changes or
// reads it: a regular file, and the very file this agent made for the
// backing when it made one; a file made elsewhere (another node of a
// shared pool allocated it) must belong to the agent's user and have one
// link, so it cannot be a hard link to someone else's file.
func trusted(f *os.File, b *backing) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return st, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return st, refusedf("%s is not a regular file", b.Path)
	}
	if b.Made != nil {
		if idOf(&st) != *b.Made {
			return st, refusedf("%s is not the file this agent made for resource %s (it was replaced)", b.Path, b.Resource)
		}
		return st, nil
	}
	if st.Uid != uint32(os.Geteuid()) || st.Nlink != 1 {
		return st, refusedf("%s was not made by this agent and belongs to uid %d with %d links", b.Path, st.Uid, st.Nlink)
	}
	return st, nil
}

// procPath names an open file for a command this agent starts: the
// command opens the very file, whatever its path has become since.
func procPath(f *os.File) string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd())
}
