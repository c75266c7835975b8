package logframe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// MaxForwardFrame bounds the body of every frame agent's streamer sends,
// after JSON escaping (which may make a message six times longer), so that
// a reader with DefaultMaxFrame accepts every record an agent sends.
const MaxForwardFrame = 1 << 20

// DefaultMaxFrame bounds a frame's JSON body when the caller gives no limit.
// Upstream has no limit; ours sends at most MaxForwardFrame, and the margin
// above it is for other senders' extra keys.
const DefaultMaxFrame = MaxForwardFrame + 100<<10

// FrameTooLargeError reports a frame whose announced length exceeds the
// reader's limit. The stream cannot be resynchronised after it.
type FrameTooLargeError struct {
	Size uint32 // announced length
	Max  int    // the limit in force
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("frame length %d exceeds limit %d", e.Size, e.Max)
}

// FrameDecodeError reports a frame that was read completely but whose body
// is not a valid record. The frame boundary is intact, so the reader may
// carry on with the next frame.
type FrameDecodeError struct {
	Err error
}

func (e *FrameDecodeError) Error() string { return e.Err.Error() }
func (e *FrameDecodeError) Unwrap() error { return e.Err }

// EncodeFrame writes r as one frame: a 4-byte big-endian length, then the
// JSON body. The frame goes out in a single Write so that concurrent writers
// on a shared connection cannot interleave halves of two frames.
func EncodeFrame(w io.Writer, r *LogRecord) error {
	buf := AppendFrame(make([]byte, 0, 512), r)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("logframe: write: %w", err)
	}
	return nil
}

// AppendFrame appends r's frame (length header and JSON body) to dst.
func AppendFrame(dst []byte, r *LogRecord) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = r.AppendJSON(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// ReadFrame reads one frame from r and decodes its body. max bounds the
// body length (0 or less means DefaultMaxFrame). It returns the decoded
// record and the raw body.
//
// Errors: io.EOF when r ends cleanly between frames; io.ErrUnexpectedEOF
// when it ends inside a frame; *FrameTooLargeError (the body is not read);
// *FrameDecodeError when the body was read but is not a record (the raw
// body is still returned and the next frame can be read).
func ReadFrame(r io.Reader, max int) (*LogRecord, []byte, error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, nil, &FrameTooLargeError{Size: n, Max: max}
	}
	body, err := readBody(r, nil, int(n))
	if err != nil {
		return nil, nil, fullReadErr(err, 1)
	}
	rec, err := DecodeLogRecord(body)
	if err != nil {
		return nil, body, &FrameDecodeError{Err: err}
	}
	return rec, body, nil
}

// FrameReader reads a stream of frames through one buffer and decodes each
// body where it lies in that buffer. It is ReadFrame for a long-lived
// connection: a frame that fits the buffer is not copied before decoding.
type FrameReader struct {
	br  *bufio.Reader
	max int
}

// NewFrameReader reads frames from r with a buffer of bufSize bytes (at
// least 4 KiB); frames above maxFrame bytes (0 or less: DefaultMaxFrame)
// are errors as for ReadFrame. Frames larger than the buffer are read whole
// into memory of their own.
func NewFrameReader(r io.Reader, bufSize, maxFrame int) *FrameReader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &FrameReader{br: bufio.NewReaderSize(r, max(bufSize, 4<<10)), max: maxFrame}
}

// Next reads and decodes the next frame, with ReadFrame's results and
// errors. The returned body is only valid until the next call.
func (fr *FrameReader) Next() (*LogRecord, []byte, error) {
	hdr, err := fr.br.Peek(4)
	if err != nil {
		return nil, nil, fullReadErr(err, len(hdr))
	}
	n := binary.BigEndian.Uint32(hdr)
	if uint64(n) > uint64(fr.max) {
		return nil, nil, &FrameTooLargeError{Size: n, Max: fr.max}
	}
	var body []byte
	if size := 4 + int(n); size <= fr.br.Size() {
		frame, err := fr.br.Peek(size)
		if err != nil {
			return nil, nil, fullReadErr(err, 1)
		}
		body = frame[4:]
		// Discard only moves the buffer's read index: the bytes stay where
		// they are until the next read into the buffer.
		_, _ = fr.br.Discard(size)
	} else {
		_, _ = fr.br.Discard(4)
		if body, err = readBody(fr.br, nil, int(n)); err != nil {
			return nil, nil, fullReadErr(err, 1)
		}
	}
	rec, err := DecodeLogRecord(body)
	if err != nil {
		return nil, body, &FrameDecodeError{Err: err}
	}
	return rec, body, nil
}

// readBody reads an n-byte frame body into buf, growing it only as bytes
// arrive (at most doubling what is already there), so that a header
// claiming a large frame costs nothing until the sender actually sends it.
func readBody(r io.Reader, buf []byte, n int) ([]byte, error) {
	const minChunk = 64 << 10
	buf = buf[:0]
	for len(buf) < n {
		chunk := min(n-len(buf), max(len(buf), minChunk))
		buf = slices.Grow(buf, chunk)
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+got]
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// Buffered returns how many bytes were read from the underlying reader
// but not yet consumed as frames: the start of the next frame, if any.
func (fr *FrameReader) Buffered() int { return fr.br.Buffered() }

// FrameBuffered reports whether a whole frame (or a header announcing a
// frame above the limit) is already buffered, so that Next returns without
// reading from the underlying reader, that is, without waiting.
func (fr *FrameReader) FrameBuffered() bool {
	b := fr.br.Buffered()
	if b < 4 {
		return false
	}
	hdr, _ := fr.br.Peek(4)
	n := binary.BigEndian.Uint32(hdr)
	return uint64(n) > uint64(fr.max) || uint64(b) >= 4+uint64(n)
}

// fullReadErr turns a short read of got bytes into io.ReadFull's errors:
// io.EOF only when nothing of the frame was read.
func fullReadErr(err error, got int) error {
	if errors.Is(err, io.EOF) && got > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}
