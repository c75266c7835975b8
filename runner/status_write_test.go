package runner

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A status server that stops reading gets whole lines or none: when the
// write deadline passes, the line is given up before any of it is sent,
// so what the server finally reads ends with a complete line.
func TestStatusClient_Post_stuckServerGetsNoPartialLine(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			addr, uri := "127.0.0.1:0", ""
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "status.sock")
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			uri = ln.Addr().String()
			accepted := make(chan net.Conn, 1)
			go func() {
				conn, err := ln.Accept()
				if err == nil {
					accepted <- conn
				}
			}()
			cfg := defaultStatusConfig()
			cfg.WriteTimeout = 100 * time.Millisecond
			c, err := newStatusClient([]string{uri}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			// Lines of a size that does not divide the buffers evenly, until
			// the unread buffers are full and a post gives up.
			payload := strings.Repeat("x", 7777)
			sent, gaveUp := 0, false
			for i := 0; i < 10000 && !gaveUp; i++ {
				line, _ := encodeLine(heartbeatMessage().With("log", payload))
				if err := c.Post(context.Background(), line); err != nil {
					if !errors.Is(err, ErrStatusTimeout) {
						t.Errorf("post %d: %v, want ErrStatusTimeout", i, err)
					}
					gaveUp = true
				} else {
					sent++
				}
			}
			if !gaveUp {
				t.Fatal("the server never stopped taking lines; the test proves nothing")
			}
			c.Close()
			server := <-accepted
			defer server.Close()
			server.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(server)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 || got[len(got)-1] != '\n' {
				t.Fatalf("the server read a partial last line (%d bytes read, %d lines posted)", len(got), sent)
			}
			if n := bytes.Count(got, []byte("\n")); n != sent {
				t.Errorf("server read %d lines, %d were posted successfully", n, sent)
			}
		})
	}
}
