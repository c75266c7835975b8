package cluster

import (
	"bytes"
	"context"
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
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/cluster/sshx"
)

// A copy (vtcluster cp) runs between two file systems: this machine's, or a
// node's over SFTP. Node to node goes through the controller, streamed,
// without a temporary copy. Every file is hashed as it is read and checked
// against the SHA-256 of what was written; runs of zeros are not written
// (and holes of a local source not even read), so a sparse file stays
// sparse and a 1 GiB one with little data copies in seconds.

// CopyFS is one side of a copy. Paths use the side's own syntax: local
// paths as given, node paths slash-separated, relative ones from the login
// user's home.
type CopyFS struct {
	// Name is "" for this machine, else the node name, for messages.
	Name string
	ssh  *sshx.Client
	sc   *sshx.SFTP // nil for local
	// helper is the vtcluster binary deployed on the node, asked where a
	// file's data lies (see remoteExtents); "" when it is not there.
	helper string
	// uid is the user this side writes as: only directories it (or root)
	// owns are written into (see enterDir).
	uid uint32
}

// LocalFS is this machine's file system.
func LocalFS() *CopyFS { return &CopyFS{uid: uint32(os.Geteuid())} }

// OpenCopyFS opens an SFTP session on the node for copies. Close it.
func (nc *NodeConn) OpenCopyFS(ctx context.Context) (*CopyFS, error) {
	c, err := nc.SSH(ctx)
	if err != nil {
		return nil, err
	}
	sc, err := c.OpenSFTP(ctx)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", nc.node.Name, err)
	}
	f := &CopyFS{Name: nc.node.Name, ssh: c, sc: sc}
	// SFTP does not say who we are; the login user owns its home.
	home, err := sc.Stat(".")
	if err != nil {
		sc.Close()
		return nil, fmt.Errorf("node %q: sftp: stat of the login home: %w", nc.node.Name, err)
	}
	f.uid, _ = fileOwner(home)
	bin := path.Join(nc.node.AgentDir(), agentBinaryName)
	if st, err := sc.Stat(bin); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o100 != 0 {
		f.helper = bin
	}
	return f, nil
}

// Close ends a node's SFTP session; closing LocalFS does nothing.
func (f *CopyFS) Close() {
	if f.sc != nil {
		f.sc.Close()
	}
}

// Label is how a path on this side is written on the command line.
func (f *CopyFS) Label(p string) string {
	if f.sc == nil {
		return p
	}
	return f.Name + ":" + p
}

// Join joins path elements in the side's syntax.
func (f *CopyFS) Join(elem ...string) string {
	if f.sc == nil {
		return filepath.Join(elem...)
	}
	return path.Join(elem...)
}

// Base is the last element of p in the side's syntax.
func (f *CopyFS) Base(p string) string {
	if f.sc == nil {
		return filepath.Base(p)
	}
	return path.Base(p)
}

// Stat follows symlinks; an absent file is fs.ErrNotExist on both sides.
func (f *CopyFS) Stat(p string) (fs.FileInfo, error) {
	if f.sc == nil {
		return os.Stat(p)
	}
	return f.sc.Stat(p)
}

func (f *CopyFS) lstat(p string) (fs.FileInfo, error) {
	if f.sc == nil {
		return os.Lstat(p)
	}
	return f.sc.Lstat(p)
}

func (f *CopyFS) readDir(p string) ([]fs.FileInfo, error) {
	if f.sc == nil {
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		out := make([]fs.FileInfo, 0, len(ents))
		for _, e := range ents {
			info, err := e.Info()
			if err != nil {
				return nil, err
			}
			out = append(out, info)
		}
		return out, nil
	}
	return f.sc.ReadDir(p)
}

func (f *CopyFS) readLink(p string) (string, error) {
	if f.sc == nil {
		return os.Readlink(p)
	}
	return f.sc.ReadLink(p)
}

// fileOwner is the uid owning a file of either side.
func fileOwner(st fs.FileInfo) (uint32, bool) {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Uid, true
	}
	return sshx.Owner(st)
}

// enterDir makes p a directory this copy may write into, or says why it
// is not one: p is created (0700 until the copy ends) when absent, and an
// existing p must be a real directory (a symlink there is refused, never
// followed), owned by this side's user or root and writable by no one
// else. Then no other user can swap p or anything in it for a link while
// the copy writes there: the check holds for the whole copy, over SFTP as
// locally, without an openat the SFTP protocol does not have.
func (f *CopyFS) enterDir(p string) error {
	var err error
	if f.sc == nil {
		err = os.Mkdir(p, 0o700)
	} else {
		err = f.sc.Mkdir(p)
	}
	st, serr := f.lstat(p)
	switch {
	case serr != nil && err != nil:
		return err
	case serr != nil:
		return serr
	case st.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("is a symlink where a directory goes: refusing to follow it (remove it, or copy elsewhere)")
	case !st.IsDir():
		return fmt.Errorf("exists and is not a directory")
	}
	if uid, ok := fileOwner(st); !ok || uid != f.uid && uid != 0 {
		return fmt.Errorf("directory is owned by uid %d, not by the copying user (uid %d): refusing to write into it (remove it, or copy elsewhere)", uid, f.uid)
	}
	if err == nil && f.sc != nil {
		// SFTP's mkdir takes the server's umask, which may leave it
		// open: ours, so closed now.
		return f.sc.Chmod(p, 0o700)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("directory is writable by other users (mode %04o): refusing to write into it (chmod go-w it, or copy elsewhere)", uint32(st.Mode().Perm()))
	}
	if perm := st.Mode().Perm(); perm&0o700 != 0o700 {
		// Ours, so no one can have swapped it since the look above.
		if f.sc == nil {
			return os.Chmod(p, perm|0o700)
		}
		return f.sc.Chmod(p, perm|0o700)
	}
	return nil
}

// chmodDir puts a copied directory's own mode on at the end; p is
// looked at again first, so a chmod never reaches through a link.
func (f *CopyFS) chmodDir(p string, perm fs.FileMode) error {
	st, err := f.lstat(p)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("no longer a directory: mode not set")
	}
	if f.sc == nil {
		return os.Chmod(p, perm)
	}
	return f.sc.Chmod(p, perm)
}

func (f *CopyFS) symlink(target, p string) error {
	if st, err := f.lstat(p); err == nil && !st.IsDir() {
		if err := f.remove(p); err != nil {
			return err
		}
	}
	if f.sc == nil {
		return os.Symlink(target, p)
	}
	return f.sc.Symlink(target, p)
}

func (f *CopyFS) remove(p string) error {
	if f.sc == nil {
		return os.Remove(p)
	}
	return f.sc.Remove(p)
}

// copySource is an open file to copy from.
type copySource interface {
	io.ReaderAt
	io.Closer
}

// copyDest is an open file to copy into.
type copyDest interface {
	io.WriterAt
	io.Closer
	Truncate(size int64) error
	// Chmod sets the mode of the open file, never of a link's target.
	Chmod(mode fs.FileMode) error
}

func (f *CopyFS) open(p string) (copySource, error) {
	if f.sc == nil {
		return os.Open(p)
	}
	return f.sc.Open(p)
}

// create makes p a new file: whatever is at p (a file, a symlink) is
// removed first and the file is created exclusively, which never follows
// a symlink, so a link planted at p is replaced, not written through.
func (f *CopyFS) create(p string, perm fs.FileMode) (copyDest, error) {
	if st, err := f.lstat(p); err == nil && !st.IsDir() {
		if err := f.remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if f.sc == nil {
		return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	}
	return f.sc.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
}

// sha256 hashes a file as it now is on this side: on a node, with its
// deployed vtcluster when there is one (Go's SHA-256 uses the CPU's SHA
// instructions, several times faster than coreutils' sha256sum), else
// with sha256sum.
func (f *CopyFS) sha256(ctx context.Context, p string) (string, error) {
	if f.sc == nil {
		return FileSHA256(p)
	}
	if f.helper != "" {
		var out cappedBuffer
		out.max = 256
		err := f.ssh.Run(ctx, []string{f.helper, "cp", "--sha256", "--", p}, sshx.RunOptions{Stdout: &out})
		if sum := strings.TrimSpace(out.String()); err == nil && !out.over && len(sum) == 64 {
			if _, herr := hex.DecodeString(sum); herr == nil {
				return sum, nil
			}
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		// An older deployed binary: sha256sum says the same.
	}
	return f.ssh.RemoteSHA256(ctx, p)
}

// FileSHA256 is the hex SHA-256 of a local regular file: what "vtcluster
// cp" asks a node's deployed binary to check a copy it wrote there.
func FileSHA256(p string) (string, error) {
	fh, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	if st, err := fh.Stat(); err != nil || !st.Mode().IsRegular() {
		if err == nil {
			err = fmt.Errorf("%s is not a regular file", p)
		}
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// maxExtents bounds the extent list of one file; a file more fragmented
// than this is read whole, its zero runs still not written.
const maxExtents = 1 << 14

// FileExtents lists the parts of a local file that may hold data, from
// SEEK_DATA/SEEK_HOLE: what "vtcluster cp" asks a node's deployed binary
// about a file there, so that its holes do not cross the network.
func FileExtents(p string) (size int64, extents [][2]int64, err error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	if !st.Mode().IsRegular() {
		return 0, nil, fmt.Errorf("%s is not a regular file", p)
	}
	if extents = fileExtents(f, st.Size()); extents == nil {
		extents = [][2]int64{} // all holes, said as such
	}
	return st.Size(), extents, nil
}

// extentsMinSize is the smallest file whose extents are asked for: below
// it, one more SSH command costs more than reading any holes.
const extentsMinSize = 1 << 20

// remoteExtents asks the node's vtcluster where p's data lies; nil when it
// cannot tell (no deployed binary, an older one, an odd answer), and then
// the whole file is read.
func (f *CopyFS) remoteExtents(ctx context.Context, p string, size int64) [][2]int64 {
	if f.helper == "" || size < extentsMinSize {
		return nil
	}
	var out cappedBuffer
	out.max = maxExtents*48 + 256
	if err := f.ssh.Run(ctx, []string{f.helper, "cp", "--extents", "--", p}, sshx.RunOptions{Stdout: &out}); err != nil || out.over {
		return nil
	}
	var ans struct {
		Size    int64      `json:"size"`
		Extents [][2]int64 `json:"extents"`
	}
	if err := json.Unmarshal(out.Bytes(), &ans); err != nil || ans.Size != size {
		return nil // not the file we are about to read
	}
	last := int64(0)
	for _, e := range ans.Extents {
		if e[0] < last || e[1] < e[0] || e[1] > size {
			return nil
		}
		last = e[1]
	}
	if ans.Extents == nil {
		ans.Extents = [][2]int64{}
	}
	return ans.Extents
}

// cappedBuffer keeps at most max bytes and remembers that there was more.
type cappedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		b.over = true
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// dataExtents lists the parts of src that may hold data: a local file
// tells through SEEK_DATA/SEEK_HOLE, a node's file through remote (nil when
// unknown); otherwise the whole file is one extent, and zero runs are
// found as it is read.
func dataExtents(src copySource, size int64, remote [][2]int64) [][2]int64 {
	if remote != nil {
		return remote
	}
	f, ok := src.(*os.File)
	if !ok || size == 0 {
		return [][2]int64{{0, size}}
	}
	return fileExtents(f, size)
}

func fileExtents(f *os.File, size int64) [][2]int64 {
	whole := [][2]int64{{0, size}}
	if size == 0 {
		return nil
	}
	fd := int(f.Fd())
	var out [][2]int64
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole up to the end
		}
		if err != nil {
			return whole // no hole support here
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return whole
		}
		end = min(end, size)
		if len(out) == maxExtents {
			return whole
		}
		out = append(out, [2]int64{start, end})
		off = end
	}
	return out
}

// CopyItem is one file, directory or symlink copied.
type CopyItem struct {
	Src, Dst string
	Kind     string      // "file", "dir" or "symlink"
	Mode     fs.FileMode // permission bits; zero for a symlink
	Size     int64
	SHA256   string // files only
	// Read and Written count the bytes that crossed each side: holes of
	// a file are not read when its side can tell where they are, zero
	// runs are never written.
	Read, Written int64
	// Via is how a file crossed to or from a node: "stream" (the node's
	// vtcluster, see copy_stream.go) or "sftp"; "" between local paths.
	Via string
}

// CopyOptions tune CopyTree.
type CopyOptions struct {
	// Recursive allows directories, as cp -r.
	Recursive bool
	// Progress, if set, is told the bytes done (holes included) after
	// each block, and when a file starts, its name and size.
	Progress CopyProgress
	// MaxSize, when above zero, refuses a file whose apparent size is
	// larger: a node's 16 TiB sparse file costs hours of hashing zeros.
	MaxSize int64
}

// DefaultCopyMaxSize is the largest file "vtcluster cp" copies unless told
// otherwise (--max-size): room for disk images, not for a runaway file.
const DefaultCopyMaxSize = 64 << 30

// CopyProgress hears about a copy's progress; calls come from one goroutine.
type CopyProgress interface {
	File(name string, size int64)
	Bytes(n int64)
}

// copyBlock is the unit of reading, and zeroBlock that of skipping zeros:
// a run of zeros shorter than zeroBlock is written like data.
const (
	copyBlock = 4 << 20
	zeroBlock = 64 << 10
)

// zeros is made on first use: a 4 MiB buffer made at package
// initialisation is live heap in every process that links this package,
// the agent included, and the garbage collector lets the heap grow in
// proportion to what is live (the agent's heap goal was 8 MB for 1 MB of
// its own).
var zeros = sync.OnceValue(func() []byte { return make([]byte, copyBlock) })

// CopyTree copies src on one side to dst on the other: dst names the copy
// itself (the caller decides whether that is inside an existing directory,
// as cp does). Modes are kept; symlinks inside a tree are recreated as
// symlinks, a symlink given as src is followed. Failures are per item,
// joined; the copy goes on with the other items unless ctx ends.
func CopyTree(ctx context.Context, from *CopyFS, src string, to *CopyFS, dst string, opts CopyOptions) ([]CopyItem, error) {
	st, err := from.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from.Label(src), err)
	}
	c := &copier{ctx: ctx, from: from, to: to, opts: opts}
	if st.IsDir() && !opts.Recursive {
		return nil, fmt.Errorf("%s is a directory (copy it with -r)", from.Label(src))
	}
	c.item(src, dst, st)
	// Directories were made writable to fill them; their own modes go
	// on last, deepest first.
	for i := len(c.dirModes) - 1; i >= 0 && ctx.Err() == nil; i-- {
		d := c.dirModes[i]
		if err := to.chmodDir(d.path, d.mode); err != nil {
			c.errs = append(c.errs, fmt.Errorf("%s: chmod: %w", to.Label(d.path), err))
		}
	}
	if ctx.Err() != nil {
		c.errs = append(c.errs, ctx.Err())
	}
	return c.items, errors.Join(c.errs...)
}

type copier struct {
	ctx      context.Context
	from, to *CopyFS
	opts     CopyOptions
	items    []CopyItem
	errs     []error
	dirModes []struct {
		path string
		mode fs.FileMode
	}
}

func (c *copier) item(src, dst string, st fs.FileInfo) {
	if c.ctx.Err() != nil {
		return
	}
	fail := func(err error) {
		c.errs = append(c.errs, fmt.Errorf("%s -> %s: %w", c.from.Label(src), c.to.Label(dst), err))
	}
	perm := st.Mode().Perm()
	switch m := st.Mode(); {
	case m.IsDir():
		if err := c.to.enterDir(dst); err != nil {
			fail(err)
			return
		}
		// A directory others may write into is one where they plant
		// links for the next copy: its group and other write bits stay
		// behind.
		perm &^= 0o022
		c.dirModes = append(c.dirModes, struct {
			path string
			mode fs.FileMode
		}{dst, perm})
		c.items = append(c.items, CopyItem{Src: c.from.Label(src), Dst: c.to.Label(dst), Kind: "dir", Mode: perm})
		ents, err := c.from.readDir(src)
		if err != nil {
			fail(err)
			return
		}
		for _, e := range ents {
			name := e.Name()
			// Names come from the other side: none may climb out.
			if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
				fail(fmt.Errorf("refusing entry name %q", name))
				continue
			}
			c.item(c.from.Join(src, name), c.to.Join(dst, name), e)
		}
	case m&fs.ModeSymlink != 0:
		target, err := c.from.readLink(src)
		if err == nil {
			err = c.to.symlink(target, dst)
		}
		if err != nil {
			fail(err)
			return
		}
		c.items = append(c.items, CopyItem{Src: c.from.Label(src), Dst: c.to.Label(dst), Kind: "symlink"})
	case m.IsRegular():
		it := CopyItem{Src: c.from.Label(src), Dst: c.to.Label(dst), Kind: "file", Mode: perm, Size: st.Size()}
		if c.opts.MaxSize > 0 && it.Size > c.opts.MaxSize {
			fail(tooLarge(it.Size, c.opts.MaxSize))
			return
		}
		if err := c.file(src, dst, &it); err != nil {
			fail(err)
			return
		}
		c.items = append(c.items, it)
	default:
		fail(fmt.Errorf("%s is not a regular file, directory or symlink", m.Type()))
	}
}

// file copies one regular file and checks it, filling in its SHA-256 and
// counts.
func (c *copier) file(src, dst string, it *CopyItem) error {
	size, perm := it.Size, it.Mode
	if c.opts.Progress != nil {
		c.opts.Progress.File(c.from.Label(src), size)
	}
	if c.from.helper != "" && c.to.sc == nil {
		if err := c.fileDown(src, dst, it); !errors.Is(err, errStreamUnsupported) {
			it.Via = "stream"
			return err
		}
		it.Read, it.Written = 0, 0
	}
	in, err := c.from.open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	var remote [][2]int64
	if c.from.sc != nil {
		remote = c.from.remoteExtents(c.ctx, src, size)
	}
	if c.to.helper != "" {
		if err := c.fileUp(in, src, dst, remote, it); !errors.Is(err, errStreamUnsupported) {
			it.Via = "stream"
			return err
		}
		it.Read, it.Written = 0, 0
	}
	if c.from.sc != nil || c.to.sc != nil {
		it.Via = "sftp"
	}
	out, err := c.to.create(dst, perm)
	if err != nil {
		return err
	}
	h := sha256.New()
	werr := c.stream(in, out, size, remote, h, it)
	if werr == nil {
		// Zero runs were skipped: the size comes from here, and so do
		// trailing holes.
		werr = out.Truncate(size)
	}
	if werr == nil {
		werr = out.Chmod(perm)
	}
	if cerr := out.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = c.to.remove(dst) // a partial file must not pass for a copy
		return werr
	}
	want := hex.EncodeToString(h.Sum(nil))
	got, err := c.to.sha256(c.ctx, dst)
	if err != nil {
		return fmt.Errorf("checking the copy: %w", err)
	}
	if got != want {
		_ = c.to.remove(dst)
		return fmt.Errorf("SHA-256 mismatch: read %s, the copy has %s (the copy was removed)", want, got)
	}
	it.SHA256 = want
	return nil
}

// copyChunk is one step of a file's copy: data read at off (buf[:n]), or
// a hole of n bytes (buf nil) that is neither read nor written.
type copyChunk struct {
	off int64
	buf []byte
	n   int
}

// copyBuffers is how many blocks one file's copy has in flight: one being
// read and hashed, one being written, one ready.
const copyBuffers = 3

// stream copies size bytes from in to out, hashing everything (holes as
// zeros) and writing only blocks that are not all zeros. Reading and
// hashing run beside writing, so the two sides (a disk, an SFTP channel)
// are busy at once, and each run of data goes out as one write, which an
// SFTP file sends as many packets in flight.
func (c *copier) stream(in copySource, out copyDest, size int64, remote [][2]int64, h io.Writer, it *CopyItem) error {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	free := make(chan []byte, copyBuffers)
	for range copyBuffers {
		free <- make([]byte, copyBlock)
	}
	chunks := make(chan copyChunk, copyBuffers)
	var readErr error
	go func() {
		defer close(chunks)
		readErr = c.readChunks(ctx, in, size, remote, h, it, free, chunks)
	}()
	var writeErr error
	for ch := range chunks {
		if writeErr == nil && ch.buf != nil {
			writeErr = writeRuns(out, ch.buf[:ch.n], ch.off, it)
		}
		if ch.buf != nil {
			free <- ch.buf
		}
		if writeErr != nil {
			cancel() // the reader stops at its next step
			continue
		}
		if c.opts.Progress != nil {
			c.opts.Progress.Bytes(int64(ch.n))
		}
	}
	if writeErr != nil {
		return writeErr
	}
	return readErr
}

// readChunks reads and hashes a file in order, handing chunks to the
// writer; holes are hashed as zeros and handed over as such.
func (c *copier) readChunks(ctx context.Context, in copySource, size int64, remote [][2]int64, h io.Writer, it *CopyItem, free chan []byte, chunks chan<- copyChunk) error {
	pos := int64(0)
	hole := func(n int64) error {
		for n > 0 {
			k := min(n, int64(copyBlock))
			h.Write(zeros()[:k])
			select {
			case chunks <- copyChunk{n: int(k)}:
			case <-ctx.Done():
				return ctx.Err()
			}
			n -= k
		}
		return nil
	}
	for _, ext := range dataExtents(in, size, remote) {
		if err := hole(ext[0] - pos); err != nil {
			return err
		}
		for off := ext[0]; off < ext[1]; {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			n, err := in.ReadAt(buf[:min(int64(len(buf)), ext[1]-off)], off)
			if n == 0 && err != nil {
				if errors.Is(err, io.EOF) {
					return fmt.Errorf("file shrank to %d bytes while being copied", off)
				}
				return err
			}
			it.Read += int64(n)
			h.Write(buf[:n])
			select {
			case chunks <- copyChunk{off: off, buf: buf, n: n}:
			case <-ctx.Done():
				return ctx.Err()
			}
			off += int64(n)
		}
		pos = ext[1]
	}
	return hole(size - pos)
}

// localWriteMax is the largest write into a local file.
const localWriteMax = 256 << 10

// writeRuns writes the parts of data (at off) that are not runs of zeros
// of zeroBlock or more, each run of data in one write.
func writeRuns(out copyDest, data []byte, off int64, it *CopyItem) error {
	start := -1 // of the data run being gathered
	flush := func(end int) error {
		if start < 0 {
			return nil
		}
		// A local file takes the run in pieces: one write of megabytes
		// costs more per byte in the kernel than several smaller ones.
		piece := end - start
		if _, local := out.(*os.File); local {
			piece = localWriteMax
		}
		for p := start; p < end; p += piece {
			if _, err := out.WriteAt(data[p:min(p+piece, end)], off+int64(p)); err != nil {
				return err
			}
		}
		it.Written += int64(end - start)
		start = -1
		return nil
	}
	for b := 0; b < len(data); b += zeroBlock {
		blk := data[b:min(b+zeroBlock, len(data))]
		if bytes.Equal(blk, zeros()[:len(blk)]) {
			if err := flush(b); err != nil {
				return err
			}
			continue
		}
		if start < 0 {
			start = b
		}
	}
	return flush(len(data))
}

// TermProgress prints one updating line per large file to w (a terminal),
// at most every interval.
type TermProgress struct {
	W        io.Writer
	MinSize  int64 // files smaller than this print nothing
	Interval time.Duration

	name        string
	size, done  int64
	start, last time.Time
}

// File starts a new file's line, ending the previous one.
func (p *TermProgress) File(name string, size int64) {
	p.end()
	p.name, p.size, p.done, p.start, p.last = name, size, 0, time.Now(), time.Time{}
}

// Bytes advances the current file.
func (p *TermProgress) Bytes(n int64) {
	p.done += n
	if p.size < p.MinSize || time.Since(p.last) < p.Interval && p.done < p.size {
		return
	}
	p.last = time.Now()
	rate := float64(p.done) / max(time.Since(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.W, "\r%s: %s / %s (%d%%) %s/s\x1b[K", p.name, humanBytes(float64(p.done)), humanBytes(float64(p.size)), p.done*100/max(p.size, 1), humanBytes(rate))
}

// Done ends the last line.
func (p *TermProgress) Done() { p.end() }

func (p *TermProgress) end() {
	if p.name != "" && p.size >= p.MinSize {
		fmt.Fprintln(p.W)
	}
	p.name = ""
}

func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", n, units[i])
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}
