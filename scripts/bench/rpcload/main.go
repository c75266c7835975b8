//go:build ignore

// Command rpcload is the load generator of `make bench-compare`: N clients
// call one XML-RPC method on an agent as fast as they can for a fixed time
// and it prints one JSON line of results.
//
// Each client owns one HTTP transport, so it keeps one connection alive
// where the server allows it (HTTP/1.1); against an HTTP/1.0 server, such as
// Python's SimpleXMLRPCServer, every call opens a new connection, as every
// client of that server does. Every reply is decoded and checked, so a fast
// wrong answer does not count.
//
//	go build -o bin/bench/rpcload scripts/bench/rpcload/main.go
//	bin/bench/rpcload -url http://127.0.0.1:9999/ -clients 4 -duration 5s
//
// The process reports its own CPU time, so a reader can see whether the load
// generator, rather than the server, was the limit.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vtcluster/vtcluster/agent"
)

type result struct {
	Clients          int     `json:"clients"`
	Method           string  `json:"method"`
	Calls            int64   `json:"calls"`
	Errors           int64   `json:"errors"`
	FirstError       string  `json:"first_error,omitempty"`
	Seconds          float64 `json:"seconds"`
	CallsPerSec      float64 `json:"calls_per_sec"`
	P50Ms            float64 `json:"p50_ms"`
	P99Ms            float64 `json:"p99_ms"`
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
}

type clientStats struct {
	calls    int64
	errors   int64
	firstErr error
	lat      []time.Duration
}

func main() {
	url := flag.String("url", "", "agent URL, e.g. http://127.0.0.1:9999/")
	clients := flag.Int("clients", 1, "concurrent clients, each with its own connection")
	duration := flag.Duration("duration", 5*time.Second, "how long to call")
	method := flag.String("method", "examples.hello.ping", "method to call, without arguments")
	expect := flag.String("expect-prefix", "Pong from", "a string reply must start with this (empty: any reply that is not a fault)")
	timeout := flag.Duration("call-timeout", 10*time.Second, "deadline of one call")
	flag.Parse()
	if *url == "" || *clients < 1 || *duration <= 0 || *duration > 10*time.Minute {
		fmt.Fprintln(os.Stderr, "rpcload: want -url, -clients >= 1 and 0 < -duration <= 10m")
		os.Exit(2)
	}
	body, err := agent.EncodeCall(*method, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rpcload: encode call: %v\n", err)
		os.Exit(2)
	}

	cpu0 := cpuSeconds()
	start := time.Now()
	deadline := start.Add(*duration)
	stats := make([]clientStats, *clients)
	var wg sync.WaitGroup
	for i := range stats {
		wg.Go(func() { run(&stats[i], *url, body, *expect, deadline, *timeout) })
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()

	res := result{Clients: *clients, Method: *method, Seconds: elapsed, ClientCPUSeconds: cpuSeconds() - cpu0}
	var lat []time.Duration
	for _, s := range stats {
		res.Calls += s.calls
		res.Errors += s.errors
		if s.firstErr != nil && res.FirstError == "" {
			res.FirstError = s.firstErr.Error()
		}
		lat = append(lat, s.lat...)
	}
	res.CallsPerSec = float64(res.Calls) / elapsed
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50Ms = float64(lat[len(lat)/2]) / 1e6
		res.P99Ms = float64(lat[len(lat)*99/100]) / 1e6
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

// run calls until deadline; only successful, checked calls count.
func run(s *clientStats, url string, body []byte, expect string, deadline time.Time, timeout time.Duration) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	s.lat = make([]time.Duration, 0, 1<<16)
	for {
		t0 := time.Now()
		if !t0.Before(deadline) {
			return
		}
		err := call(hc, url, body, expect, timeout)
		if err != nil {
			s.errors++
			if s.firstErr == nil {
				s.firstErr = err
			}
			continue
		}
		s.calls++
		s.lat = append(s.lat, time.Since(t0))
	}
}

func call(hc *http.Client, url string, body []byte, expect string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	reply, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	v, err := agent.DecodeResponse(reply)
	if err != nil {
		return err
	}
	if expect != "" {
		s, ok := v.(string)
		if !ok || !strings.HasPrefix(s, expect) {
			return fmt.Errorf("reply %#v does not start with %q", v, expect)
		}
	}
	return nil
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0 // cannot happen for RUSAGE_SELF; 0 reads as "unknown"
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
