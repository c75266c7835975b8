package vm

// The serial console and the QMP event log, read back by offset, and the
// wait for a console pattern. Reads are bounded per call; a caller pages
// on with the offset it got back.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/vtcluster/vtcluster/agent"
)

// maxChunk bounds one console or events read.
const maxChunk = 1 << 20

// maxWait bounds wait_console's timeout, so a call never blocks longer.
const maxWait = 600 * time.Second

// readFrom reads up to max bytes of path from off. O_NOFOLLOW: the file
// is QEMU's, in the VM's 0700 directory, never a link to elsewhere.
func readFrom(path string, off int64, max int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // QEMU has not written yet
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, max)
	n, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:n], nil
}

func offsetArg(args agent.Args, i int) (int64, error) {
	if args.Value(i) == nil {
		return 0, nil
	}
	n, err := args.Int(i, "offset")
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fault("ValueError", "offset must not be negative")
	}
	return int64(n), nil
}

// console(name[, offset]) returns the console's bytes from offset (at
// most 1 MiB) and the offset to read on from.
func (s *Service) console(_ context.Context, args agent.Args) (any, error) {
	return s.readChunk(args, func(m *machine) string { return m.files.console })
}

// events(name[, offset]) is console for the QMP event log (JSON lines).
func (s *Service) eventLog(_ context.Context, args agent.Args) (any, error) {
	return s.readChunk(args, func(m *machine) string { return filepath.Join(m.files.dir, "events.jsonl") })
}

func (s *Service) readChunk(args agent.Args, path func(*machine) string) (any, error) {
	if err := args.Want(1, 2); err != nil {
		return nil, err
	}
	m, err := s.lookup(args)
	if err != nil {
		return nil, err
	}
	off, err := offsetArg(args, 1)
	if err != nil {
		return nil, err
	}
	b, err := readFrom(path(m), off, maxChunk)
	if err != nil {
		return nil, fault("OSError", "vm %s: %v", m.spec.Name, err)
	}
	return toWire(ConsoleChunk{Data: b, Offset: off + int64(len(b))}), nil
}

// wait_console(name, pattern, timeout[, offset]) waits until the console
// from offset matches pattern (a regular expression, RE2 syntax) or
// timeout seconds pass. Not matching is not an error: matched=False.
func (s *Service) waitConsole(ctx context.Context, args agent.Args) (any, error) {
	if err := args.Want(3, 4); err != nil {
		return nil, err
	}
	m, err := s.lookup(args)
	if err != nil {
		return nil, err
	}
	pat, err := args.String(1, "pattern")
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		return nil, fault("ValueError", "pattern %q: %v", pat, err)
	}
	t, ok := toFloat(args.Value(2))
	if !ok || t < 0 || t > maxWait.Seconds() {
		return nil, fault("ValueError", "argument 'timeout' must be seconds within 0..%d", int(maxWait.Seconds()))
	}
	off, err := offsetArg(args, 3)
	if err != nil {
		return nil, err
	}
	res, err := waitFor(ctx, m, re, off, time.Duration(t*float64(time.Second)))
	if err != nil {
		return nil, fault("OSError", "vm %s: %v", m.spec.Name, err)
	}
	return toWire(res), nil
}

// waitFor scans the console from off, keeping at most the last 64 KiB
// of an unfinished line, so a console without newlines costs bounded
// memory.
func waitFor(ctx context.Context, m *machine, re *regexp.Regexp, off int64, d time.Duration) (ConsoleMatch, error) {
	const keep = 64 << 10
	deadline := time.Now().Add(d)
	var pending []byte // the current, unfinished line
	base := off        // console offset of pending[0]
	for {
		b, err := readFrom(m.files.console, off, maxChunk)
		if err != nil {
			return ConsoleMatch{}, err
		}
		off += int64(len(b))
		pending = append(pending, b...)
		// Match line by line so that Line is the whole line.
		for len(pending) > 0 {
			nl := bytes.IndexByte(pending, '\n')
			line := pending
			if nl >= 0 {
				line = pending[:nl+1]
			}
			if loc := re.FindIndex(line); loc != nil {
				return ConsoleMatch{Matched: true, Match: string(line[loc[0]:loc[1]]),
					Line: string(trimNL(line)), Offset: base + int64(loc[1])}, nil
			}
			if nl < 0 {
				break
			}
			pending = pending[nl+1:]
			base += int64(nl + 1)
		}
		if len(pending) > keep {
			cut := len(pending) - keep
			pending, base = pending[cut:], base+int64(cut)
		}
		if len(b) == maxChunk {
			continue
		}
		if time.Now().After(deadline) || m.exited() {
			return ConsoleMatch{Offset: off}, nil
		}
		select {
		case <-ctx.Done():
			return ConsoleMatch{}, fmt.Errorf("wait_console: %w", context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
