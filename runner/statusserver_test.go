package runner

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// statusServer is a real status server for tests: it accepts stream
// connections and decodes each line the way Avocado's status server does
// (any {"__base64_encoded__": ...} object becomes bytes).
type statusServer struct {
	tb    testing.TB
	ln    net.Listener
	URI   string
	mu    sync.Mutex
	msgs  []map[string]any
	conns int
	// closed counts connections the server has closed.
	closed int
	raw    []string
	// closeAfter, when > 0, makes the server drop each connection after
	// that many lines (to exercise reconnects).
	closeAfter int
	changed    chan struct{}
	wg         sync.WaitGroup
}

func newUnixStatusServer(tb testing.TB) *statusServer {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), ".status_server.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatal(err)
	}
	return startStatusServer(tb, ln, path)
}

func newTCPStatusServer(tb testing.TB) *statusServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return startStatusServer(tb, ln, ln.Addr().String())
}

func startStatusServer(tb testing.TB, ln net.Listener, uri string) *statusServer {
	s := &statusServer{tb: tb, ln: ln, URI: uri, changed: make(chan struct{}, 1)}
	s.wg.Add(1)
	go s.accept()
	tb.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *statusServer) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(conn)
	}
}

func (s *statusServer) serve(conn net.Conn) {
	defer s.wg.Done()
	defer func() {
		conn.Close()
		s.mu.Lock()
		s.closed++
		s.mu.Unlock()
		s.signal()
	}()
	r := bufio.NewReaderSize(conn, 64<<10)
	n := 0
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			s.record(line)
			n++
			s.mu.Lock()
			closeAfter := s.closeAfter
			s.mu.Unlock()
			if closeAfter > 0 && n >= closeAfter {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *statusServer) record(line []byte) {
	var m map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(line), &m); err != nil {
		s.tb.Errorf("status server got a line that is not JSON: %v: %q", err, line)
		return
	}
	for k, v := range m {
		if obj, ok := v.(map[string]any); ok {
			if b64, ok := obj["__base64_encoded__"].(string); ok {
				data, err := base64.StdEncoding.DecodeString(b64)
				if err != nil {
					s.tb.Errorf("bad base64 in %q: %v", k, err)
				}
				m[k] = data
			}
		}
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.raw = append(s.raw, string(line))
	s.mu.Unlock()
	s.signal()
}

// signal wakes a waitFor or waitClosed.
func (s *statusServer) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// waitClosed blocks until the server has closed n connections (a
// synchronisation point, as waitFor).
func (s *statusServer) waitClosed(n int) {
	s.tb.Helper()
	limit := time.After(60 * time.Second)
	for {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed >= n {
			return
		}
		select {
		case <-s.changed:
		case <-limit:
			s.tb.Fatalf("status server: %d connections closed, want %d", closed, n)
		}
	}
}

func (s *statusServer) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

func (s *statusServer) setCloseAfter(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeAfter = n
}

func (s *statusServer) messages() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.msgs...)
}

// waitFor blocks until cond holds for the received messages or the test
// deadline approaches; it is a synchronisation point, not a timing check.
func (s *statusServer) waitFor(cond func([]map[string]any) bool) []map[string]any {
	s.tb.Helper()
	limit := time.After(60 * time.Second)
	for {
		msgs := s.messages()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-s.changed:
		case <-limit:
			s.tb.Fatalf("status server: condition not met; got %d messages", len(msgs))
		}
	}
}

func hasFinished(msgs []map[string]any) bool {
	for _, m := range msgs {
		if m["status"] == "finished" {
			return true
		}
	}
	return false
}
