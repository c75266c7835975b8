package logserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/vtcluster/vtcluster/agent/logframe"
)

// unknownTag names records from an address no node was registered for, as
// avocado-vt's LoggerServer does.
const unknownTag = "Unknown"

const (
	// readBufSize is each connection's read buffer: frames up to this size
	// are decoded where they lie in it.
	readBufSize = 64 << 10
	// maxBatch flushes a connection's lines once they pass this many bytes,
	// even while more frames are waiting.
	maxBatch = 64 << 10
	// warnEvery is how often one kind of warning about peers is logged; the
	// ones in between are counted and reported with the next.
	warnEvery = 10 * time.Second
)

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// Addr is the listen address; port 0 picks a free port (see Addr()).
	Addr string
	// Logger receives one record per received log record: the unified line
	// as message, at the record's own level. It also gets the server's own
	// warnings (bad frames). Nil discards both.
	Logger *slog.Logger
	// Out, if set, receives the unified lines as plain text, one per line,
	// tracebacks indented on the lines after. A connection's lines are
	// written in batches of whole lines: whatever it has received, before
	// it waits for more, and when it ends.
	Out io.Writer
	// NodeDir, if set, gives the directory of a node's own log file; the
	// lines of node <tag> are appended to <NodeDir(tag)>/<tag>.log, in the
	// same batches as Out.
	NodeDir func(tag string) string
	// OnRecord, if set, is called for every record with the node's tag and
	// address, from the connection's goroutine; it must not block long.
	OnRecord func(tag, ip string, rec *logframe.LogRecord)
	// MaxFrame bounds a frame's JSON body in bytes; a larger frame closes
	// its connection. 0 means logframe.DefaultMaxFrame.
	MaxFrame int
	// Lookup, if set, names the node at an address no RegisterNode call
	// named, like upstream's LoggerServer looking the sender up per
	// connection, so nodes registered after the server started are named.
	// A name found is kept; an address not found is asked about again by
	// its next connection. Called from a connection's goroutine.
	Lookup func(ip string) (tag string, ok bool)
	// ControllerHalf starts every line written to Out and the node files
	// with the controller's half of upstream's unified line,
	// "<asctime> <module> L<lineno> <levelname> | ", as Avocado's test
	// logs show it around LoggerServer's message. The Logger and
	// OnRecord never get it: their own handler adds its own.
	ControllerHalf bool
	// NoListener opens no socket: the server only reads connections handed
	// to ServeConn (an SSH forward whose far end only the agent can reach),
	// and Addr is nil. Addr is ignored.
	NoListener bool
	// MaxConns bounds the connections served at once; more are closed on
	// arrival. 0 means DefaultMaxLogConns.
	MaxConns int
	// FrameTimeout bounds how long a frame may take to arrive once its
	// first byte has (more exactly: since the previous frame, checked
	// every FrameTimeout); a peer that takes longer is closed. Idle peers
	// between frames are kept unless IdleTimeout says otherwise. 0 means
	// DefaultLogFrameTimeout.
	FrameTimeout time.Duration
	// IdleTimeout, when above zero, closes a peer that sent no frame for
	// that long (checked every FrameTimeout at most), so idle connections
	// cannot hold every slot of a server anyone may connect to. 0 keeps
	// idle peers: the runner's agents may have nothing to log for long.
	IdleTimeout time.Duration
	// MaxConnsPerAddr bounds the connections from one address over the
	// listener (more are closed on arrival), so one sender cannot take
	// the MaxConns slots of every other node. 0 means
	// DefaultMaxLogConnsPerAddr.
	MaxConnsPerAddr int
}

// Bounds of a log server's peers; see Config.
const (
	DefaultMaxLogConns     = 64          // a partition has a few agents, a `logs serve` a few dozen
	DefaultLogFrameTimeout = time.Minute // a frame is at most 1.1 MiB; our agents write one in a single call
	// An agent streams over one connection; a few more cover restarts.
	DefaultMaxLogConnsPerAddr = 8
)

// DefaultConfig listens on a free loopback port.
func DefaultConfig() Config {
	return Config{
		Addr:         "127.0.0.1:0",            // agents reach it through SSH tunnels, not the LAN
		MaxFrame:     logframe.DefaultMaxFrame, // above every frame our agents send
		MaxConns:     DefaultMaxLogConns,
		FrameTimeout: DefaultLogFrameTimeout,
	}
}

// Stats counts what a Server has seen since it was created.
type Stats struct {
	Connections uint64 // connections served, over the listener or ServeConn
	Active      uint64 // connections being served now
	Records     uint64 // records delivered: passed to OnRecord and Logger, and written to Out and the node files
	Invalid     uint64 // frames skipped because their body is not a record
	Oversize    uint64 // connections closed for a frame above MaxFrame
	Truncated   uint64 // connections that ended inside a frame
	Refused     uint64 // connections closed on arrival: MaxConns (or MaxConnsPerAddr from its address) were open
	TimedOut    uint64 // connections closed for holding a partial frame over FrameTimeout
	Idle        uint64 // connections closed for sending nothing over IdleTimeout
}

// Server receives the log records agents stream with avocado-vt's frame
// format (see agent.LogStreamer, and upstream's core.start_log_redirection)
// and writes each as upstream's unified line
// "<tag>(<ip>) <asctime> <name> <levelname> | <msg>". Unlike upstream's
// LoggerServer it keeps each record's level and traceback, survives bad
// peers, and closes everything it opened on Close.
type Server struct {
	cfg    Config
	logger *slog.Logger
	ln     net.Listener

	mu        sync.Mutex
	nodes     map[string]string // normalised IP → tag
	nodesGen  atomic.Uint64     // bumped by RegisterNode, so connections can cache their tag
	conns     map[net.Conn]struct{}
	perAddr   map[string]int // listener connections per remote IP
	started   bool
	closed    bool
	stopWatch func() bool // ends the Start context watch
	wg        sync.WaitGroup
	done      chan struct{} // closed by Close

	outMu    sync.Mutex // serialises Out and the node files
	files    map[string]*os.File
	warnedIO map[string]bool // sinks whose write error was already logged

	closeOnce sync.Once
	closeErr  error

	warn warnLimiter

	nConns, nActive, nRecords, nInvalid, nOversize, nTruncated, nRefused, nTimedOut, nIdle atomic.Uint64
}

// New validates cfg and binds the listening socket, so Addr is known
// before Start. Records are only read once Start is called.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultConfig().Addr
	}
	if cfg.MaxFrame < 0 {
		return nil, fmt.Errorf("cluster: log server: max frame %d: want 0 (default) or a positive size", cfg.MaxFrame)
	}
	if cfg.MaxConns < 0 || cfg.FrameTimeout < 0 || cfg.IdleTimeout < 0 || cfg.MaxConnsPerAddr < 0 {
		return nil, fmt.Errorf("cluster: log server: max conns %d, frame timeout %v: want 0 (default) or positive", cfg.MaxConns, cfg.FrameTimeout)
	}
	if cfg.MaxFrame == 0 {
		cfg.MaxFrame = logframe.DefaultMaxFrame
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxLogConns
	}
	if cfg.MaxConnsPerAddr == 0 {
		cfg.MaxConnsPerAddr = DefaultMaxLogConnsPerAddr
	}
	if cfg.FrameTimeout == 0 {
		cfg.FrameTimeout = DefaultLogFrameTimeout
	}
	var ln net.Listener
	if !cfg.NoListener {
		var err error
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("cluster: log server: %w", err)
		}
	}
	return &Server{
		cfg:      cfg,
		logger:   cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		ln:       ln,
		nodes:    map[string]string{},
		conns:    map[net.Conn]struct{}{},
		perAddr:  map[string]int{},
		done:     make(chan struct{}),
		files:    map[string]*os.File{},
		warnedIO: map[string]bool{},
	}, nil
}

// Addr returns the listening address; nil with NoListener.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Start accepts connections in the background until Close, or until ctx
// is done, which closes the server.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("cluster: log server: start after close")
	case s.started:
		return errors.New("cluster: log server: already started")
	}
	s.started = true
	if s.ln != nil {
		s.wg.Add(1)
		go s.acceptLoop()
	}
	s.stopWatch = context.AfterFunc(ctx, func() { _ = s.Close() })
	return nil
}

// RegisterNode makes records from ip carry tag. Nodes configured by host
// name are resolved by the caller and registered by address. An address
// may be registered again to change its tag.
func (s *Server) RegisterNode(ip, tag string) error {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("cluster: log server: register node %q: %w", tag, err)
	}
	s.mu.Lock()
	s.nodes[addr.Unmap().String()] = tag
	s.mu.Unlock()
	s.nodesGen.Add(1)
	return nil
}

// ServeConn reads records from a connection whose origin is already known,
// such as one accepted on a node's SSH remote-forward listener, and tags
// them with tag (an empty tag falls back to the peer address's node). It
// blocks until the connection ends or the server closes, and always closes
// conn.
func (s *Server) ServeConn(conn net.Conn, tag string) {
	if !s.track(conn, "") {
		_ = conn.Close()
		return
	}
	defer s.wg.Done()
	s.serve(conn, tag, "")
}

// Close stops accepting, closes every connection, waits for their readers
// and closes the node files. It is idempotent and safe to call concurrently.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]net.Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		stopWatch := s.stopWatch
		s.mu.Unlock()
		close(s.done)
		if stopWatch != nil {
			stopWatch()
		}
		if s.ln != nil {
			if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				s.closeErr = fmt.Errorf("cluster: log server: %w", err)
			}
		}
		for _, c := range conns {
			_ = c.Close()
		}
		s.wg.Wait()

		s.outMu.Lock()
		defer s.outMu.Unlock()
		for path, f := range s.files {
			if f == nil {
				continue
			}
			if err := f.Close(); err != nil && s.closeErr == nil {
				s.closeErr = fmt.Errorf("cluster: log server: %s: %w", path, err)
			}
		}
		clear(s.files)
	})
	return s.closeErr
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections: s.nConns.Load(),
		Active:      s.nActive.Load(),
		Records:     s.nRecords.Load(),
		Invalid:     s.nInvalid.Load(),
		Oversize:    s.nOversize.Load(),
		Truncated:   s.nTruncated.Load(),
		Refused:     s.nRefused.Load(),
		TimedOut:    s.nTimedOut.Load(),
		Idle:        s.nIdle.Load(),
	}
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			s.warn.Warn(s.logger, "accept", "cluster: log server: accept failed", "err", err, "addr", s.ln.Addr().String())
			select {
			case <-s.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		key := remoteIP(conn.RemoteAddr())
		if !s.track(conn, key) {
			_ = conn.Close()
			if s.isClosed() {
				return
			}
			continue // over the cap
		}
		go func() {
			defer s.wg.Done()
			s.serve(conn, "", key)
		}()
	}
}

// track registers a connection to be served; false once the server closed
// or when it serves MaxConns already, or MaxConnsPerAddr from ip (a
// listener connection's; "" for ServeConn's). On true the caller owes
// s.wg.Done().
func (s *Server) track(conn net.Conn, ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if len(s.conns) >= s.cfg.MaxConns || ip != "" && s.perAddr[ip] >= s.cfg.MaxConnsPerAddr {
		s.nRefused.Add(1)
		s.warn.Warn(s.logger, "cap", "cluster: log server: refusing a connection: too many open", "max", s.cfg.MaxConns, "max_per_addr", s.cfg.MaxConnsPerAddr, "addr", peerAddr(conn.RemoteAddr()))
		return false
	}
	if ip != "" {
		s.perAddr[ip]++
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	s.nConns.Add(1)
	s.nActive.Add(1)
	return true
}

// lineBatch is a connection's unified lines not yet written: one write per
// sink per batch instead of one per record.
type lineBatch struct {
	buf     []byte
	tag     string // whose node file the lines go to
	records uint64 // records in buf, counted as delivered once written
}

// serve reads frames until the peer goes away or the server closes.
// addrKey is what track counted conn under, "" for nothing.
func (s *Server) serve(conn net.Conn, tag, addrKey string) {
	var batch lineBatch
	ip := remoteIP(conn.RemoteAddr())
	defer func() {
		s.flush(&batch)
		_ = conn.Close()
		s.mu.Lock()
		delete(s.conns, conn)
		if addrKey != "" {
			if s.perAddr[addrKey]--; s.perAddr[addrKey] <= 0 {
				delete(s.perAddr, addrKey)
			}
		}
		s.mu.Unlock()
		s.nActive.Add(^uint64(0))
	}()
	addr := peerAddr(conn.RemoteAddr())
	// A timer rather than read deadlines: SSH channels have none. It fires
	// FrameTimeout after the last whole frame: a peer that has sent part of
	// a frame since is closed, so no connection keeps a partial frame (and
	// the memory it grew) for long; an idle one, such as an agent with
	// nothing to log, is left alone, and MaxConns bounds those.
	cr := &countingReader{r: conn}
	var frameEnd atomic.Int64 // bytes of conn that the frames read so far spanned
	var timedOut, idled atomic.Bool
	var idleSince atomic.Int64 // unix nanoseconds of the last whole frame
	idleSince.Store(time.Now().UnixNano())
	check := s.cfg.FrameTimeout
	if s.cfg.IdleTimeout > 0 {
		check = min(check, s.cfg.IdleTimeout)
	}
	var deadline *time.Timer
	deadline = time.AfterFunc(check, func() {
		if cr.n.Load() == frameEnd.Load() {
			// Idle between frames: kept, unless for too long.
			if s.cfg.IdleTimeout <= 0 || time.Since(time.Unix(0, idleSince.Load())) < s.cfg.IdleTimeout {
				deadline.Reset(check)
				return
			}
			idled.Store(true)
		} else {
			timedOut.Store(true)
		}
		_ = conn.Close()
	})
	defer deadline.Stop()
	fr := logframe.NewFrameReader(cr, readBufSize, s.cfg.MaxFrame)
	var ipTag string
	ipTagGen := ^uint64(0)
	for {
		// Lines wait in the batch only while the next record is already
		// here; before a read that may block, they go out.
		if !fr.FrameBuffered() || len(batch.buf) >= maxBatch {
			s.flush(&batch)
		}
		frameEnd.Store(cr.n.Load() - int64(fr.Buffered()))
		idleSince.Store(time.Now().UnixNano())
		deadline.Reset(check)
		rec, body, err := fr.Next()
		if err != nil {
			var decErr *logframe.FrameDecodeError
			var bigErr *logframe.FrameTooLargeError
			switch {
			case errors.As(err, &decErr):
				// The frame's length was honoured, so the next one is intact.
				s.nInvalid.Add(1)
				s.warn.Warn(s.logger, "invalid", "cluster: log server: skipped a frame that is not a log record", "err", err, "bytes", len(body), "addr", addr)
				continue
			case idled.Load():
				s.nIdle.Add(1)
				s.warn.Warn(s.logger, "idle", "cluster: log server: closing an idle connection", "idle_timeout", s.cfg.IdleTimeout, "addr", addr)
			case timedOut.Load():
				s.nTimedOut.Add(1)
				s.warn.Warn(s.logger, "timeout", "cluster: log server: closing connection: no whole frame within the frame timeout", "timeout", s.cfg.FrameTimeout, "addr", addr)
			case errors.As(err, &bigErr):
				s.nOversize.Add(1)
				s.warn.Warn(s.logger, "oversize", "cluster: log server: closing connection: frame too large", "err", err, "addr", addr)
			case errors.Is(err, io.ErrUnexpectedEOF):
				s.nTruncated.Add(1)
				s.warn.Warn(s.logger, "truncated", "cluster: log server: connection ended inside a frame", "err", err, "addr", addr)
			case errors.Is(err, io.EOF), s.isClosed():
			default:
				s.warn.Warn(s.logger, "failed", "cluster: log server: connection failed", "err", err, "addr", addr)
			}
			return
		}
		t := tag
		if t == "" {
			if g := s.nodesGen.Load(); g != ipTagGen {
				ipTag, ipTagGen = s.tagFor(ip), g
			}
			t = ipTag
		}
		s.deliver(&batch, t, ip, rec)
	}
}

func (s *Server) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Server) tagFor(ip string) string {
	s.mu.Lock()
	tag, ok := s.nodes[ip]
	s.mu.Unlock()
	if ok {
		return tag
	}
	if s.cfg.Lookup != nil {
		if tag, ok := s.cfg.Lookup(ip); ok {
			s.mu.Lock()
			if _, set := s.nodes[ip]; !set { // RegisterNode meanwhile wins
				s.nodes[ip] = tag
			}
			tag = s.nodes[ip]
			s.mu.Unlock()
			return tag
		}
	}
	return unknownTag
}

// countingReader counts the bytes read through it, for the frame timer.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func peerAddr(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// remoteIP is the peer's address as RegisterNode normalises it; for
// connections that are not IP (a tunnel's channel may not be) it is the
// address's text.
func remoteIP(a net.Addr) string {
	if a == nil {
		return ""
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap().String()
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// UnifiedLine formats a record as avocado-vt's LoggerServer does,
// "<tag>(<ip>) <asctime> <name> <levelname> | <msg>", followed by the
// traceback and stack, which upstream drops, on indented lines.
func UnifiedLine(tag, ip string, rec *logframe.LogRecord) string {
	return string(appendUnifiedLine(nil, tag, ip, rec))
}

// Every field comes from the peer: none may start a line of its own (a
// message "x\nnode2(...) ERROR | fake" must not read as node2's record), so
// the message's further lines are indented as tracebacks are, and control
// characters anywhere are escaped.
func appendUnifiedLine(b []byte, tag, ip string, rec *logframe.LogRecord) []byte {
	b = appendLogSafe(b, tag, false)
	b = append(b, '(')
	b = appendLogSafe(b, ip, false)
	b = append(b, ") "...)
	b = appendLogSafe(b, rec.Asctime, false)
	b = append(b, ' ')
	b = appendLogSafe(b, rec.Name, false)
	b = append(b, ' ')
	b = appendLogSafe(b, rec.Levelname, false)
	b = append(b, " | "...)
	b = appendLogSafe(b, strings.TrimRight(rec.Msg, "\n"), true)
	if len(rec.ExcInfo) > 0 {
		b = appendIndented(b, strings.Join(rec.ExcInfo, ""))
	}
	return appendIndented(b, rec.StackInfo)
}

// deliverLine stands for upstream's {lineno}: the line of the code that
// writes the record out, as the Python logging call's line is upstream's.
var deliverLine = func() int { _, _, line, _ := runtime.Caller(0); return line }()

// appendControllerHalf appends "<asctime> logserver L<lineno> <levelname> | ",
// asctime in Python logging's local "2006-01-02 15:04:05,000". Unlike
// upstream, which logs every record at INFO, the level is the record's.
func appendControllerHalf(b []byte, now time.Time, level string) []byte {
	b = now.AppendFormat(b, "2006-01-02 15:04:05,000")
	b = append(b, " logserver L"...)
	b = fmt.Appendf(b, "%04d ", deliverLine)
	b = appendLogSafe(b, level, false) // the peer's, as every field
	return append(b, " | "...)
}

// appendIndented appends each line of block on a line of its own, indented.
func appendIndented(b []byte, block string) []byte {
	block = strings.TrimRight(block, "\n")
	if block == "" {
		return b
	}
	b = append(b, "\n    "...)
	return appendLogSafe(b, block, true)
}

// LogSafe returns s fit for one entry of a line-oriented log: its further
// lines indented as continuation lines, control characters, line
// separators and invalid bytes escaped. For text that may hold what a node
// or a peer chose (file names, faults, records).
func LogSafe(s string) string {
	return string(appendLogSafe(make([]byte, 0, len(s)), s, true))
}

// appendLogSafe appends s so that it cannot end or begin a log line: with
// indent, each newline becomes a newline and four spaces (a continuation
// line); without, it is escaped like every other control character, line
// separator and invalid byte, in Python's repr style.
func appendLogSafe(b []byte, s string, indent bool) []byte {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\n' && indent:
			b = append(b, "\n    "...)
		case r == '\t':
			b = append(b, '\t')
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == utf8.RuneError && size == 1, r < 0x20, r == 0x7f:
			b = fmt.Appendf(b, `\x%02x`, s[i])
		case r >= 0x80 && r <= 0x9f, r == 0x2028, r == 0x2029:
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

// warnLimiter logs each kind of warning about peers at most once per
// warnEvery, with the number suppressed since, so that a peer sending
// garbage cannot turn the log server's log into its amplifier.
type warnLimiter struct {
	mu    sync.Mutex
	kinds map[string]*warnState
}

type warnState struct {
	last       time.Time
	suppressed int
}

// Warn logs msg with args unless a warning of kind was logged within
// warnEvery.
func (w *warnLimiter) Warn(logger *slog.Logger, kind, msg string, args ...any) {
	now := time.Now()
	w.mu.Lock()
	if w.kinds == nil {
		w.kinds = map[string]*warnState{}
	}
	st := w.kinds[kind]
	if st == nil {
		st = &warnState{}
		w.kinds[kind] = st
	}
	if !st.last.IsZero() && now.Sub(st.last) < warnEvery {
		st.suppressed++
		w.mu.Unlock()
		return
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	w.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	logger.Warn(msg, args...)
}

// deliver hands one record to OnRecord and the Logger, and adds its line to
// the connection's batch. The record is counted once its line is written
// (see flush), so a caller that sees the count has also seen the output.
func (s *Server) deliver(batch *lineBatch, tag, ip string, rec *logframe.LogRecord) {
	if s.cfg.OnRecord != nil {
		s.cfg.OnRecord(tag, ip, rec)
	}
	ctx := context.Background()
	level := logframe.SlogLevel(rec.Levelno)
	logged := s.logger.Enabled(ctx, level)
	writes := s.cfg.Out != nil || s.cfg.NodeDir != nil
	if !logged && !writes {
		s.nRecords.Add(1)
		return
	}
	if batch.records > 0 && tag != batch.tag {
		s.flush(batch) // a batch goes to one node's file
	}
	start := len(batch.buf)
	if writes && s.cfg.ControllerHalf {
		batch.buf = appendControllerHalf(batch.buf, time.Now(), rec.Levelname)
	}
	worker := len(batch.buf)
	batch.buf = appendUnifiedLine(batch.buf, tag, ip, rec)
	if logged {
		s.logger.Log(ctx, level, string(batch.buf[worker:]))
	}
	if !writes {
		batch.buf = batch.buf[:start]
		s.nRecords.Add(1)
		return
	}
	batch.buf = append(batch.buf, '\n')
	batch.tag = tag
	batch.records++
}

// flush writes a connection's batch to Out and its node's file, then counts
// its records as delivered.
func (s *Server) flush(batch *lineBatch) {
	if batch.records == 0 {
		return
	}
	s.outMu.Lock()
	if s.cfg.Out != nil {
		if _, err := s.cfg.Out.Write(batch.buf); err != nil {
			s.warnIO("output", err)
		}
	}
	if s.cfg.NodeDir != nil {
		if f := s.nodeFile(batch.tag); f != nil {
			if _, err := f.Write(batch.buf); err != nil {
				s.warnIO(f.Name(), err)
			}
		}
	}
	s.outMu.Unlock()
	s.nRecords.Add(batch.records)
	batch.records = 0
	batch.buf = batch.buf[:0]
	if cap(batch.buf) > 4*maxBatch {
		batch.buf = nil // after a huge record, do not keep its memory for good
	}
}

// nodeFile returns the open log file of a node, opening it on first use; nil
// if it cannot be opened (logged once). Called with outMu held.
func (s *Server) nodeFile(tag string) *os.File {
	name := safeFileName(tag)
	dir := s.cfg.NodeDir(tag)
	if dir == "" {
		return nil
	}
	path := filepath.Join(dir, name+".log")
	if f, ok := s.files[path]; ok {
		return f
	}
	var f *os.File
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		f, err = openNodeFile(path)
	}
	if err != nil {
		s.warnIO(path, err)
		f = nil
	}
	s.files[path] = f
	return f
}

// openNodeFile opens a node's log file for appending, never through a
// symlink nor into a FIFO or device that someone else put there (the
// directory may be shared): the last element is not followed, and what is
// opened must be a regular file.
func openNodeFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symlink: not followed (remove it)", path)
		}
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s is not a regular file (remove it)", path)
		}
		return nil, err
	}
	return f, nil
}

func (s *Server) warnIO(sink string, err error) {
	if s.warnedIO[sink] {
		return
	}
	s.warnedIO[sink] = true
	s.logger.Warn("cluster: log server: cannot write log lines; further errors suppressed", "sink", sink, "err", err)
}

// safeFileName keeps a tag from naming a path outside its directory: only
// letters, digits, '.', '-' and '_' survive, and no name is only dots.
func safeFileName(tag string) string {
	b := []byte(tag)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	name := string(b)
	if strings.Trim(name, ".") == "" {
		name = strings.Repeat("_", max(len(name), 1))
	}
	return name
}
