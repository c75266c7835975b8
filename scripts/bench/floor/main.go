//go:build ignore

// Command floor is the lower bound of the agent RPC benchmark in
// `make bench-compare`: a bare net/http server that reads each request body
// and answers one fixed XML-RPC reply, with no decoding, dispatch or service
// behind it. rpcload measures it exactly as it measures the agent, so the
// agent's p50 divided by this p50 is what the agent adds per call over Go's
// HTTP stack on this machine.
//
//	go build -o bin/bench/floor scripts/bench/floor/main.go
//	bin/bench/floor --host 127.0.0.1 --port 9999
//
// It takes the agent's --host, --port, --pid-file and --data-dir so that
// rpc_bench.py starts it like the agent (--data-dir is accepted and unused),
// and exits 0 on SIGTERM after closing its connections.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on")
	pidFile := flag.String("pid-file", "", "write the pid here once listening")
	flag.String("data-dir", "", "accepted for the agent's argv; unused")
	flag.Parse()
	if err := run(*host, *port, *pidFile); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(host string, port int, pidFile string) error {
	// The agent's reply to examples.hello.ping, so rpcload's check passes.
	reply, err := xmlrpc.EncodeResponse("Pong from floor")
	if err != nil {
		return err
	}
	length := strconv.Itoa(len(reply))
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Read the call as the agent must, bounded as the agent bounds it.
			if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 1<<20)); err != nil {
				http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			h := w.Header()
			h["Content-Type"] = []string{"text/xml"}
			h["Content-Length"] = []string{length}
			_, _ = w.Write(reply)
		}),
	}
	if pidFile != "" {
		if err := os.WriteFile(pidFile, strconv.AppendInt(nil, int64(os.Getpid()), 10), 0o644); err != nil {
			ln.Close()
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
