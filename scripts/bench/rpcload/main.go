//go:build ignore

// Command rpcload is the load generator of `make bench-compare`: N clients
// call one XML-RPC method on an agent as fast as they can for a fixed time
// and it prints one JSON line of results.
//
// Each client keeps one connection alive where the server allows it
// (HTTP/1.1); against an HTTP/1.0 server, such as Python's
// SimpleXMLRPCServer, every call opens a new connection, as every client of
// that server does. The HTTP exchange is written by hand: net/http's client
// spends about as much CPU per call as the server under test, and on a
// two-core machine that CPU is taken from the server. Every reply is checked:
// the first is decoded, the rest must equal it byte for byte (or decode to a
// reply that passes the same check), so a fast wrong answer does not count.
//
//	go build -o bin/bench/rpcload scripts/bench/rpcload/main.go
//	bin/bench/rpcload -addr 127.0.0.1:9999 -clients 4 -duration 5s
//
// When VTCLUSTER_AGENT_TOKEN is set, every call carries it as the HTTP
// Basic auth password, as the controller sends it to an agent on TCP (the
// environment, not argv, so the token is not in the process list).
//
// The process reports its own CPU time, so a reader can see how much of the
// machine the load generator took.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
	"github.com/vtcluster/vtcluster/scripts/bench/loadgen"
)

type result struct {
	Clients     int     `json:"clients"`
	Method      string  `json:"method"`
	Calls       int64   `json:"calls"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Connections int64   `json:"connections"`
	CallsPerSec float64 `json:"calls_per_sec"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	loadgen.Cost
}

func main() {
	addr := flag.String("addr", "", "agent host:port, e.g. 127.0.0.1:9999")
	clients := flag.Int("clients", 1, "concurrent clients, each with its own connection")
	duration := flag.Duration("duration", 5*time.Second, "how long to call")
	method := flag.String("method", "examples.hello.ping", "method to call, without arguments")
	expect := flag.String("expect-prefix", "Pong from", "a string reply must start with this (empty: any reply that is not a fault)")
	timeout := flag.Duration("call-timeout", 10*time.Second, "deadline of one call")
	flag.Parse()
	if *addr == "" || *clients < 1 || *duration <= 0 || *duration > 10*time.Minute {
		fmt.Fprintln(os.Stderr, "rpcload: want -addr, -clients >= 1 and 0 < -duration <= 10m")
		os.Exit(2)
	}
	body, err := xmlrpc.EncodeCall(*method, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rpcload: encode call: %v\n", err)
		os.Exit(2)
	}
	auth := ""
	if tok := os.Getenv("VTCLUSTER_AGENT_TOKEN"); tok != "" {
		auth = "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("vtcluster:"+tok)) + "\r\n"
	}
	req := fmt.Appendf(nil, "POST / HTTP/1.1\r\nHost: %s\r\nUser-Agent: rpcload\r\n%sContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s", *addr, auth, len(body), body)

	meter := loadgen.Start()
	deadline := meter.Started().Add(*duration)
	cs := make([]client, *clients)
	var wg sync.WaitGroup
	for i := range cs {
		cs[i] = client{addr: *addr, req: req, expect: *expect, timeout: *timeout}
		wg.Go(func() { cs[i].run(deadline) })
	}
	wg.Wait()

	res := result{Clients: *clients, Method: *method, Cost: meter.Stop()}
	var lat []time.Duration
	for _, c := range cs {
		res.Calls += c.calls
		res.Errors += c.errors
		res.Connections += c.dials
		if c.firstErr != nil && res.FirstError == "" {
			res.FirstError = c.firstErr.Error()
		}
		lat = append(lat, c.lat...)
	}
	res.CallsPerSec = float64(res.Calls) / res.Seconds
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50Ms = float64(lat[len(lat)/2]) / 1e6
		res.P99Ms = float64(lat[len(lat)*99/100]) / 1e6
	}
	loadgen.PrintResult(res)
}

// client is one caller with at most one open connection.
type client struct {
	addr    string
	req     []byte
	expect  string
	timeout time.Duration

	conn net.Conn
	br   *bufio.Reader
	good []byte // a reply that passed the check

	calls, errors, dials int64
	firstErr             error
	lat                  []time.Duration
}

// run calls until deadline; only successful, checked calls count.
func (c *client) run(deadline time.Time) {
	defer c.close()
	c.lat = make([]time.Duration, 0, 1<<16)
	for {
		t0 := time.Now()
		if !t0.Before(deadline) {
			return
		}
		if err := c.call(t0); err != nil {
			c.close()
			c.errors++
			if c.firstErr == nil {
				c.firstErr = err
			}
			continue
		}
		c.calls++
		c.lat = append(c.lat, time.Since(t0))
	}
}

func (c *client) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

func (c *client) call(now time.Time) error {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
		if err != nil {
			return err
		}
		c.dials++
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 16<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	_ = c.conn.SetDeadline(now.Add(c.timeout))
	if _, err := c.conn.Write(c.req); err != nil {
		return err
	}
	reply, keepAlive, err := readResponse(c.br)
	if err != nil {
		return err
	}
	if !keepAlive {
		c.close()
	}
	if c.good != nil && bytes.Equal(reply, c.good) {
		return nil
	}
	if err := check(reply, c.expect); err != nil {
		return err
	}
	c.good = reply
	return nil
}

// readResponse reads one HTTP/1.x response that must be 200 with a
// Content-Length (both of our servers send one), and says whether the
// connection stays open.
func readResponse(br *bufio.Reader) (body []byte, keepAlive bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return nil, false, fmt.Errorf("reading status line: %w", err)
	}
	proto, rest, _ := strings.Cut(strings.TrimSpace(string(line)), " ")
	if !strings.HasPrefix(rest, "200 ") && rest != "200" {
		return nil, false, fmt.Errorf("HTTP status %q", rest)
	}
	keepAlive = proto == "HTTP/1.1"
	length := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, false, fmt.Errorf("reading headers: %w", err)
		}
		h := bytes.TrimSpace(line)
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 || length > 64<<20 {
				return nil, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			switch {
			case bytes.EqualFold(value, []byte("close")):
				keepAlive = false
			case bytes.EqualFold(value, []byte("keep-alive")):
				keepAlive = true
			}
		case bytes.EqualFold(name, []byte("Content-Encoding")):
			return nil, false, fmt.Errorf("unexpected Content-Encoding %q", value)
		}
	}
	if length < 0 {
		return nil, false, errors.New("response without Content-Length")
	}
	body = make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, false, fmt.Errorf("reading body: %w", err)
	}
	return body, keepAlive, nil
}

func check(reply []byte, expect string) error {
	v, err := xmlrpc.DecodeResponse(reply)
	if err != nil {
		return err
	}
	if expect == "" {
		return nil
	}
	if s, ok := v.(string); !ok || !strings.HasPrefix(s, expect) {
		return fmt.Errorf("reply %#v does not start with %q", v, expect)
	}
	return nil
}
