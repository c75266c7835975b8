package cluster

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// dialer is a Transport to a local listener: the stand-in for the SSH
// channel, which carries the same bytes.
type dialer struct{ network, addr string }

func (d dialer) DialAgent(ctx context.Context) (net.Conn, error) {
	var nd net.Dialer
	return nd.DialContext(ctx, d.network, d.addr)
}

func (dialer) Close() error { return nil }

func serveAgent(t *testing.T, cfg agent.Config) *agent.Server {
	t.Helper()
	s, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return s
}

// TestClient_passesTheAgentsChecks: whatever carries the bytes (a Unix
// socket as in tunnel mode, TCP as in direct mode), the agent accepts our
// client's Host header and token; a wrong token is reported as such.
func TestClient_passesTheAgentsChecks(t *testing.T) {
	dir, err := os.MkdirTemp("", "vtc-client-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := agent.DefaultConfig()
	cfg.SocketPath = filepath.Join(dir, "agent.sock")
	serveAgent(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := NewClient("n1", dialer{"unix", cfg.SocketPath}, "")
	defer c.Close()
	if v, err := c.Call(ctx, "system.listMethods"); err != nil || len(v.([]any)) == 0 {
		t.Fatalf("over the socket: %v, %v", v, err)
	}

	const token = "client-test-token-0123456789"
	tcp := agent.DefaultConfig()
	tcp.Addr, tcp.Token = "127.0.0.1:0", token
	s := serveAgent(t, tcp)
	c = NewClient("n2", dialer{"tcp", s.Addr().String()}, token)
	defer c.Close()
	if _, err := c.Call(ctx, "system.listMethods"); err != nil {
		t.Fatalf("over TCP with the token: %v", err)
	}
	bad := NewClient("n2", dialer{"tcp", s.Addr().String()}, "wrong-token-0123456789")
	defer bad.Close()
	_, err = bad.Call(ctx, "system.listMethods")
	var ce *CallError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "refused the token (HTTP 401)") {
		t.Fatalf("wrong token: %v", err)
	}
}

// TestClient_acceptsTheLargestProcessReply: process.run at the agent's
// largest max_output, on both streams of incompressible output, gives a
// reply no larger than our client accepts; a larger max_output is
// refused by the agent.
func TestClient_acceptsTheLargestProcessReply(t *testing.T) {
	const token = "client-test-token-0123456789"
	cfg := agent.DefaultConfig()
	cfg.Addr, cfg.Token = "127.0.0.1:0", token
	s, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	proc, err := agent.NewProcessService(agent.ProcessConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	if err := s.Register(proc); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	defer func() {
		s.Shutdown(context.Background())
		<-done
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const most = 16 << 20
	argv := []any{"sh", "-c", "head -c 17000000 /dev/urandom; head -c 17000000 /dev/urandom >&2"}
	// The reply is measured on the wire: decoding 43 MiB of base64 through
	// encoding/xml would only test the race detector's patience.
	body, err := xmlrpc.EncodeCall("process.run", []any{argv, map[string]any{"max_output": most}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1/", bytes.NewReader(body))
	req.SetBasicAuth("vtc", token)
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialer{"tcp", s.Addr().String()}.DialAgent(ctx)
	}}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4096)
	n, _ := io.ReadFull(resp.Body, head)
	rest, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	size := int64(n) + rest
	if err != nil || resp.StatusCode != 200 || bytes.Contains(head[:n], []byte("<fault>")) {
		t.Fatalf("run at max_output %d: HTTP %d, %v: %s", most, resp.StatusCode, err, head[:n])
	}
	if size > maxReply || size < 2*most*4/3 {
		t.Fatalf("reply of %d bytes; want both streams in full (over %d) and at most the client's %d", size, 2*most*4/3, maxReply)
	}
	c := NewClient("n", dialer{"tcp", s.Addr().String()}, token)
	defer c.Close()
	_, err = c.Call(ctx, "process.run", argv, map[string]any{"max_output": most + 1})
	if f, ok := xmlrpc.AsFault(err); !ok || f.ExcType != "ValueError" {
		t.Fatalf("max_output %d: %v, want a ValueError", most+1, err)
	}
}
