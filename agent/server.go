package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// Addr is the host:port to listen on. Port 0 picks a free port.
	// Ignored when SocketPath is set.
	Addr string
	// SocketPath, when set, makes the server listen on this Unix socket
	// instead of TCP. Its directory must be mode 0700 and owned by this
	// uid, and only peers running as this uid or root are served.
	SocketPath string
	// Token must be presented as the password of HTTP Basic auth (any user
	// name), so Python's ServerProxy("http://vtc:TOKEN@h:p/") works
	// unchanged. It is required on TCP, loopback included: loopback is
	// open to every local user. On a Unix socket the peer's uid is the
	// credential and a token is optional.
	Token string
	// AllowedHosts are extra names (or addresses) a request's Host header
	// may carry besides loopback, the bind address (every local address
	// when bound to 0.0.0.0 or ::) and the host name. A Unix socket
	// accepts loopback names only.
	AllowedHosts []string
	// MaxRequestBytes bounds a request body, after gzip decoding.
	MaxRequestBytes int64
	// MaxHeaderBytes bounds request headers, which are read before the
	// token is checked; XML-RPC clients send well under 1 KiB.
	MaxHeaderBytes int
	// MaxConns bounds open connections: three quarters of it may be
	// unauthenticated (Accept waits for a free slot), and connections
	// that authenticated have MaxConns slots of their own, so no one
	// without the token can take those. MaxConnsPerIP bounds the
	// unauthenticated ones from one address, loopback as one address
	// (the oldest is closed for a new one), so that one client, a local
	// user included, cannot take them all. Unix-socket peers (this uid
	// only) have no per-address cap.
	MaxConns      int
	MaxConnsPerIP int
	// MinBodyRate is the slowest a request body may arrive, in bytes per
	// second, after a grace of ReadHeaderTimeout; a client that dribbles
	// its body is cut off instead of holding a connection forever.
	MinBodyRate int64
	// MaxValues and MaxStringBytes bound what decoding one call may build
	// (see CallLimits).
	MaxValues      int
	MaxStringBytes int
	// MaxLargeCalls calls with a body over LargeCallBytes (or of unknown
	// length) are read and decoded at a time; others wait their turn, so
	// concurrent big calls cannot multiply the agent's peak memory. Below
	// LargeCallBytes, MaxConns bounds the total: a body and its decoded
	// values take about five times its size at most.
	MaxLargeCalls  int
	LargeCallBytes int64
	// ReadHeaderTimeout bounds reading request headers (slowloris).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long; Python's
	// client silently retries once on a closed keep-alive connection.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful part of the shutdown that Serve
	// performs when its context ends.
	ShutdownTimeout time.Duration
	// GzipThreshold is the reply size above which a reply is gzipped for
	// clients that accept it; Python's server uses 1400. Negative disables.
	GzipThreshold int
	// ListMethods registers system.listMethods. Upstream has no
	// introspection; ours is harmless and helps "vtcluster call".
	ListMethods bool
	// Logger receives one Debug record per call and server events; nil
	// discards.
	Logger *slog.Logger
}

// DefaultConfig returns the settings the agent daemon uses.
func DefaultConfig() Config {
	return Config{
		// Upstream's default, and loopback keeps the agent off the network.
		Addr: "127.0.0.1:9999",
		// Far above any real call (process.run's stdin, job state), and
		// small enough that a decoded call stays within tens of MiB.
		MaxRequestBytes: 16 << 20,
		MaxHeaderBytes:  16 << 10,
		// A controller keeps a handful of connections per node; a test body
		// a few more.
		MaxConns:      256,
		MaxConnsPerIP: 32,
		// 16 KiB/s is far below any link a controller uses; a 16 MiB body
		// then gets about 17 minutes.
		MinBodyRate: 16 << 10,
		// About 40 MiB of decoded values at worst, and far more than any
		// real call holds.
		MaxValues:      1 << 18,
		MaxStringBytes: 16 << 20,
		// Real calls are well under 64 KiB; larger ones (job state,
		// stdin) take turns. Worst cases: 256 connections × 64 KiB × 5,
		// plus 2 × (16 MiB + MaxValues decoded), about 180 MiB.
		MaxLargeCalls:  2,
		LargeCallBytes: 64 << 10,
		// Long enough for a slow link through an SSH tunnel.
		ReadHeaderTimeout: 10 * time.Second,
		// Python's client keeps one connection per proxy and reconnects
		// transparently, so a modest timeout costs nothing.
		IdleTimeout: 60 * time.Second,
		// Calls in flight get this long to finish on SIGTERM or core.quit.
		ShutdownTimeout: 10 * time.Second,
		// CPython's SimpleXMLRPCRequestHandler.encode_threshold.
		GzipThreshold: 1400,
		ListMethods:   true,
	}
}

// ErrNoToken is returned by New for a TCP address without a token.
var ErrNoToken = errors.New("a TCP listener needs a token")

// Server is the agent's XML-RPC server. Build it with New, register the
// services, then Listen and Serve; so no call can reach a method before
// its service is registered.
type Server struct {
	cfg     Config
	log     *slog.Logger
	reg     *Registry
	httpSrv *http.Server
	tokenH  [32]byte
	limits  xmlrpc.CallLimits // built once: a closure per call was garbage
	hosts   *hostPolicy
	large   chan struct{} // slots for calls with large bodies
	authT   authThrottle
	warn401 warnLimiter
	warnRef warnLimiter // refused connections and requests
	warnOwn warnLimiter // local connections of an unknown owner

	baseCtx    context.Context
	cancelBase context.CancelFunc

	svcLogs sync.Map // service name → *slog.Logger

	mu       sync.Mutex
	ln       net.Listener
	serving  bool
	shutdown bool
	abort    context.CancelFunc // ends the running Shutdown's grace; set with shutdown
	done     chan struct{}      // closed once Shutdown has finished
	shutErr  error
}

// New validates cfg and returns a server that is not yet listening.
func New(cfg Config) (*Server, error) {
	var host string
	if cfg.SocketPath == "" {
		if cfg.Addr == "" {
			return nil, errors.New("agent: config: Addr is empty (expected host:port)")
		}
		h, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("agent: config: Addr %q: %w", cfg.Addr, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("agent: config: Addr %q: port must be 0..65535", cfg.Addr)
		}
		if cfg.Token == "" {
			return nil, fmt.Errorf("agent: config: listening on %s: %w; every local user (and, off loopback, the network) could run commands as this user; set Token or SocketPath", cfg.Addr, ErrNoToken)
		}
		host = h
	}
	if cfg.MaxRequestBytes <= 0 {
		return nil, fmt.Errorf("agent: config: MaxRequestBytes must be positive, got %d", cfg.MaxRequestBytes)
	}
	if cfg.ReadHeaderTimeout <= 0 || cfg.IdleTimeout <= 0 || cfg.ShutdownTimeout <= 0 {
		return nil, errors.New("agent: config: ReadHeaderTimeout, IdleTimeout and ShutdownTimeout must be positive")
	}
	if cfg.MaxHeaderBytes <= 0 || cfg.MaxConns <= 0 || cfg.MaxConnsPerIP < 0 || cfg.MinBodyRate <= 0 ||
		cfg.MaxValues < 0 || cfg.MaxStringBytes < 0 || cfg.MaxLargeCalls <= 0 || cfg.LargeCallBytes <= 0 {
		return nil, errors.New("agent: config: MaxHeaderBytes, MaxConns, MinBodyRate, MaxLargeCalls and LargeCallBytes must be positive; MaxConnsPerIP, MaxValues and MaxStringBytes not negative")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		log:     logger,
		reg:     NewRegistry(),
		done:    make(chan struct{}),
		hosts:   newHostPolicy(host, cfg.SocketPath != "", cfg.AllowedHosts),
		large:   make(chan struct{}, cfg.MaxLargeCalls),
		warn401: warnLimiter{every: 10 * time.Second},
		warnRef: warnLimiter{every: 10 * time.Second},
		warnOwn: warnLimiter{every: 10 * time.Second},
	}
	if cfg.Token != "" {
		s.tokenH = sha256.Sum256([]byte(cfg.Token))
	}
	s.limits = xmlrpc.CallLimits{
		MaxValues:      cfg.MaxValues,
		MaxStringBytes: cfg.MaxStringBytes,
		Known: func(name string) bool {
			_, ok := s.reg.Lookup(name)
			return ok
		},
	}
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	s.httpSrv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	if cfg.ListMethods {
		if err := s.reg.Register(systemService{s.reg}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// IsLoopbackHost reports whether host (an IP or name, without port) only
// reaches this machine.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Registry returns the method table, for callers that register aliases.
// It must not be changed once Listen was called: the server reads it
// without a lock.
func (s *Server) Registry() *Registry { return s.reg }

// Register adds every method of svc; a name registered twice, or a
// registration once the server listens, is an error.
func (s *Server) Register(svc Service) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil || s.serving || s.shutdown {
		return fmt.Errorf("agent: cannot register service %q: the server is already listening", svc.Name())
	}
	return s.reg.Register(svc)
}

// RegisterAs adds every method of svc under another prefix, for aliases
// such as upstream's "agent.services.core", with Register's checks.
func (s *Server) RegisterAs(prefix string, svc Service) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil || s.serving || s.shutdown {
		return fmt.Errorf("agent: cannot register service %q as %q: the server is already listening", svc.Name(), prefix)
	}
	return s.reg.RegisterAs(prefix, svc)
}

// Listen binds the configured address or Unix socket. It is separate from
// Serve so that a caller can report a failed bind before anything else
// happens and write its pid file only once the port is held. Errors wrap
// the net.OpError, so errors.Is(err, syscall.EADDRINUSE) works, and a
// socket directory that is not private is a *SocketDirError.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return errors.New("agent: server is shut down")
	}
	if s.ln != nil {
		return errors.New("agent: already listening")
	}
	var check func(net.Conn) error
	var ln net.Listener
	var err error
	if s.cfg.SocketPath != "" {
		ln, err = listenUnix(s.cfg.SocketPath)
		if err != nil {
			return fmt.Errorf("agent: listen on %s: %w", s.cfg.SocketPath, err)
		}
		check = checkPeerUID
	} else {
		ln, err = net.Listen("tcp", s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("agent: listen on %s: %w", s.cfg.Addr, err)
		}
	}
	gl := newGuardedListener(ln, max(1, s.cfg.MaxConns*3/4), s.cfg.MaxConns, s.cfg.MaxConnsPerIP, check, s.refusedConn)
	gl.unowned = s.unownedConn
	s.ln = gl
	s.httpSrv.ConnContext = withConn
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve answers calls until ctx ends or Shutdown is called, listening
// first if Listen was not called. When ctx ends, calls in flight get
// Config.ShutdownTimeout to finish. It returns nil after a shutdown.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return errors.New("agent: Serve called twice")
	}
	s.mu.Unlock()
	if s.Addr() == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		return nil
	}
	s.serving = true
	ln := s.ln
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		_ = s.Shutdown(sctx)
	})
	defer stop()
	s.log.Info("agent: serving", "addr", ln.Addr().String(), "methods", len(s.reg.Names()))
	err := s.httpSrv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-s.done
		return nil
	}
	return fmt.Errorf("agent: serve: %w", err)
}

// Shutdown stops accepting calls and waits for calls in flight until ctx
// ends; then it cancels their contexts and closes every connection. It is
// safe to call more than once and from several goroutines; later calls
// wait for the first and return its result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		select {
		case <-s.done:
			return s.shutErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.shutdown = true
	// Close ends the grace early through abort.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.abort = cancel
	ln, serving := s.ln, s.serving
	s.mu.Unlock()

	var err error
	if serving {
		err = s.httpSrv.Shutdown(ctx)
		if err != nil {
			// Calls did not finish in time: cancel them and drop the
			// connections rather than hang the process.
			s.cancelBase()
			_ = s.httpSrv.Close()
			err = fmt.Errorf("agent: shutdown: calls still running, connections closed: %w", err)
		}
	} else if ln != nil {
		// Listened but never served: the listener is ours to close.
		_ = ln.Close()
	}
	s.cancelBase()
	s.shutErr = err
	close(s.done)
	return err
}

// Close stops the server at once: calls in flight are cancelled and every
// connection is closed, also when a graceful Shutdown is already waiting
// for them. It returns once the server is down.
func (s *Server) Close() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Shutdown(ctx) // no grace, or at once if a shutdown is under way
	s.mu.Lock()
	abort := s.abort
	s.mu.Unlock()
	abort()
	<-s.done
}

// shutdownErr is the first Shutdown's result; call it only once Serve or
// Shutdown has returned.
func (s *Server) shutdownErr() error { return s.shutErr }

// refusedConn logs refused connections, at most once per interval.
func (s *Server) refusedConn(reason string, err error) {
	if ok, n := s.warnRef.allow(time.Now()); ok {
		s.log.Warn("agent: connection refused: "+reason, "err", err, "suppressed_since_last", n)
	}
}

// unownedConn logs, at most once per interval, that a local connection
// was counted under its address alone, its owner unknown.
func (s *Server) unownedConn(n uint64, err error) {
	if ok, _ := s.warnOwn.allow(time.Now()); ok {
		s.log.Warn("agent: owner of a local connection unknown; counted with the others of its address", "err", err, "unknown_since_start", n)
	}
}

// refuse answers without reading the body and closes the connection, so
// a client that announced a body cannot hold the connection by sending it
// slowly. Connection: close alone is not enough: after the handler Go
// still discards up to 256 KiB of unread body, with no deadline; a read
// deadline in the past ends that discard at once.
func refuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Connection", "close")
	http.Error(w, msg, status)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// ServeHTTP implements the XML-RPC endpoint with the HTTP semantics of
// Python's SimpleXMLRPCRequestHandler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Browsers add these to every cross-site request and XML-RPC clients
	// never send them: a page must not drive the agent (CSRF).
	if r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Sec-Fetch-Mode") != "" || r.Header.Get("Sec-Fetch-Dest") != "" {
		s.refusedRequest(r, "browser request (Origin or Sec-Fetch-* header)")
		refuse(w, http.StatusForbidden, "403 forbidden: requests from web browsers are refused")
		return
	}
	// A DNS-rebinding page reaches us under its own name.
	if !s.hosts.allowed(r.Host) {
		s.refusedRequest(r, "Host header names neither this agent's addresses nor its names (add a name callers use with --allow-host)")
		refuse(w, http.StatusForbidden, fmt.Sprintf("403 forbidden: Host %q is not an address or name of this agent; a name callers use must be given to the agent with --allow-host", truncateField(r.Host, 80)))
		return
	}
	if s.cfg.Token != "" {
		if !s.authorized(r) {
			if d := s.authT.fail(remoteKey(remoteAddr(r)), time.Now()); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-r.Context().Done():
				}
				t.Stop()
			}
			if ok, n := s.warn401.allow(time.Now()); ok {
				s.log.Warn("agent: request without a valid token", "addr", r.RemoteAddr, "suppressed_since_last", n)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="vtcluster-agent"`)
			refuse(w, http.StatusUnauthorized, "401 unauthorized: this agent requires its token as the HTTP Basic auth password")
			return
		}
		// A success does not clear the address's failures: a guesser
		// sharing an address with a real client (loopback, NAT) would
		// have its count reset by every real call.
	}
	if !Admit(r) {
		refuse(w, http.StatusServiceUnavailable, "503 service unavailable: every connection slot of this agent is in use; retry later")
		return
	}
	if r.Method != http.MethodPost {
		// BaseHTTPRequestHandler answers unknown verbs with 501.
		refuse(w, http.StatusNotImplemented, fmt.Sprintf("Unsupported method (%q)", r.Method))
		return
	}
	if r.URL.Path != "/" && r.URL.Path != "/RPC2" {
		refuse(w, http.StatusNotFound, "No such page")
		return
	}
	if r.ContentLength > s.cfg.MaxRequestBytes {
		refuse(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", s.cfg.MaxRequestBytes))
		return
	}
	call, status, err := s.readCall(w, r)
	if err != nil {
		s.log.Debug("agent: bad request body", "addr", r.RemoteAddr, "err", err)
		refuse(w, status, err.Error())
		return
	}
	reply := s.dispatch(r.Context(), call)
	h := w.Header()
	h["Content-Type"] = textXML
	if s.cfg.GzipThreshold >= 0 && len(reply) > s.cfg.GzipThreshold && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		var zb bytes.Buffer
		zw := gzipWriters.Get().(*gzip.Writer)
		zw.Reset(&zb)
		_, _ = zw.Write(reply)
		if zw.Close() == nil {
			w.Header().Set("Content-Encoding", "gzip")
			reply = zb.Bytes()
		}
		zw.Reset(io.Discard) // let go of zb
		gzipWriters.Put(zw)
	}
	h["Content-Length"] = []string{strconv.Itoa(len(reply))}
	_, _ = w.Write(reply)
}

// textXML is every reply's Content-Type, one slice for all of them:
// net/http only reads it.
var textXML = []string{"text/xml"}

func (s *Server) refusedRequest(r *http.Request, reason string) {
	if ok, n := s.warnRef.allow(time.Now()); ok {
		s.log.Warn("agent: request refused: "+reason, "addr", r.RemoteAddr, "host", truncateField(r.Host, 80), "suppressed_since_last", n)
	}
}

// remoteAddr is the peer's address from the request's connection.
func remoteAddr(r *http.Request) net.Addr {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && a.Network() == "unix" {
		return nil
	}
	if ap, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
		return ap
	}
	return nil
}

// decoded carries a decoded call, or how decoding failed.
type decoded struct {
	method string
	params []any
	err    error
}

// readCall reads and decodes the body. Large bodies take one of
// MaxLargeCalls slots for reading and decoding, the part whose memory
// grows with the body; the call itself runs outside it. The body must
// arrive at MinBodyRate at least.
func (s *Server) readCall(w http.ResponseWriter, r *http.Request) (decoded, int, error) {
	if r.ContentLength < 0 || r.ContentLength > s.cfg.LargeCallBytes || r.Header.Get("Content-Encoding") != "" {
		select {
		case s.large <- struct{}{}:
			defer func() { <-s.large }()
		case <-r.Context().Done():
			return decoded{}, http.StatusServiceUnavailable, r.Context().Err()
		}
	}
	expect := r.ContentLength
	if expect < 0 {
		expect = s.cfg.MaxRequestBytes
	}
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(s.cfg.ReadHeaderTimeout + time.Duration(expect/s.cfg.MinBodyRate)*time.Second)
	_ = rc.SetReadDeadline(deadline)
	body, status, err := s.readBody(w, r)
	if err != nil {
		return decoded{}, status, err
	}
	// The call may outlast the deadline; Go's server then reads the
	// connection only to notice a client that went away. A body read to
	// its Content-Length has ended that deadline already: net/http clears
	// it when the body reaches its end, before it starts that read
	// (TestServer_longCallOutlivesBodyDeadline). Others may have stopped
	// short of the end (gzip, chunked), so clear it here.
	if r.ContentLength <= 0 || r.Header.Get("Content-Encoding") != "" {
		_ = rc.SetReadDeadline(time.Time{})
	}
	m, p, err := xmlrpc.DecodeCallLimited(body, s.limits)
	return decoded{method: m, params: p, err: err}, 0, nil
}

func (s *Server) authorized(r *http.Request) bool {
	h, ok := basicPasswordDigest(r.Header.Get("Authorization"))
	// Comparing fixed-size digests keeps the time independent of both the
	// content and the length of the guess.
	return ok && subtle.ConstantTimeCompare(h[:], s.tokenH[:]) == 1
}

// basicPasswordDigest is the SHA-256 of the password of a Basic
// Authorization header, read as net/http's Request.BasicAuth reads it
// (any user name; the scheme's name in any ASCII case; strict base64),
// decoded on the stack when it is of a usual size instead of into two
// fresh strings per call.
func basicPasswordDigest(auth string) ([32]byte, bool) {
	const prefix = "basic "
	if len(auth) < len(prefix) {
		return [32]byte{}, false
	}
	for i := range len(prefix) {
		c := auth[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return [32]byte{}, false
		}
	}
	enc := auth[len(prefix):]
	var srcBuf, dstBuf [256]byte
	src, dst := srcBuf[:0], dstBuf[:]
	if len(enc) > len(srcBuf) {
		src, dst = nil, make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	}
	n, err := base64.StdEncoding.Decode(dst, append(src, enc...))
	if err != nil {
		return [32]byte{}, false
	}
	_, pass, ok := bytes.Cut(dst[:n], []byte{':'})
	if !ok {
		return [32]byte{}, false
	}
	return sha256.Sum256(pass), true
}

// readBody returns the request body, decoded from gzip when the client
// says so, bounded by MaxRequestBytes both before and after decoding.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	// A body with a Content-Length (checked against the limit before)
	// cannot yield more than that; the others get a limit here.
	var src io.Reader = r.Body
	if r.ContentLength < 0 {
		src = http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes)
	}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("bad gzip request body: %w", err)
		}
		defer zr.Close()
		src = zr
	default:
		// Python answers 501 for encodings it cannot decode.
		return nil, http.StatusNotImplemented, fmt.Errorf("encoding %q not supported", enc)
	}
	var body []byte
	var err error
	if _, gz := src.(*gzip.Reader); !gz && r.ContentLength >= 0 {
		// Content-Length (already checked against the limit) sizes the
		// buffer once, instead of growing and copying it step by step.
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(src, body)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("body shorter than its Content-Length: %w", err)
		}
	} else {
		var buf bytes.Buffer
		_, err = buf.ReadFrom(io.LimitReader(src, s.cfg.MaxRequestBytes+1))
		body = buf.Bytes()
	}
	switch {
	case isMaxBytes(err) || int64(len(body)) > s.cfg.MaxRequestBytes:
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", s.cfg.MaxRequestBytes)
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("reading request body: %w", err)
	}
	return body, 0, nil
}

// isMaxBytes reports whether err says the body passed its MaxBytesReader
// limit; a function of its own so that errors.As's target is allocated
// only for an error, not for every call.
func isMaxBytes(err error) bool {
	if err == nil {
		return false
	}
	var tooBig *http.MaxBytesError
	return errors.As(err, &tooBig)
}

// gzipWriters recycles reply compressors: each holds about 700 KB of
// tables, too much to allocate for every large reply. Level 1 is what
// CPython's xmlrpc server uses (gzip_encode, compresslevel=1).
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed) // a valid level cannot fail
	return zw
}}

// acceptsGzip parses Accept-Encoding as Python's accept_encodings does:
// gzip counts when listed with a non-zero quality.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		q := 1.0
		if k, v, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.TrimSpace(k) == "q" {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return false
			}
			q = f
		}
		return q > 0
	}
	return false
}

// dispatch runs one decoded call and encodes the reply. Every failure,
// including a panic and a result the codec cannot carry, becomes
// avocado-vt's JSON fault; the reply is always a valid document.
func (s *Server) dispatch(ctx context.Context, c decoded) []byte {
	start := time.Now()
	method, params, err := c.method, c.params, c.err
	if err != nil {
		return s.refusedCall(method, err, start)
	}
	result, err := s.call(ctx, method, params)
	var reply []byte
	if err == nil {
		reply, err = xmlrpc.EncodeResponse(result)
		if err != nil {
			err = &xmlrpc.Fault{ExcType: "TypeError", ExcValue: fmt.Sprintf("cannot marshal the result: %v", err)}
		}
	}
	d := time.Since(start).Seconds()
	if err != nil {
		f := xmlrpc.FaultFromError(err)
		log := s.serviceLogger(method)
		var p *panicError
		if errors.As(err, &p) {
			log.Error("agent: call panicked", "method", method, "duration_seconds", d, "err", p.value, "stack", string(p.stack))
		} else {
			log.Debug("agent: call", "method", method, "duration_seconds", d, "outcome", "fault", "err", f.Error())
		}
		return xmlrpc.EncodeFaultResponse(1, f.FaultString(method))
	}
	s.logCall(ctx, method, d)
	return reply
}

// logCall writes the Debug record of a call that succeeded, the one
// record every call leaves in agent.log. It is built by hand: Logger.Debug
// would box its arguments even with Debug off, and walk the stack for a
// source position (runtime.Callers) that no handler of the agent prints.
func (s *Server) logCall(ctx context.Context, method string, seconds float64) {
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelDebug, "agent: call", 0)
	r.AddAttrs(slog.String("method", method), slog.Float64("duration_seconds", seconds), slog.String("outcome", "ok"))
	_ = s.serviceLogger(method).Handler().Handle(ctx, r)
}

// refusedCall is the fault for a call that decoding refused: an unknown
// method, a call over the limits, a malformed document.
func (s *Server) refusedCall(method string, err error, start time.Time) []byte {
	var unknown *xmlrpc.UnknownMethodError
	switch {
	case errors.As(err, &unknown):
		s.log.Debug("agent: call", "method", method, "outcome", "fault", "err", err)
		return xmlrpc.EncodeFaultResponse(1, xmlrpc.FaultFromError(xmlrpc.UnsupportedMethodFault(method)).FaultString(method))
	case errors.Is(err, xmlrpc.ErrCallTooLarge):
		f := &xmlrpc.Fault{ExcType: "ValueError", ExcValue: err.Error()}
		s.log.Debug("agent: call too large", "method", method, "err", err)
		return xmlrpc.EncodeFaultResponse(1, f.FaultString(method))
	}
	// Python's loads raises ExpatError for a malformed document.
	f := &xmlrpc.Fault{ExcType: "xml.parsers.expat.ExpatError", ExcValue: err.Error()}
	s.log.Debug("agent: malformed call", "err", err, "duration_seconds", time.Since(start).Seconds())
	return xmlrpc.EncodeFaultResponse(1, f.FaultString("<request>"))
}

// panicError is a recovered panic; it converts to a RuntimeError fault
// whose traceback is the Go stack, as a Python agent sends its traceback.
type panicError struct {
	method string
	value  any
	stack  []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic in %s: %v", e.method, e.value) }

func (e *panicError) Unwrap() error {
	return &xmlrpc.Fault{
		ExcType:  "RuntimeError",
		ExcValue: fmt.Sprintf("agent: method %s panicked: %v", e.method, e.value),
		TbInfo:   fmt.Sprintf("Go panic in method %s: %v\n\n%s\nRuntimeError: agent: method %s panicked\n", e.method, e.value, e.stack, e.method),
	}
}

func (s *Server) call(ctx context.Context, method string, params []any) (result any, err error) {
	m, ok := s.reg.Lookup(method)
	if !ok {
		return nil, xmlrpc.UnsupportedMethodFault(method)
	}
	defer func() {
		if v := recover(); v != nil {
			result, err = nil, &panicError{method: method, value: v, stack: debug.Stack()}
		}
	}()
	return m(ctx, Args(params))
}

// serviceLogger scopes the logger by service: the method name without its
// last component ("examples.hello.ping" → "examples.hello").
func (s *Server) serviceLogger(method string) *slog.Logger {
	name := "unknown"
	if i := strings.LastIndexByte(method, '.'); i > 0 {
		name = method[:i]
	}
	if _, ok := s.reg.Lookup(method); !ok {
		name = "unknown"
	}
	if l, ok := s.svcLogs.Load(name); ok {
		return l.(*slog.Logger)
	}
	l, _ := s.svcLogs.LoadOrStore(name, s.log.With("service", name))
	return l.(*slog.Logger)
}

// systemService provides system.listMethods.
type systemService struct{ reg *Registry }

func (systemService) Name() string { return "system" }

func (sv systemService) Methods() map[string]Method {
	return map[string]Method{
		"listMethods": func(_ context.Context, args Args) (any, error) {
			if err := args.Want(0, 0); err != nil {
				return nil, err
			}
			return sv.reg.Names(), nil
		},
	}
}
