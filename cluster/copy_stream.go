package cluster

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vtcluster/vtcluster/cluster/sshx"
)

// A file whose other side is a node with vtcluster deployed is streamed
// over one SSH exec channel to that binary ("cp --receive" up, "cp --send"
// down) instead of SFTP: no SFTP request per 32 KiB, and the receiving end
// hashes what it writes as it writes it, so there is no second pass over
// the copy nor one more command to ask for it. Both ends write with the
// same code (writeLocalFile: create, writeRuns), under the same rules as
// any local copy. Without a deployed binary, SFTP does it as before.
//
// The stream is frames: 'D' offset(8) length(4) data, in increasing
// offsets, only for data (holes and zero runs are gaps, hashed as zeros);
// then 'E' size(8) sha256(32), the sender's hash of the whole file. The
// receiver refuses anything else, and a file that ends without 'E' or
// whose hash differs is removed.

const (
	frameData = 'D'
	frameEnd  = 'E'
)

// StreamMismatchError is a streamed file whose hash, as written, is not
// the one its sender read.
type StreamMismatchError struct{ Sent, Written string }

func (e *StreamMismatchError) Error() string {
	return fmt.Sprintf("SHA-256 mismatch: read %s, the copy has %s (the copy was removed)", e.Sent, e.Written)
}

// frameDest is a copyDest that sends what is written as frames.
type frameDest struct {
	w   *bufio.Writer
	hdr [13]byte
}

func newFrameDest(w io.Writer) *frameDest { return &frameDest{w: bufio.NewWriterSize(w, 64<<10)} }

func (d *frameDest) WriteAt(p []byte, off int64) (int, error) {
	total := len(p)
	for len(p) > 0 {
		n := min(len(p), copyBlock)
		d.hdr[0] = frameData
		binary.BigEndian.PutUint64(d.hdr[1:9], uint64(off))
		binary.BigEndian.PutUint32(d.hdr[9:13], uint32(n))
		if _, err := d.w.Write(d.hdr[:]); err != nil {
			return 0, err
		}
		if _, err := d.w.Write(p[:n]); err != nil {
			return 0, err
		}
		p, off = p[n:], off+int64(n)
	}
	return total, nil
}

// end sends the size and hash that close the stream.
func (d *frameDest) end(size int64, sum []byte) error {
	var b [41]byte
	b[0] = frameEnd
	binary.BigEndian.PutUint64(b[1:9], uint64(size))
	copy(b[9:], sum)
	if _, err := d.w.Write(b[:]); err != nil {
		return err
	}
	return d.w.Flush()
}

// The size and mode travel apart (argv, the end frame).
func (d *frameDest) Truncate(int64) error    { return nil }
func (d *frameDest) Chmod(fs.FileMode) error { return nil }
func (d *frameDest) Close() error            { return nil }

// receiveFrames writes one file's frames from r into out, hashing it in
// order (gaps as zeros), and checks the sender's end frame: its size must
// be size and its hash the one of what was written. Reading the stream runs
// beside hashing and writing, so the sender is not held up by either;
// memory is copyBuffers blocks.
func receiveFrames(ctx context.Context, r io.Reader, out copyDest, size int64, it *CopyItem, prog CopyProgress) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	free := make(chan []byte, copyBuffers)
	for range copyBuffers {
		free <- make([]byte, copyBlock)
	}
	chunks := make(chan copyChunk, copyBuffers)
	var end [40]byte
	var readErr error
	go func() {
		defer close(chunks)
		readErr = readFrames(ctx, r, size, &end, free, chunks)
	}()
	h := sha256.New()
	pos := int64(0)
	gap := func(to int64) {
		for ; pos < to; pos += min(to-pos, copyBlock) {
			h.Write(zeros()[:min(to-pos, copyBlock)])
		}
	}
	var writeErr error
	for ch := range chunks {
		if writeErr == nil {
			if prog != nil {
				prog.Bytes(ch.off + int64(ch.n) - pos)
			}
			gap(ch.off)
			h.Write(ch.buf[:ch.n])
			it.Read += int64(ch.n)
			pos = ch.off + int64(ch.n)
			if writeErr = writeRuns(out, ch.buf[:ch.n], ch.off, it); writeErr != nil {
				cancel() // the reader stops at its next frame
			}
		}
		free <- ch.buf
	}
	if writeErr != nil {
		return "", writeErr
	}
	if readErr != nil {
		return "", readErr
	}
	if prog != nil {
		prog.Bytes(size - pos)
	}
	gap(size)
	sent, written := hex.EncodeToString(end[8:]), hex.EncodeToString(h.Sum(nil))
	if sent != written {
		return "", &StreamMismatchError{Sent: sent, Written: written}
	}
	return written, nil
}

// readFrames parses the stream into chunks for receiveFrames, checking
// that the frames stay inside the file and in order, until the end frame
// (copied into end, its size checked).
func readFrames(ctx context.Context, r io.Reader, size int64, end *[40]byte, free chan []byte, chunks chan<- copyChunk) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr [13]byte
	pos := int64(0)
	for {
		if _, err := io.ReadFull(br, hdr[:1]); err != nil {
			return fmt.Errorf("the stream ended before the file did (at byte %d of %d): %w", pos, size, err)
		}
		switch hdr[0] {
		case frameData:
			if _, err := io.ReadFull(br, hdr[1:]); err != nil {
				return fmt.Errorf("the stream ended inside a frame: %w", err)
			}
			off := int64(binary.BigEndian.Uint64(hdr[1:9]))
			n := int64(binary.BigEndian.Uint32(hdr[9:13]))
			if off < pos || n == 0 || n > copyBlock || off > size-n {
				return fmt.Errorf("bad stream: %d bytes at %d after byte %d of a %d-byte file", n, off, pos, size)
			}
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			if _, err := io.ReadFull(br, buf[:n]); err != nil {
				return fmt.Errorf("the stream ended inside a frame: %w", err)
			}
			select {
			case chunks <- copyChunk{off: off, buf: buf, n: int(n)}:
			case <-ctx.Done():
				return ctx.Err()
			}
			pos = off + n
		case frameEnd:
			if _, err := io.ReadFull(br, end[:]); err != nil {
				return fmt.Errorf("the stream ended inside its end frame: %w", err)
			}
			if got := int64(binary.BigEndian.Uint64(end[:8])); got != size {
				return fmt.Errorf("the source is %d bytes now, not %d: it changed while being copied", got, size)
			}
			return nil
		default:
			return fmt.Errorf("bad stream: frame type %#x", hdr[0])
		}
	}
}

// writeLocalFile creates dst (as any local copy does: what is there is
// replaced, never written through) and fills it from the frames in r. Any
// failure, ctx's end included, removes it: a partial file must not pass
// for a copy.
func writeLocalFile(ctx context.Context, r io.Reader, dst string, size int64, perm fs.FileMode, it *CopyItem, prog CopyProgress) (string, error) {
	out, err := LocalFS().create(dst, perm)
	if err != nil {
		return "", err
	}
	type result struct {
		sum string
		err error
	}
	done := make(chan result, 1)
	var counts CopyItem // it's counts, copied once the goroutine is done
	go func() {
		// r may block past ctx's end (a node's stdin): the wait below
		// does not wait for it.
		sum, err := receiveFrames(ctx, r, out, size, &counts, prog)
		if err == nil {
			err = out.Truncate(size)
		}
		if err == nil {
			err = out.Chmod(perm)
		}
		done <- result{sum, err}
	}()
	var res result
	select {
	case res = <-done:
		it.Read, it.Written = counts.Read, counts.Written
	case <-ctx.Done():
		res.err = ctx.Err()
	}
	if cerr := out.Close(); res.err == nil {
		res.err = cerr
	}
	if res.err != nil {
		_ = os.Remove(dst)
		return "", res.err
	}
	return res.sum, nil
}

// ReceiveFile is "cp --receive" on a node: the file streamed on r becomes
// dst; its SHA-256, as written, is returned for the sender to compare.
func ReceiveFile(ctx context.Context, r io.Reader, dst string, size int64, perm fs.FileMode, maxSize int64) (string, error) {
	if size < 0 {
		return "", fmt.Errorf("size %d: want the file's size in bytes", size)
	}
	if maxSize > 0 && size > maxSize {
		return "", tooLarge(size, maxSize)
	}
	var it CopyItem
	return writeLocalFile(ctx, r, dst, size, perm.Perm(), &it, nil)
}

// SendFile is "cp --send" on a node: the local file src, as frames on w.
func SendFile(ctx context.Context, w io.Writer, src string, maxSize int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	if maxSize > 0 && st.Size() > maxSize {
		return tooLarge(st.Size(), maxSize)
	}
	c := &copier{ctx: ctx}
	d := newFrameDest(w)
	h := sha256.New()
	var it CopyItem
	if err := c.stream(in, d, st.Size(), nil, h, &it); err != nil {
		return err
	}
	return d.end(st.Size(), h.Sum(nil))
}

// tooLarge is a file above --max-size, refused before anything is read.
func tooLarge(size, maxSize int64) error {
	return fmt.Errorf("%d bytes, above the %d a copied file may have (raise --max-size to copy it)", size, maxSize)
}

// errStreamUnsupported is a node binary that does not know the streamed
// modes (an older one): SFTP copies the file instead.
var errStreamUnsupported = errors.New("the node's vtcluster cannot stream copies")

// usageStatus is the exit status of a vtcluster that did not understand
// its command line (bridge's usage errors).
const usageStatus = 2

// unsupported tells an older node binary's refusal of the command line
// (it exits before reading or writing anything) from a failed copy.
func unsupported(err error, answered bool) bool {
	var ee *sshx.RemoteExitError
	return !answered && errors.As(err, &ee) && ee.Status == usageStatus && ee.Signal == ""
}

// nodeMaxSize is the --max-size the node's end of a stream holds to: this
// copy's, or without one the file's size (which must not change anyway).
func (c *copier) nodeMaxSize(size int64) string {
	if c.opts.MaxSize > 0 {
		return strconv.FormatInt(c.opts.MaxSize, 10)
	}
	return strconv.FormatInt(max(size, 1), 10)
}

// fileUp streams a file to the node c.to with its deployed vtcluster.
func (c *copier) fileUp(in copySource, src, dst string, remote [][2]int64, it *CopyItem) error {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	argv := []string{c.to.helper, "cp", "--receive",
		"--size", strconv.FormatInt(it.Size, 10),
		"--mode", fmt.Sprintf("%04o", uint32(it.Mode.Perm())),
		"--max-size", c.nodeMaxSize(it.Size),
		"--", dst}
	var ans cappedBuffer
	ans.max = 256
	h := sha256.New()
	// The frames go straight into the channel's stdin, without a pipe's
	// copies; without the end frame the node removes what it wrote.
	srcFrames := &frameSource{done: make(chan struct{}), run: func(w io.Writer) error {
		d := newFrameDest(w)
		if err := c.stream(in, d, it.Size, remote, h, it); err != nil {
			return err
		}
		return d.end(it.Size, h.Sum(nil))
	}}
	rerr := c.to.ssh.Run(ctx, argv, sshx.RunOptions{Stdin: srcFrames, Stdout: &ans})
	werr := srcFrames.finish()
	if unsupported(rerr, ans.Len() > 0) {
		return errStreamUnsupported
	}
	switch {
	case c.ctx.Err() != nil:
		// The node's side was killed before it could clean up.
		_ = c.to.remove(dst)
		return c.ctx.Err()
	case werr != nil && rerr == nil || werr != nil && !errors.Is(werr, errWriteToChannel):
		// Ours (reading the source): the node saw the stream end short
		// and removed what it wrote.
		return werr
	case rerr != nil:
		return rerr // the node's reason, its stderr included
	case werr != nil:
		return werr
	}
	want, got := hex.EncodeToString(h.Sum(nil)), strings.TrimSpace(ans.String())
	if ans.over || got != want {
		_ = c.to.remove(dst)
		return &StreamMismatchError{Sent: want, Written: got}
	}
	it.SHA256 = want
	return nil
}

// frameSource hands a stream's writer to the SSH channel's stdin copy as
// an io.WriterTo (io.Copy prefers it), so frames are written into the
// channel directly. finish waits for it, unless it never started.
type frameSource struct {
	run  func(w io.Writer) error
	mu   sync.Mutex
	ran  bool // started; or, with closed, never to start
	shut bool
	err  error
	done chan struct{}
}

// errWriteToChannel marks a failed write into the channel: the node's end
// stopped reading, and its own error says why.
var errWriteToChannel = errors.New("the node stopped reading the stream")

func (s *frameSource) WriteTo(w io.Writer) (int64, error) {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		return 0, errWriteToChannel
	}
	s.ran = true
	s.mu.Unlock()
	defer close(s.done)
	s.err = s.run(channelWriter{w})
	return 0, s.err
}

// Read is never called: io.Copy uses WriteTo.
func (s *frameSource) Read([]byte) (int, error) { return 0, errors.New("frameSource: Read") }

func (s *frameSource) finish() error {
	s.mu.Lock()
	s.shut = true
	ran := s.ran
	s.mu.Unlock()
	if !ran {
		return errWriteToChannel
	}
	<-s.done
	return s.err
}

// channelWriter tags write errors of the SSH channel as such.
type channelWriter struct{ w io.Writer }

func (c channelWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		err = fmt.Errorf("%w: %w", errWriteToChannel, err)
	}
	return n, err
}

// fileDown streams a file from the node c.from, with its deployed
// vtcluster, into a local dst.
func (c *copier) fileDown(src, dst string, it *CopyItem) error {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	argv := []string{c.from.helper, "cp", "--send",
		"--max-size", c.nodeMaxSize(it.Size),
		"--", src}
	pr, pw := io.Pipe()
	runc := make(chan error, 1)
	go func() {
		err := c.from.ssh.Run(ctx, argv, sshx.RunOptions{Stdout: pw})
		pw.CloseWithError(errors.Join(err, io.ErrUnexpectedEOF))
		runc <- err
	}()
	cr := &countingReader{r: pr}
	sum, err := writeLocalFile(ctx, cr, dst, it.Size, it.Mode, it, c.opts.Progress)
	// Stop the node's side if it is still sending (a refused stream).
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		cancel()
	}
	rerr := <-runc
	if unsupported(rerr, cr.n.Load() > 0) {
		return errStreamUnsupported
	}
	switch {
	case err == nil && rerr != nil:
		_ = os.Remove(dst)
		return rerr
	case err != nil && rerr != nil && errors.Is(err, io.ErrUnexpectedEOF) && c.ctx.Err() == nil:
		return rerr // the node stopped sending: its reason, its stderr included
	case err != nil:
		return err
	}
	it.SHA256 = sum
	return nil
}

// countingReader counts what was read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64 // read after a reader left behind by ctx's end
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
