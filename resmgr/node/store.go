package node

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// poolConn is one pool as this node has it open. Once stored it is never
// changed in place: operations work on copies and store new values.
type poolConn struct {
	UUID string `json:"uuid"`
	Type string `json:"type"`
	// Root is where volumes go, as the pool was configured (and as it is
	// shown): the directory of a filesystem pool, the mount point of an
	// NFS pool. Real is Root with its symlinks resolved at attach, where
	// every operation starts, and RootID is that directory's identity
	// then: an operation on a directory that is no longer it is refused.
	Root   string  `json:"root,omitempty"`
	Real   string  `json:"real,omitempty"`
	RootID *fileID `json:"root_id,omitempty"`
	// AllowOtherWriters: the pool accepted a directory others may write.
	AllowOtherWriters bool `json:"allow_other_writers,omitempty"`
	// Overcommit: volumes may be allocated beyond the free space.
	Overcommit bool `json:"overcommit,omitempty"`
	// Made says whether we created Root, so closing removes it only then
	// (and only when empty).
	Made bool `json:"made,omitempty"`
	// NFS.
	Server       string `json:"server,omitempty"`
	Export       string `json:"export,omitempty"`
	MountOptions string `json:"mount_options,omitempty"`
	Mounted      bool   `json:"mounted,omitempty"`
	// Bridge is a linux_bridge pool's bridge on this node.
	Bridge string `json:"bridge,omitempty"`
}

// backing is one resource as this node sees it. Like poolConn, a stored
// backing is replaced, never changed in place.
type backing struct {
	ID       string `json:"id"`
	Resource string `json:"resource"`
	Type     string `json:"type"`
	Pool     string `json:"pool"`
	// Path is a volume's file as shown (uri); Rel is the same file
	// relative to the pool's root, which is how it is reached.
	Path string `json:"path,omitempty"`
	Rel  string `json:"rel,omitempty"`
	// Made is the identity of the file this agent created for the
	// backing (allocate, clone); release deletes that file and nothing
	// else.
	Made *fileID `json:"made,omitempty"`
	// Ifname is a port's tap device, Ifindex the index of the tap this
	// agent made under that name (0: none); release deletes that tap and
	// nothing else.
	Ifname  string `json:"ifname,omitempty"`
	Ifindex int    `json:"ifindex,omitempty"`
}

// fileID is a file's identity: device and inode.
type fileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// state is what the service persists.
type state struct {
	Pools    map[string]*poolConn `json:"pools"`
	Backings map[string]*backing  `json:"backings"`
}

// loadState reads the record; a missing file is an empty state.
func loadState(file string) (state, error) {
	st := state{Pools: map[string]*poolConn{}, Backings: map[string]*backing{}}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, err
	}
	if st.Pools == nil {
		st.Pools = map[string]*poolConn{}
	}
	if st.Backings == nil {
		st.Backings = map[string]*backing{}
	}
	// A record of an agent before file identities: the path relative to
	// the pool is derived; with no Made, release keeps such files (it
	// cannot tell whose they are).
	for _, b := range st.Backings {
		if c := st.Pools[b.Pool]; b.Rel == "" && b.Path != "" && c != nil {
			b.Rel = strings.TrimPrefix(b.Path, c.Root+"/")
		}
	}
	return st, nil
}

// encode is the record's bytes.
func (st *state) encode() ([]byte, error) {
	data, err := json.MarshalIndent(st, "", "  ")
	return append(data, '\n'), err
}

// writeState replaces file with data atomically (temporary file, fsync,
// rename): the one place the record is written.
func writeState(file string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp := file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}
