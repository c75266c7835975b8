package vm

// The QMP client: one connection per VM, held by the agent for the VM's
// life. Commands are serialised (one in flight, matched by id); events
// are appended to the VM's event log as they come, one JSON line each,
// so a test can read them afterwards.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// maxQMPMessage bounds one QMP message (a reply to query-* on a big guest
// is tens of KiB); a longer line ends the connection.
const maxQMPMessage = 4 << 20

// maxEventLog bounds the event log file; events past it are counted, not
// written.
const maxEventLog = 8 << 20

// QMPError is QMP's error reply to a command.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return e.Class + ": " + e.Desc }

type qmpReply struct {
	ID     uint64          `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *QMPError       `json:"error"`
	Event  string          `json:"event"`
}

type qmpConn struct {
	conn   net.Conn
	events *os.File

	cmd     sync.Mutex // one command in flight
	mu      sync.Mutex
	nextID  uint64
	waiting map[uint64]chan qmpReply
	err     error         // why the reader stopped
	closed  chan struct{} // closed when the reader stops
	evBytes int64
}

// dialQMP connects to the socket (retrying until ctx ends: QEMU creates it
// shortly after start), reads the greeting and leaves capability
// negotiation.
func dialQMP(ctx context.Context, path string, events *os.File, alive func() bool) (*qmpConn, error) {
	var c net.Conn
	for {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		if !alive() {
			return nil, errors.New("QEMU exited before its QMP socket answered")
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("QMP socket %s: %w", path, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	q := &qmpConn{conn: c, events: events, waiting: map[uint64]chan qmpReply{}, closed: make(chan struct{})}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 64<<10), maxQMPMessage)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetReadDeadline(dl)
	}
	if !sc.Scan() {
		c.Close()
		return nil, fmt.Errorf("QMP greeting: %v", firstErr(sc.Err(), errors.New("connection closed")))
	}
	_ = c.SetReadDeadline(time.Time{})
	go q.read(sc)
	if _, err := q.execute(ctx, "qmp_capabilities", nil); err != nil {
		q.close()
		return nil, fmt.Errorf("QMP qmp_capabilities: %w", err)
	}
	return q, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (q *qmpConn) read(sc *bufio.Scanner) {
	for sc.Scan() {
		line := sc.Bytes()
		var r qmpReply
		if err := json.Unmarshal(line, &r); err != nil {
			continue // not ours to interpret; QMP never sends this
		}
		if r.Event != "" {
			q.logEvent(line)
			continue
		}
		q.mu.Lock()
		ch := q.waiting[r.ID]
		delete(q.waiting, r.ID)
		q.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	q.mu.Lock()
	q.err = firstErr(sc.Err(), errors.New("QMP connection closed"))
	q.mu.Unlock()
	close(q.closed)
}

func (q *qmpConn) logEvent(line []byte) {
	if q.events == nil {
		return
	}
	if q.evBytes+int64(len(line))+1 > maxEventLog {
		return
	}
	n, _ := q.events.Write(append(append([]byte{}, line...), '\n'))
	q.evBytes += int64(n)
}

// execute sends one command and waits for its reply or ctx. args nil
// sends none.
func (q *qmpConn) execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.cmd.Lock()
	defer q.cmd.Unlock()
	q.mu.Lock()
	q.nextID++
	id := q.nextID
	ch := make(chan qmpReply, 1)
	q.waiting[id] = ch
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.waiting, id)
		q.mu.Unlock()
	}()
	msg := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = q.conn.SetWriteDeadline(dl)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return nil, r.Error
		}
		return r.Return, nil
	case <-q.closed:
		q.mu.Lock()
		defer q.mu.Unlock()
		return nil, fmt.Errorf("QMP %s: %w", cmd, q.err)
	case <-ctx.Done():
		return nil, fmt.Errorf("QMP %s: %w", cmd, context.Cause(ctx))
	}
}

func (q *qmpConn) close() {
	q.conn.Close()
	<-q.closed
}

// status is query-status's "status" (running, paused, postmigrate,
// inmigrate, ...).
func (q *qmpConn) status(ctx context.Context) (string, error) {
	raw, err := q.execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("query-status: %w", err)
	}
	return st.Status, nil
}
