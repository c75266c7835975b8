package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vtcluster/vtcluster/agent/logframe"
)

// ErrInvalidLogTarget is wrapped by Start's errors for a host or port that
// cannot be a log server; the core service reports it as a ValueError.
var ErrInvalidLogTarget = errors.New("invalid log server address")

// ErrStreamerClosed is returned by a LogStreamer after Close.
var ErrStreamerClosed = errors.New("agent: log streamer closed")

// dropLoggerName is the logger of the streamer's own "records dropped"
// warning, under avocado.service so that it reads like every forwarded record.
const dropLoggerName = "avocado.service.logstream"

// maxForwardMsg caps the message of a forwarded record. A receiver drops the
// connection on an oversize frame, which would lose the records behind it;
// service.log still gets the whole message.
const maxForwardMsg = 1 << 20

// LogStreamerConfig tunes a LogStreamer. Start from DefaultLogStreamerConfig.
type LogStreamerConfig struct {
	// ServiceLogPath is the file every record is appended to as a text line,
	// forwarded or not. Required; its directory is created if missing.
	ServiceLogPath string
	// Logger gets the streamer's own diagnostics (connects, losses). It must
	// not feed back into this streamer. Nil discards them.
	Logger *slog.Logger
	// BufferRecords is how many records may wait for the log server; when
	// full, the oldest is dropped. Must be at least 1.
	BufferRecords int
	// BufferBytes bounds the waiting records' encoded size in the same way.
	// Must be at least 1.
	BufferBytes int
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration
	// WriteTimeout bounds one write; a controller that stops reading for
	// this long is treated as gone and reconnected to.
	WriteTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between connection attempts,
	// doubling from the first to the second.
	MinBackoff, MaxBackoff time.Duration
	// FlushTimeout is how long Stop and Close keep sending what is queued.
	FlushTimeout time.Duration
}

// DefaultLogStreamerConfig returns the defaults for serviceLogPath.
func DefaultLogStreamerConfig(serviceLogPath string) LogStreamerConfig {
	return LogStreamerConfig{
		ServiceLogPath: serviceLogPath,
		BufferRecords:  10000,           // minutes of a busy agent
		BufferBytes:    32 << 20,        // bounds memory if records are large
		DialTimeout:    5 * time.Second, // upstream's socket timeout
		WriteTimeout:   5 * time.Second, // likewise
		MinBackoff:     100 * time.Millisecond,
		MaxBackoff:     5 * time.Second, // a restarted controller is found quickly
		FlushTimeout:   2 * time.Second, // stop_log_redirection is an RPC; keep it short
	}
}

// LogStreamer is the agent side of core.start_log_redirection: it writes
// every record to service.log and, while started, forwards it to the
// controller's log server over one TCP connection in avocado-vt's frame
// format. Logging never waits on the network: records queue in a bounded
// buffer that drops the oldest when full, and a single sender goroutine
// connects, reconnects with backoff and writes whole frames.
type LogStreamer struct {
	cfg    LogStreamerConfig
	logger *slog.Logger
	pid    int64

	ctlMu sync.Mutex // serialises Start, Stop and Close

	fileMu sync.Mutex
	file   *groupWriter // nil once closed

	mu         sync.Mutex
	queue      frameRing
	sess       *streamSession // nil while not forwarding
	closed     bool
	sent       uint64
	dropped    uint64
	unreported uint64 // drops not yet announced to the log server

	wake chan struct{} // the sender's doorbell; capacity 1
}

// streamSession is one Start: its target and its sender goroutine.
type streamSession struct {
	network string // "tcp", or "unix" for a socket the controller forwards
	addr    string
	ctx     context.Context // cancelled when the sender must quit at once
	cancel  context.CancelFunc
	stop    chan struct{} // closed when the sender should drain and quit
	done    chan struct{} // closed when the sender has quit
}

// NewLogStreamer returns a streamer with default settings writing to
// serviceLogPath; logger gets its own diagnostics (nil discards them).
func NewLogStreamer(serviceLogPath string, logger *slog.Logger) (*LogStreamer, error) {
	cfg := DefaultLogStreamerConfig(serviceLogPath)
	cfg.Logger = logger
	return NewLogStreamerWithConfig(cfg)
}

// NewLogStreamerWithConfig validates cfg and opens the service log.
func NewLogStreamerWithConfig(cfg LogStreamerConfig) (*LogStreamer, error) {
	switch {
	case cfg.ServiceLogPath == "":
		return nil, errors.New("agent: log streamer: service log path is empty")
	case cfg.BufferRecords < 1 || cfg.BufferBytes < 1:
		return nil, fmt.Errorf("agent: log streamer: buffer of %d records / %d bytes: both must be at least 1", cfg.BufferRecords, cfg.BufferBytes)
	case cfg.DialTimeout <= 0 || cfg.WriteTimeout <= 0 || cfg.FlushTimeout <= 0:
		return nil, errors.New("agent: log streamer: dial, write and flush timeouts must be positive")
	case cfg.MinBackoff <= 0 || cfg.MaxBackoff < cfg.MinBackoff:
		return nil, fmt.Errorf("agent: log streamer: backoff %v..%v: want 0 < min <= max", cfg.MinBackoff, cfg.MaxBackoff)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.ServiceLogPath), 0o755); err != nil {
		return nil, fmt.Errorf("agent: log streamer: %w", err)
	}
	f, err := OpenRotatingFile(cfg.ServiceLogPath, LogMaxBytes, LogGenerations)
	if err != nil {
		return nil, fmt.Errorf("agent: log streamer: %w", err)
	}
	return &LogStreamer{
		cfg:    cfg,
		logger: cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		pid:    int64(os.Getpid()),
		file:   newGroupWriter(f, logBufferBytes),
		queue:  frameRing{buf: make([][]byte, cfg.BufferRecords)},
		wake:   make(chan struct{}, 1),
	}, nil
}

// ServiceLogPath returns the file every record is written to.
func (s *LogStreamer) ServiceLogPath() string { return s.cfg.ServiceLogPath }

// ValidateLogTarget checks a host and port given by a caller of
// start_log_redirection. The host may be a name or an address; characters a
// shell would act on are refused so that the value is safe wherever it ends
// up. Errors wrap ErrInvalidLogTarget.
func ValidateLogTarget(host string, port int) error {
	if host == "" || strings.ContainsAny(host, ";&|`$ \t\r\n\x00'\"\\<>()") {
		return fmt.Errorf("agent: log redirection: host %q: %w: want a host name or IP address", host, ErrInvalidLogTarget)
	}
	if port < 1 || port > 65535 {
		return fmt.Errorf("agent: log redirection: port %d: %w: want 1..65535", port, ErrInvalidLogTarget)
	}
	return nil
}

// Start forwards records to host:port from now on. It does not wait for the
// connection: records queue until it is up. Calling Start again replaces the
// previous target; its connection is closed and the records still queued go
// to the new one. ctx only needs to live for the call.
//
// Errors wrap ErrInvalidLogTarget, or are ErrStreamerClosed.
func (s *LogStreamer) Start(ctx context.Context, host string, port int) error {
	if err := ValidateLogTarget(host, port); err != nil {
		return err
	}
	return s.start(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
}

// maxUnixPath is the longest path a Unix socket address holds on Linux.
const maxUnixPath = 107

// StartUnix is Start for a log server reached through the Unix socket at
// path: the controller's SSH remote forward in the agent's own 0700
// directory, which no other user of the node can connect to, so records
// reach the controller's log server only from this agent.
//
// Errors wrap ErrInvalidLogTarget, or are ErrStreamerClosed.
func (s *LogStreamer) StartUnix(ctx context.Context, path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || len(path) > maxUnixPath || strings.ContainsRune(path, 0) {
		return fmt.Errorf("agent: log redirection: socket %q: %w: want a clean absolute path of at most %d bytes", path, ErrInvalidLogTarget, maxUnixPath)
	}
	return s.start(ctx, "unix", path)
}

func (s *LogStreamer) start(ctx context.Context, network, addr string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("agent: log redirection: %w", err)
	}
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()

	// The sender outlives the RPC that started it.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sess := &streamSession{
		network: network,
		addr:    addr,
		ctx:     sctx,
		cancel:  cancel,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return ErrStreamerClosed
	}
	old := s.sess
	s.sess = sess // from here on records queue for the new target
	s.mu.Unlock()

	if old != nil {
		old.cancel()
		<-old.done
	}
	go s.run(sess)
	return nil
}

// Stop ends forwarding: it sends what is queued for up to FlushTimeout,
// closes the connection, and counts what is left as dropped. Records logged
// afterwards only go to service.log. Stop without Start does nothing.
func (s *LogStreamer) Stop() error {
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	s.stopLocked()
	return nil
}

func (s *LogStreamer) stopLocked() {
	s.mu.Lock()
	sess := s.sess
	s.sess = nil
	s.mu.Unlock()
	if sess == nil {
		return
	}
	close(sess.stop)
	timer := time.AfterFunc(s.cfg.FlushTimeout, sess.cancel)
	<-sess.done
	timer.Stop()
	sess.cancel()

	s.mu.Lock()
	left := uint64(s.queue.n)
	s.queue.clear()
	s.dropped += left
	s.unreported = 0
	s.mu.Unlock()
	if left > 0 {
		s.logger.Warn("agent: log redirection stopped with records undelivered", "addr", sess.addr, "dropped", left)
	}
}

// Close stops forwarding (flushing as Stop does) and closes service.log.
// Later records are discarded. Close is idempotent.
func (s *LogStreamer) Close() error {
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	s.stopLocked()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()

	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	s.file = nil
	if err != nil {
		return fmt.Errorf("agent: log streamer: %w", err)
	}
	return nil
}

// Flush waits until every record logged before it is in service.log.
func (s *LogStreamer) Flush() {
	s.fileMu.Lock()
	f := s.file
	s.fileMu.Unlock()
	if f != nil {
		f.Flush()
	}
}

// Stats returns how many records were written to a log server and how many
// were dropped (buffer full, or still queued when forwarding stopped).
func (s *LogStreamer) Stats() (sent, dropped uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.dropped
}

// Handler returns a slog.Handler whose records are logged under loggerName
// (for example "avocado.service.process"). Attributes are appended to the
// message as key=value; an "err" attribute holding a []string is taken as
// traceback lines and sent as exc_info.
func (s *LogStreamer) Handler(loggerName string) slog.Handler {
	return &streamHandler{s: s, name: loggerName}
}

// emit writes one record to service.log and, while forwarding, queues it.
func (s *LogStreamer) emit(rec *logframe.LogRecord) error {
	line := serviceLogLine(rec)
	s.fileMu.Lock()
	if s.file == nil {
		s.fileMu.Unlock()
		return ErrStreamerClosed
	}
	_, werr := s.file.WriteString(line)
	s.fileMu.Unlock()

	s.mu.Lock()
	forwarding := s.sess != nil
	s.mu.Unlock()
	if forwarding {
		if f := forwardFrame(rec); f != nil {
			s.enqueue(f)
		}
	}
	if werr != nil {
		return fmt.Errorf("agent: log streamer: %w", werr)
	}
	return nil
}

func (s *LogStreamer) enqueue(frame []byte) {
	s.mu.Lock()
	if s.sess == nil { // stopped while the frame was being encoded
		s.mu.Unlock()
		return
	}
	for s.queue.n > 0 && (s.queue.n >= len(s.queue.buf) || s.queue.bytes+len(frame) > s.cfg.BufferBytes) {
		s.queue.popFront()
		s.dropped++
		s.unreported++
	}
	s.queue.pushBack(frame)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// batch is what the sender writes in one go: whole frames, back to back.
type batch struct {
	buf     []byte
	frames  [][]byte // the queued frames in buf, after the warning if any
	warnLen int      // length of the leading "dropped" warning frame, 0 if none
	warnFor uint64   // the drops that warning announces
}

const maxBatchBytes = 256 << 10

// take moves queued frames into a batch, led by a warning if records were
// dropped since the last one the server received.
func (s *LogStreamer) take(b *batch) {
	b.buf, b.frames, b.warnLen, b.warnFor = b.buf[:0], b.frames[:0], 0, 0
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queue.n == 0 && s.unreported == 0 {
		return
	}
	if s.unreported > 0 {
		b.warnFor = s.unreported
		s.unreported = 0
		var pcs [1]uintptr
		runtime.Callers(1, pcs[:])
		warn := s.newRecord(dropLoggerName, slog.LevelWarn, time.Now(), pcs[0], fmt.Sprintf("%d log records dropped", b.warnFor))
		b.buf = logframe.AppendFrame(b.buf, warn)
		b.warnLen = len(b.buf)
	}
	for s.queue.n > 0 && (len(b.frames) == 0 || len(b.buf)+len(s.queue.front()) <= maxBatchBytes) {
		f := s.queue.popFront()
		b.buf = append(b.buf, f...)
		b.frames = append(b.frames, f)
	}
}

// settle accounts for a batch of which the first n bytes were written: those
// frames are sent, the rest go back to the front of the queue in order.
func (s *LogStreamer) settle(b *batch, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.warnLen > 0 && n < b.warnLen {
		s.unreported += b.warnFor
	}
	off := b.warnLen
	i := 0
	for ; i < len(b.frames) && off+len(b.frames[i]) <= n; i++ {
		off += len(b.frames[i])
		s.sent++
	}
	for j := len(b.frames) - 1; j >= i; j-- {
		if s.queue.n >= len(s.queue.buf) {
			// Newer records filled the buffer meanwhile; this one is the oldest.
			s.dropped++
			s.unreported++
			continue
		}
		s.queue.pushFront(b.frames[j])
	}
}

// run is a session's sender: connect, write batches, reconnect with backoff,
// until cancelled, or until stopped and the queue is drained.
func (s *LogStreamer) run(sess *streamSession) {
	defer close(sess.done)
	log := s.logger.With("addr", sess.addr)
	dialer := net.Dialer{Timeout: s.cfg.DialTimeout}
	backoff := s.cfg.MinBackoff
	var b batch
	var down time.Time // start of the current outage; zero while connected
	for {
		conn, err := dialer.DialContext(sess.ctx, sess.network, sess.addr)
		if err != nil {
			if sess.ctx.Err() != nil {
				return
			}
			if down.IsZero() {
				down = time.Now()
				log.Warn("agent: log server unreachable, records are queued", "err", err)
			}
			select {
			case <-sess.stop:
				return // not worth waiting for a server that is gone
			case <-sess.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.cfg.MaxBackoff)
			continue
		}
		if !down.IsZero() {
			log.Info("agent: log server reachable again", "duration_seconds", time.Since(down).Seconds())
			down = time.Time{}
		}
		backoff = s.cfg.MinBackoff
		werr := s.serveConn(sess, conn, &b)
		if werr == nil || sess.ctx.Err() != nil {
			return
		}
		down = time.Now()
		log.Warn("agent: log server connection lost, reconnecting", "err", werr)
	}
}

// errPeerClosed reports that the log server closed the connection.
var errPeerClosed = errors.New("connection closed by the log server")

// serveConn writes batches on conn until the session ends (nil) or the
// connection fails (the error). It always closes conn.
func (s *LogStreamer) serveConn(sess *streamSession, conn net.Conn, b *batch) error {
	// The server never writes; a read returning means it hung up, which we
	// want to know before writing records into a dead socket.
	hungUp := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, conn)
		close(hungUp)
	}()
	// Cancelling the session interrupts a blocked write at once.
	stopAbort := context.AfterFunc(sess.ctx, func() { _ = conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer func() {
		stopAbort()
		_ = conn.Close()
		<-hungUp
	}()
	stopping := false
	for {
		s.take(b)
		if len(b.buf) == 0 {
			if stopping {
				return nil
			}
			select {
			case <-s.wake:
			case <-sess.stop:
				stopping = true
			case <-hungUp:
				return errPeerClosed
			case <-sess.ctx.Done():
				return nil
			}
			continue
		}
		_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		n, err := conn.Write(b.buf)
		s.settle(b, n)
		if err != nil {
			return err
		}
	}
}

// newRecord builds a record the way Python's logging would for a call at pc.
func (s *LogStreamer) newRecord(name string, level slog.Level, t time.Time, pc uintptr, msg string) *logframe.LogRecord {
	if t.IsZero() {
		t = time.Now()
	}
	levelno, levelname := logframe.PyLevel(level)
	rec := &logframe.LogRecord{
		Name:      name,
		Levelno:   levelno,
		Levelname: levelname,
		// Python's findCaller defaults when the caller is unknown.
		Pathname:   "(unknown file)",
		Filename:   "(unknown file)",
		Module:     "(unknown file)",
		FuncName:   "(unknown function)",
		Created:    float64(t.UnixNano()) / 1e9,
		Asctime:    logframe.FormatAsctime(t),
		Thread:     s.pid, // a Go program has no Python thread ident; its main thread's id is the pid
		ThreadName: "MainThread",
		Process:    s.pid,
		Msg:        msg,
	}
	if pc != 0 {
		frame, _ := runtime.CallersFrames([]uintptr{pc}).Next()
		if frame.File != "" {
			rec.Pathname = frame.File
			rec.Filename = filepath.Base(frame.File)
			rec.Module = strings.TrimSuffix(rec.Filename, filepath.Ext(rec.Filename))
			rec.Lineno = frame.Line
		}
		if frame.Function != "" {
			rec.FuncName = shortFuncName(frame.Function)
		}
	}
	return rec
}

// shortFuncName drops the package path from a Go function name, as Python's
// funcName holds no module: "example.com/x/agent.(*T).m" → "(*T).m".
func shortFuncName(fn string) string {
	if i := strings.LastIndexByte(fn, '/'); i >= 0 {
		fn = fn[i+1:]
	}
	if i := strings.IndexByte(fn, '.'); i >= 0 {
		fn = fn[i+1:]
	}
	return fn
}

// serviceLogLine formats rec as avocado-vt's agent format
// "%(asctime)s %(name)s %(levelname)-5.5s| %(message)s", with the traceback
// and stack on the following lines as Python's Formatter adds them.
func serviceLogLine(rec *logframe.LogRecord) string {
	var sb strings.Builder
	level := rec.Levelname
	if utf8.RuneCountInString(level) > 5 {
		level = string([]rune(level)[:5])
	}
	sb.Grow(len(rec.Asctime) + len(rec.Name) + len(rec.Msg) + 16)
	sb.WriteString(rec.Asctime)
	sb.WriteByte(' ')
	sb.WriteString(rec.Name)
	sb.WriteByte(' ')
	sb.WriteString(level)
	for i := utf8.RuneCountInString(level); i < 5; i++ {
		sb.WriteByte(' ')
	}
	sb.WriteString("| ")
	sb.WriteString(rec.Msg)
	for _, extra := range []string{strings.TrimSuffix(strings.Join(rec.ExcInfo, ""), "\n"), rec.StackInfo} {
		if extra == "" {
			continue
		}
		if !strings.HasSuffix(sb.String(), "\n") {
			sb.WriteByte('\n')
		}
		sb.WriteString(extra)
	}
	sb.WriteByte('\n')
	return sb.String()
}

// forwardFrame encodes rec as a frame whose body is at most
// MaxForwardFrame bytes, cutting the message, traceback and stack (halving
// their allowance until it fits) rather than losing the record; nil only if
// even the bare record is too large.
func forwardFrame(rec *logframe.LogRecord) []byte {
	frame := logframe.AppendFrame(nil, rec)
	if len(frame)-4 <= logframe.MaxForwardFrame && len(rec.Msg) <= maxForwardMsg {
		return frame
	}
	for limit := maxForwardMsg; ; limit /= 2 {
		cut := *rec
		cut.Msg = truncateField(rec.Msg, limit)
		cut.StackInfo = truncateField(rec.StackInfo, limit)
		if len(rec.ExcInfo) > 0 {
			cut.ExcInfo = []string{truncateField(strings.Join(rec.ExcInfo, ""), limit)}
		}
		if limit < maxForwardMsg {
			cut.Extra = nil
		}
		frame = logframe.AppendFrame(frame[:0], &cut)
		if len(frame)-4 <= logframe.MaxForwardFrame {
			return frame
		}
		if limit == 0 {
			return nil
		}
	}
}

// truncateField cuts s to at most n bytes on a rune boundary and says how
// much went.
func truncateField(s string, n int) string {
	if len(s) <= n {
		return s
	}
	t := truncateUTF8(s, n)
	return t + fmt.Sprintf(" [%d bytes truncated]", len(s)-len(t))
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// frameRing is a fixed-capacity FIFO of encoded frames.
type frameRing struct {
	buf   [][]byte
	head  int
	n     int
	bytes int
}

func (r *frameRing) front() []byte { return r.buf[r.head] }

func (r *frameRing) pushBack(f []byte) {
	r.buf[(r.head+r.n)%len(r.buf)] = f
	r.n++
	r.bytes += len(f)
}

func (r *frameRing) pushFront(f []byte) {
	r.head = (r.head - 1 + len(r.buf)) % len(r.buf)
	r.buf[r.head] = f
	r.n++
	r.bytes += len(f)
}

func (r *frameRing) popFront() []byte {
	f := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.bytes -= len(f)
	return f
}

func (r *frameRing) clear() {
	for r.n > 0 {
		r.popFront()
	}
	r.head = 0
}

// streamHandler is the slog.Handler side of a LogStreamer.
type streamHandler struct {
	s      *LogStreamer
	name   string
	group  string   // open groups, "a.b." for keys
	attrs  []byte   // attributes from WithAttrs, already formatted
	excTrc []string // traceback from a WithAttrs "err" attribute
}

func (h *streamHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelDebug
}

func (h *streamHandler) Handle(_ context.Context, r slog.Record) error {
	msg := make([]byte, 0, len(r.Message)+len(h.attrs)+64)
	msg = append(msg, r.Message...)
	msg = append(msg, h.attrs...)
	exc := h.excTrc
	r.Attrs(func(a slog.Attr) bool {
		msg = appendAttr(msg, &exc, h.group, a)
		return true
	})
	rec := h.s.newRecord(h.name, r.Level, r.Time, r.PC, string(msg))
	if exc != nil {
		rec.ExcInfo = exc
	}
	return h.s.emit(rec)
}

func (h *streamHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	h2 := *h
	h2.attrs = append([]byte(nil), h.attrs...)
	for _, a := range as {
		h2.attrs = appendAttr(h2.attrs, &h2.excTrc, h.group, a)
	}
	return &h2
}

func (h *streamHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group = h.group + name + "."
	return &h2
}

// appendAttr appends " key=value" to msg; an "err" attribute holding traceback
// lines goes to *exc instead.
func appendAttr(msg []byte, exc *[]string, group string, a slog.Attr) []byte {
	v := a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return msg
	}
	if v.Kind() == slog.KindGroup {
		prefix := group
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, ga := range v.Group() {
			msg = appendAttr(msg, exc, prefix, ga)
		}
		return msg
	}
	if lines, ok := v.Any().([]string); ok && a.Key == "err" && group == "" {
		*exc = make([]string, len(lines))
		for i, l := range lines {
			if !strings.HasSuffix(l, "\n") {
				l += "\n"
			}
			(*exc)[i] = l
		}
		return msg
	}
	var s string
	switch v.Kind() {
	case slog.KindString:
		s = v.String()
	case slog.KindTime:
		s = v.Time().Format(time.RFC3339Nano)
	default:
		s = fmt.Sprint(v.Any())
	}
	msg = append(msg, ' ')
	msg = append(msg, group...)
	msg = append(msg, a.Key...)
	msg = append(msg, '=')
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '"' || r == '=' || r == 0x7f }) {
		return strconv.AppendQuote(msg, s)
	}
	return append(msg, s...)
}
