package runner

// The sync service's wire: one JSON request line, one JSON reply line, per
// connection on a Unix socket. The runner serves it on a socket in the
// test's private output directory (for the body on the controller) and,
// per node, through an SSH remote forward of a socket in the node's 0700
// agent directory (for processes on the node), as the log path does: no
// TCP listener anywhere. A connection must carry a token: each node has
// its own, which acts only for that node's tag, and the body's acts for
// any tag. The runner hands node tokens only to the processes it starts
// for the test (their environment), never on a command line.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// Environment of the processes that may use the sync service.
const (
	EnvSyncSocket = "VTCLUSTER_SYNC_SOCKET"
	EnvSyncToken  = "VTCLUSTER_SYNC_TOKEN"
	EnvSyncTag    = "VTCLUSTER_SYNC_TAG"
)

const (
	// maxSyncRequest bounds a request line: a value plus names.
	maxSyncRequest = maxSyncValue + 16<<10
	// maxSyncReply bounds a reply line: values of every tag.
	maxSyncReply = 64 * (maxSyncValue + 1024)
	// maxSyncConns bounds the connections served at once per socket;
	// every connection is one waiting process.
	maxSyncConns = 64
	// syncRequestTimeout bounds how long a client has to send its request.
	syncRequestTimeout = 10 * time.Second
)

// SyncRequest is one call on the sync service.
type SyncRequest struct {
	Token string `json:"token"`
	// Op is barrier, send, wait, lock, unlock, info, or (the body's token
	// only) state.
	Op string `json:"op"`
	// Tag is the tag the body acts for; a node's token acts for its own
	// tag only and leaves it empty.
	Tag  string   `json:"tag,omitempty"`
	Name string   `json:"name,omitempty"`
	Keys []string `json:"keys,omitempty"`
	// Value is what send sends; for state, "running" or "finished".
	Value string `json:"value,omitempty"`
	// Tags are a barrier's parties or a wait's senders (none: all).
	Tags   []string `json:"tags,omitempty"`
	All    bool     `json:"all,omitempty"`
	Others bool     `json:"others,omitempty"`
	// Timeout in seconds; 0: only the test's.
	Timeout float64 `json:"timeout,omitempty"`
}

// SyncReply is the service's answer.
type SyncReply struct {
	Error  string            `json:"error,omitempty"`
	Values map[string]string `json:"values,omitempty"`
	Info   *SyncInfo         `json:"info,omitempty"`
}

// SyncInfo is who the caller is in the test (lava-self, lava-role,
// lava-group).
type SyncInfo struct {
	Tag     string           `json:"tag"`
	Node    string           `json:"node"`
	Members []SyncInfoMember `json:"members"`
}

// SyncInfoMember is one tag of the test.
type SyncInfoMember struct {
	Tag     string `json:"tag"`
	Node    string `json:"node"`
	Address string `json:"address"`
}

// syncServer serves one hub to its sockets.
type syncServer struct {
	hub     *syncHub
	members []SyncInfoMember
	mu      sync.Mutex
	tokens  map[[sha256.Size]byte]string // token hash -> tag ("" acts for any)
	lns     []net.Listener
	// envOf returns the environment of tag's processes (op env, for the
	// body to start node processes that can synchronise).
	envOf  func(tag string) map[string]string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newSyncServer(hub *syncHub, members []SyncInfoMember) *syncServer {
	ctx, cancel := context.WithCancel(context.Background())
	return &syncServer{hub: hub, members: members, tokens: map[[sha256.Size]byte]string{}, ctx: ctx, cancel: cancel}
}

// newToken makes a token acting for tag ("" for any tag).
func (s *syncServer) newToken(tag string) string {
	t := rand.Text()
	s.mu.Lock()
	s.tokens[sha256.Sum256([]byte(t))] = tag
	s.mu.Unlock()
	return t
}

// identity returns the tag a token acts for; ok is false for an unknown
// token. The comparison does not tell how much of a token matched.
func (s *syncServer) identity(token string) (tag string, anyTag, ok bool) {
	got := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, t := range s.tokens {
		if subtle.ConstantTimeCompare(h[:], got[:]) == 1 {
			ok, tag = true, t
		}
	}
	return tag, ok && tag == "", ok
}

// serve answers ln's connections until close.
func (s *syncServer) serve(ln net.Listener) {
	s.mu.Lock()
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	slots := make(chan struct{}, maxSyncConns)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case slots <- struct{}{}:
			default:
				c.Close() // a flood of waiting processes costs no more than this
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-slots }()
				s.serveConn(c)
			}()
		}
	}()
}

// close stops serving; waits in progress end with the hub's abort.
// close stops serving. Closing a node's listener also removes its socket
// file over the node's connection (cluster.Link), which takes a round
// trip or more; with wait false that removal goes on after close returns,
// for a teardown after a signal, which has a fraction of a second.
func (s *syncServer) close(wait bool) {
	s.cancel()
	s.mu.Lock()
	lns := slices.Clone(s.lns)
	s.mu.Unlock()
	var closing sync.WaitGroup
	for _, ln := range lns {
		closing.Go(func() { ln.Close() })
	}
	if wait {
		closing.Wait()
	}
	s.wg.Wait()
}

func (s *syncServer) serveConn(c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(syncRequestTimeout))
	br := bufio.NewReaderSize(io.LimitReader(c, maxSyncRequest), 4096)
	line, err := br.ReadBytes('\n')
	if err != nil {
		writeReply(c, SyncReply{Error: "sync: no complete request line (at most " + fmt.Sprint(maxSyncRequest) + " bytes) within " + seconds(syncRequestTimeout) + " s"})
		return
	}
	c.SetReadDeadline(time.Time{})
	var req SyncRequest
	if err := json.Unmarshal(line, &req); err != nil {
		writeReply(c, SyncReply{Error: "sync: bad request: " + err.Error()})
		return
	}
	// The client going away ends its wait: nothing keeps waiting for a
	// process that was killed.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		var b [1]byte
		c.Read(b[:])
		cancel()
	}()
	writeReply(c, s.handle(ctx, req))
}

func writeReply(c net.Conn, r SyncReply) {
	data, _ := json.Marshal(r)
	c.SetWriteDeadline(time.Now().Add(syncRequestTimeout))
	c.Write(append(data, '\n'))
}

// handle runs one request; the reply carries any error as text.
func (s *syncServer) handle(ctx context.Context, req SyncRequest) SyncReply {
	own, anyTag, ok := s.identity(req.Token)
	if !ok {
		return SyncReply{Error: "sync: this process is not one of the test's: its token (" + EnvSyncToken + ") is missing or wrong"}
	}
	tag := own
	if anyTag {
		tag = req.Tag
	} else if req.Tag != "" && req.Tag != own {
		return SyncReply{Error: fmt.Sprintf("sync: a process of tag %q cannot act for tag %q", own, req.Tag)}
	}
	if tag == "" && req.Op != "info" {
		return SyncReply{Error: "sync: request names no tag"}
	}
	if tag != "" && s.hub.member(tag) == nil {
		return SyncReply{Error: fmt.Sprintf("sync: unknown tag %q", tag)}
	}
	if req.Timeout < 0 || req.Timeout > maxSyncWait.Seconds() {
		return SyncReply{Error: fmt.Sprintf("sync: timeout must be within 0..%s s", seconds(maxSyncWait))}
	}
	timeout := time.Duration(req.Timeout * float64(time.Second))
	var err error
	var rep SyncReply
	switch req.Op {
	case "barrier":
		err = s.hub.Barrier(ctx, tag, req.Name, req.Tags, timeout)
	case "send":
		err = s.hub.Send(tag, req.Name, req.Value)
	case "wait":
		keys := req.Keys
		if len(keys) == 0 {
			keys = []string{req.Name}
		}
		rep.Values, err = s.hub.Wait(ctx, tag, WaitOptions{Keys: keys, From: req.Tags, All: req.All, Others: req.Others, Timeout: timeout})
	case "lock":
		err = s.hub.Lock(ctx, tag, req.Name, timeout)
	case "unlock":
		err = s.hub.Unlock(tag, req.Name)
	case "info":
		info := &SyncInfo{Tag: tag, Node: s.hub.NodeOf(tag), Members: s.members}
		rep.Info = info
	case "env":
		if !anyTag {
			return SyncReply{Error: "sync: only the test's body asks for a node's environment"}
		}
		if s.envOf != nil {
			rep.Values = s.envOf(tag)
		}
		if rep.Values == nil {
			err = fmt.Errorf("sync: processes on tag %q cannot synchronise (see debug.log)", tag)
		}
	case "state":
		if !anyTag {
			return SyncReply{Error: "sync: only the test's body sets a tag's state"}
		}
		switch req.Value {
		case "running":
			s.hub.SetRunning(tag)
		case "finished":
			s.hub.SetFinished(tag, req.Name)
		default:
			err = fmt.Errorf("sync: state must be running or finished, got %q", req.Value)
		}
	default:
		err = fmt.Errorf("sync: unknown op %q (barrier, send, wait, lock, unlock, info)", req.Op)
	}
	if err != nil {
		rep.Error = err.Error()
	}
	return rep
}

// SyncClient calls the sync service of the test that started this
// process.
type SyncClient struct {
	Socket, Token, Tag string
}

// ErrNoSync is returned by SyncClientFromEnv outside a test's process.
var ErrNoSync = errors.New("not started by a multihost test with synchronisation: " + EnvSyncSocket + " and " + EnvSyncToken + " are not set (only processes the test's steps start on its nodes get them)")

// SyncClientFromEnv returns the client for this process's test.
func SyncClientFromEnv() (*SyncClient, error) {
	c := &SyncClient{Socket: os.Getenv(EnvSyncSocket), Token: os.Getenv(EnvSyncToken), Tag: os.Getenv(EnvSyncTag)}
	if c.Socket == "" || c.Token == "" {
		return nil, ErrNoSync
	}
	return c, nil
}

// Call sends req (with the client's token) and returns the reply; a
// refused or failed request is an error with the service's text.
func (c *SyncClient) Call(ctx context.Context, req SyncRequest) (SyncReply, error) {
	req.Token = c.Token
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return SyncReply{}, fmt.Errorf("sync: cannot reach the test's runner at %s: %w", c.Socket, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	data, err := json.Marshal(req)
	if err != nil {
		return SyncReply{}, err
	}
	if _, err := conn.Write(append(data, '\n')); err != nil {
		return SyncReply{}, fmt.Errorf("sync: sending the request: %w", err)
	}
	line, err := bufio.NewReaderSize(io.LimitReader(conn, maxSyncReply), 4096).ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return SyncReply{}, context.Cause(ctx)
		}
		return SyncReply{}, fmt.Errorf("sync: the runner closed the connection without an answer (the test may have ended): %w", err)
	}
	var rep SyncReply
	if err := json.Unmarshal(line, &rep); err != nil {
		return SyncReply{}, fmt.Errorf("sync: bad reply: %w", err)
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}
