package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
	"github.com/vtcluster/vtcluster/internal/testutil"
)

// testService is a table of methods built by each test.
type testService struct {
	name    string
	methods map[string]Method
}

func (s testService) Name() string               { return s.name }
func (s testService) Methods() map[string]Method { return s.methods }

// echoService answers t.echo (its arguments back), t.fail (a plain
// error), t.value_error, t.panic, t.chan (an unencodable result) and
// t.big (a long string).
func echoService() Service {
	return testService{name: "t", methods: map[string]Method{
		"echo": func(_ context.Context, a Args) (any, error) { return []any(a), nil },
		"fail": func(context.Context, Args) (any, error) { return nil, errors.New("plain failure") },
		"value_error": func(context.Context, Args) (any, error) {
			return nil, xmlrpc.Faultf("ValueError", "bad value %d", 7)
		},
		"panic": func(context.Context, Args) (any, error) { panic("boom") },
		"chan":  func(context.Context, Args) (any, error) { return make(chan int), nil },
		"big": func(_ context.Context, a Args) (any, error) {
			n, err := a.Int(0, "n")
			return strings.Repeat("x", n), err
		},
	}}
}

// testToken is the token of every test server on TCP.
const testToken = "test-token-0123456789"

// testConfig is DefaultConfig on a free loopback port with testToken.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Token = testToken
	return cfg
}

// testURL is the URL of s with testToken as Basic auth, as Python's
// ServerProxy takes it.
func testURL(s *Server) string {
	return "http://vtc:" + testToken + "@" + s.Addr().String() + "/"
}

// startTestServer serves svcs on a free loopback port and returns the URL.
// tweak may change the config first.
func startTestServer(tb testing.TB, tweak func(*Config), svcs ...Service) (*Server, string) {
	tb.Helper()
	cfg := testConfig()
	if tweak != nil {
		tweak(&cfg)
	}
	s := listeningServer(tb, cfg, svcs...)
	return s, serveTest(tb, s)
}

// serveTest serves s, listening already, until the test ends, and returns
// its URL.
func serveTest(tb testing.TB, s *Server) string {
	tb.Helper()
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return testURL(s)
}

// rawClient never asks for gzip on its own, so tests see what the server
// sends.
var rawClient = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: hangGuard}

func post(tb testing.TB, url string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/xml")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, data
}

func encodeCall(tb testing.TB, method string, params ...any) []byte {
	tb.Helper()
	if params == nil {
		params = []any{}
	}
	body, err := xmlrpc.EncodeCall(method, params)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// rpc calls method and decodes the reply; a fault comes back as the error.
func rpc(tb testing.TB, url, method string, params ...any) (any, error) {
	tb.Helper()
	resp, data := post(tb, url, encodeCall(tb, method, params...), nil)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("%s: HTTP %s: %s", method, resp.Status, data)
	}
	return xmlrpc.DecodeResponse(data)
}

// wantFault checks err is avocado-vt's fault: code 1, JSON string.
func wantFault(tb testing.TB, err error, excType, excValue string) *xmlrpc.Fault {
	tb.Helper()
	var w *xmlrpc.WireFault
	if !errors.As(err, &w) {
		tb.Fatalf("got %v, want a fault", err)
	}
	if w.Code != 1 {
		tb.Errorf("faultCode = %d, want 1", w.Code)
	}
	f, ok := xmlrpc.AsFault(err)
	if !ok {
		tb.Fatalf("fault string is not avocado-vt JSON: %q", w.String)
	}
	if f.ExcType != excType || (excValue != "" && f.ExcValue != excValue) {
		tb.Fatalf("fault = %s: %s, want %s: %s", f.ExcType, f.ExcValue, excType, excValue)
	}
	return f
}

func TestServer_Call_result(t *testing.T) {
	_, url := startTestServer(t, nil, echoService())
	got, err := rpc(t, url, "t.echo", "a", 5, nil, 1<<40, []byte{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"a", 5, nil, 1 << 40, []byte{0, 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("echo = %#v, want %#v", got, want)
	}
}

func TestServer_Call_unknownMethod(t *testing.T) {
	_, url := startTestServer(t, nil, echoService())
	resp, data := post(t, url, encodeCall(t, "x.y"), nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/xml" {
		t.Fatalf("HTTP %s, Content-Type %q; want 200 text/xml", resp.Status, resp.Header.Get("Content-Type"))
	}
	_, err := xmlrpc.DecodeResponse(data)
	f := wantFault(t, err, "Exception", `method "x.y" is not supported`)
	if !xmlrpc.IsUnsupportedMethod(err) {
		t.Errorf("IsUnsupportedMethod is false for %v", f)
	}
}

func TestServer_Call_methodErrors(t *testing.T) {
	_, url := startTestServer(t, nil, echoService())
	_, err := rpc(t, url, "t.fail")
	f := wantFault(t, err, "Exception", "plain failure")
	if !strings.Contains(f.TbInfo, "t.fail") {
		t.Errorf("tb_info does not name the method: %q", f.TbInfo)
	}
	_, err = rpc(t, url, "t.value_error")
	wantFault(t, err, "ValueError", "bad value 7")
}

func TestServer_Call_panicBecomesFault(t *testing.T) {
	_, url := startTestServer(t, nil, echoService())
	_, err := rpc(t, url, "t.panic")
	f := wantFault(t, err, "RuntimeError", "")
	if !strings.Contains(f.ExcValue, "boom") || !strings.Contains(f.TbInfo, "goroutine") {
		t.Errorf("panic fault lacks the value or the stack: %+v", f)
	}
	// The server is still there.
	if _, err := rpc(t, url, "t.echo"); err != nil {
		t.Fatalf("call after panic: %v", err)
	}
}

func TestServer_Call_unencodableResult(t *testing.T) {
	_, url := startTestServer(t, nil, echoService())
	_, err := rpc(t, url, "t.chan")
	wantFault(t, err, "TypeError", "")
}

func TestServer_Call_malformedDocument(t *testing.T) {
	_, url := startTestServer(t, nil, echoService())
	resp, data := post(t, url, []byte("<methodCall><methodName>t.echo"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %s", resp.Status)
	}
	_, err := xmlrpc.DecodeResponse(data)
	wantFault(t, err, "xml.parsers.expat.ExpatError", "")
}

func TestServer_ServeHTTP_pathsAndVerbs(t *testing.T) {
	_, url := startTestServer(t, nil, echoService())
	base := strings.TrimSuffix(url, "/")
	resp, _ := post(t, base+"/RPC2", encodeCall(t, "t.echo"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST /RPC2: HTTP %s, want 200", resp.Status)
	}
	resp, _ = post(t, base+"/other", encodeCall(t, "t.echo"), nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /other: HTTP %s, want 404", resp.Status)
	}
	for _, path := range []string{"/", "/other"} {
		r, err := rawClient.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotImplemented {
			t.Errorf("GET %s: HTTP %s, want 501", path, r.Status)
		}
	}
}

func TestServer_ServeHTTP_gzipReply(t *testing.T) {
	_, url := startTestServer(t, nil, echoService())
	gz := map[string]string{"Accept-Encoding": "gzip"}

	// Compressors are reused: each reply must still be whole and alone.
	for _, n := range []int{5000, 3000, 9000} {
		resp, data := post(t, url, encodeCall(t, "t.big", n), gz)
		if resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("large reply not gzipped (Content-Encoding %q)", resp.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := xmlrpc.DecodeResponse(plain); err != nil || v != strings.Repeat("x", n) {
			t.Fatalf("gunzipped reply of %d: %.40v, %v", n, v, err)
		}
	}

	for name, c := range map[string]struct {
		n   int
		hdr map[string]string
	}{
		"small reply":        {10, gz},
		"no Accept-Encoding": {5000, nil},
		"gzip refused (q=0)": {5000, map[string]string{"Accept-Encoding": "gzip;q=0, identity"}},
	} {
		resp, data := post(t, url, encodeCall(t, "t.big", c.n), c.hdr)
		if resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("%s: reply gzipped", name)
		}
		if _, err := xmlrpc.DecodeResponse(data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestServer_ServeHTTP_gzipRequest(t *testing.T) {
	_, url := startTestServer(t, nil, echoService())
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(encodeCall(t, "t.echo", "zipped"))
	zw.Close()
	resp, data := post(t, url, zb.Bytes(), map[string]string{"Content-Encoding": "gzip"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %s: %s", resp.Status, data)
	}
	if v, err := xmlrpc.DecodeResponse(data); err != nil || fmt.Sprint(v) != "[zipped]" {
		t.Fatalf("reply %v, %v", v, err)
	}
	resp, _ = post(t, url, encodeCall(t, "t.echo"), map[string]string{"Content-Encoding": "br"})
	if resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("unknown Content-Encoding: HTTP %s, want 501", resp.Status)
	}
}

func TestServer_ServeHTTP_bodyLimit(t *testing.T) {
	_, url := startTestServer(t, func(c *Config) { c.MaxRequestBytes = 512 }, echoService())
	resp, _ := post(t, url, encodeCall(t, "t.echo", strings.Repeat("y", 1000)), nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("HTTP %s, want 413", resp.Status)
	}
	// A gzip bomb is bounded after decoding too.
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(encodeCall(t, "t.echo", strings.Repeat("y", 100000)))
	zw.Close()
	if zb.Len() >= 512 {
		t.Fatalf("test setup: compressed body is %d bytes", zb.Len())
	}
	resp, _ = post(t, url, zb.Bytes(), map[string]string{"Content-Encoding": "gzip"})
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("gzip body: HTTP %s, want 413", resp.Status)
	}
}

func TestServer_ServeHTTP_token(t *testing.T) {
	const token = "s3cret-token"
	srv, _ := startTestServer(t, func(c *Config) { c.Token = token }, echoService())
	url := "http://" + srv.Addr().String() + "/"
	body := encodeCall(t, "t.echo")

	resp, _ := post(t, url, body, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Fatalf("no credentials: HTTP %s, WWW-Authenticate %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	withAuth := func(user, pass string) int {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.SetBasicAuth(user, pass)
		resp, err := rawClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := withAuth("vtc", "wrong"); got != http.StatusUnauthorized {
		t.Errorf("wrong token: HTTP %d, want 401", got)
	}
	if got := withAuth("vtc", token+"x"); got != http.StatusUnauthorized {
		t.Errorf("token with a suffix: HTTP %d, want 401", got)
	}
	for _, user := range []string{"vtc", "anyone", ""} {
		if got := withAuth(user, token); got != http.StatusOK {
			t.Errorf("user %q with the token: HTTP %d, want 200", user, got)
		}
	}
	// Unauthenticated requests learn nothing about paths or verbs.
	r, err := rawClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET without token: HTTP %d, want 401", r.StatusCode)
	}
}

func TestNew_validation(t *testing.T) {
	for name, c := range map[string]struct {
		tweak func(*Config)
		ok    bool
	}{
		"default, token":           {func(c *Config) { c.Token = "t" }, true},
		"loopback, no token":       {func(*Config) {}, false},
		"localhost, no token":      {func(c *Config) { c.Addr = "localhost:1" }, false},
		"ipv6 loopback, no token":  {func(c *Config) { c.Addr = "[::1]:1" }, false},
		"unix socket, no token":    {func(c *Config) { c.SocketPath = "/run/x/agent.sock" }, true},
		"empty addr":               {func(c *Config) { c.Addr = ""; c.Token = "t" }, false},
		"no port":                  {func(c *Config) { c.Addr = "127.0.0.1"; c.Token = "t" }, false},
		"port out of range":        {func(c *Config) { c.Addr = "127.0.0.1:70000"; c.Token = "t" }, false},
		"all interfaces, no token": {func(c *Config) { c.Addr = "0.0.0.0:9999" }, false},
		"remote name, no token":    {func(c *Config) { c.Addr = "node1.example:9999" }, false},
		"all interfaces, token":    {func(c *Config) { c.Addr = "0.0.0.0:9999"; c.Token = "t" }, true},
		"zero body limit":          {func(c *Config) { c.Token = "t"; c.MaxRequestBytes = 0 }, false},
		"zero idle timeout":        {func(c *Config) { c.Token = "t"; c.IdleTimeout = 0 }, false},
		"zero connection cap":      {func(c *Config) { c.Token = "t"; c.MaxConns = 0 }, false},
	} {
		cfg := DefaultConfig()
		c.tweak(&cfg)
		_, err := New(cfg)
		if (err == nil) != c.ok {
			t.Errorf("%s: New error = %v, want ok=%v", name, err, c.ok)
		}
		if name == "loopback, no token" && !errors.Is(err, ErrNoToken) {
			t.Errorf("%s: error %v does not wrap ErrNoToken", name, err)
		}
	}
}

func TestServer_Listen_addressInUse(t *testing.T) {
	first, _ := startTestServer(t, nil)
	cfg := testConfig()
	cfg.Addr = first.Addr().String()
	second, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = second.Listen()
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second Listen: %v, want EADDRINUSE", err)
	}
	if err := second.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown of a server that never listened: %v", err)
	}
}

func TestServer_Register_afterServeRefused(t *testing.T) {
	s, _ := startTestServer(t, nil)
	if err := s.Register(echoService()); err == nil {
		t.Fatal("Register after Serve succeeded")
	}
}

// newServer is New(cfg) with svcs registered, not listening yet;
// listeningServer also listens (on a free loopback port), not serving yet.
func newServer(tb testing.TB, cfg Config, svcs ...Service) *Server {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	for _, svc := range svcs {
		if err := s.Register(svc); err != nil {
			tb.Fatalf("Register: %v", err)
		}
	}
	return s
}

func listeningServer(tb testing.TB, cfg Config, svcs ...Service) *Server {
	tb.Helper()
	s := newServer(tb, cfg, svcs...)
	if err := s.Listen(); err != nil {
		tb.Fatalf("Listen: %v", err)
	}
	return s
}

// newEchoServer is a server with echoService (t.*) registered.
func newEchoServer(t *testing.T) *Server { return newServer(t, testConfig(), echoService()) }

func TestServer_Register_duplicateRefused(t *testing.T) {
	s := newEchoServer(t)
	if err := s.Register(echoService()); err == nil {
		t.Fatal("second registration of t.* succeeded")
	}
}

func TestServer_Call_listMethods(t *testing.T) {
	_, url := startTestServer(t, nil, echoService())
	got, err := rpc(t, url, "system.listMethods")
	if err != nil {
		t.Fatal(err)
	}
	s := fmt.Sprint(got)
	for _, m := range []string{"system.listMethods", "t.echo", "t.panic"} {
		if !strings.Contains(s, m) {
			t.Errorf("listMethods lacks %s: %v", m, s)
		}
	}
	_, url = startTestServer(t, func(c *Config) { c.ListMethods = false })
	_, err = rpc(t, url, "system.listMethods")
	wantFault(t, err, "Exception", `method "system.listMethods" is not supported`)
}

// TestServer_Call_parallel proves calls run concurrently: each call waits
// until all of them are inside the method, which a serial server never
// reaches (the guard then fails the test instead of hanging).
func TestServer_Call_parallel(t *testing.T) {
	const n = 8
	var inside atomic.Int32
	all := make(chan struct{})
	svc := testService{name: "p", methods: map[string]Method{
		"wait": func(ctx context.Context, _ Args) (any, error) {
			if inside.Add(1) == n {
				close(all)
			}
			select {
			case <-all:
				return true, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(hangGuard):
				return nil, errors.New("calls did not run in parallel")
			}
		},
	}}
	_, url := startTestServer(t, nil, svc)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := rpc(t, url, "p.wait"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestServer_Shutdown_finishesCallInFlight is what core.quit relies on: the
// reply of a call running when shutdown starts still reaches its caller.
func TestServer_Shutdown_finishesCallInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	svc := testService{name: "s", methods: map[string]Method{
		"slow": func(context.Context, Args) (any, error) {
			close(entered)
			<-release
			return "done", nil
		},
	}}
	s := listeningServer(t, testConfig(), svc)
	url := testURL(s)
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()

	reply := make(chan any, 1)
	go func() {
		v, err := rpc(t, url, "s.slow")
		if err != nil {
			v = err
		}
		reply <- v
	}()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	close(release)
	if v := <-reply; v != "done" {
		t.Fatalf("reply during shutdown = %v, want done", v)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// Idempotent.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestServer_Serve_contextEndsServing(t *testing.T) {
	cfg := testConfig()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after Serve returned: %v", err)
	}
}

// TestServer_Close_cutsGraceShort is the agent's second SIGTERM: a
// graceful shutdown waiting for a call that never ends is cut short, the
// call's context is cancelled and Serve returns.
func TestServer_Close_cutsGraceShort(t *testing.T) {
	entered, cancelled := make(chan struct{}), make(chan struct{})
	svc := testService{name: "s", methods: map[string]Method{
		"stuck": func(ctx context.Context, _ Args) (any, error) {
			close(entered)
			<-ctx.Done()
			close(cancelled)
			return nil, ctx.Err()
		},
	}}
	cfg := testConfig()
	cfg.ShutdownTimeout = time.Hour
	s := listeningServer(t, cfg, svc)
	url := testURL(s)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	callDone := make(chan error, 1)
	body := encodeCall(t, "s.stuck")
	go func() {
		resp, err := http.Post(url, "text/xml", bytes.NewReader(body))
		if err == nil {
			resp.Body.Close()
		}
		callDone <- err
	}()
	<-entered
	stop() // graceful: an hour for the call
	select {
	case <-served:
		t.Fatal("Serve returned while the call was still running")
	case <-time.After(100 * time.Millisecond):
	}
	s.Close()
	<-cancelled
	<-callDone // its connection is closed rather than answered
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if s.shutdownErr() == nil {
		t.Error("a shutdown cut short reports no error")
	}
}

func TestServer_RegisterAs(t *testing.T) {
	s := newEchoServer(t)
	if err := s.RegisterAs("alias.t", echoService()); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterAs("alias.t", echoService()); err == nil {
		t.Error("a second alias of the same name succeeded")
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if err := s.RegisterAs("late", echoService()); err == nil {
		t.Error("RegisterAs after Listen succeeded")
	}
	if _, ok := s.Registry().Lookup("alias.t.echo"); !ok {
		t.Error("alias.t.echo is not registered")
	}
}

func TestServer_dispatch_logsEveryCall(t *testing.T) {
	var buf testutil.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, url := startTestServer(t, func(c *Config) { c.Logger = logger }, echoService())
	rpc(t, url, "t.echo")
	rpc(t, url, "t.value_error")
	rpc(t, url, "t.panic")
	out := buf.String()
	for _, want := range []string{
		`service=t method=t.echo duration_seconds=`,
		`outcome=ok`,
		`method=t.value_error`,
		`outcome=fault`,
		`level=ERROR msg="agent: call panicked" service=t method=t.panic`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                      false,
		"gzip":                  true,
		"GZIP":                  true,
		"deflate, gzip":         true,
		"gzip;q=0":              false,
		"gzip; q=0.5":           true,
		"identity":              false,
		"x-gzip":                false,
		"gzip;q=bad":            false,
		"br;q=1.0, gzip;q=0.1 ": true,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}

// BenchmarkServer_Ping measures calls per second over loopback with
// keep-alive clients calling in parallel.
func BenchmarkServer_Ping(b *testing.B) {
	ex, err := NewExamplesService(nil)
	if err != nil {
		b.Fatal(err)
	}
	_, url := startTestServer(b, nil, ex)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: hangGuard}
	body := encodeCall(b, "examples.hello.ping")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "text/xml", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := xmlrpc.DecodeResponse(data); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
