package runner

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// writeWhole writes line to conn whole or not at all: a status server
// reads lines, and older Avocado aborts the whole job on a line it cannot
// decode, which is what a write cut short by the deadline would leave
// behind once the connection is closed. So the line is written only when
// the socket's send buffer has room for all of it (one write(2)); until
// then it waits, and at the deadline it gives up with nothing written. A
// line larger than the whole buffer waits for an empty buffer instead;
// should the deadline cut it, the rest gets one more second.
func writeWhole(conn net.Conn, line []byte, deadline time.Time) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		_, err := conn.Write(line) // not a socket (tests' pipes): no partial writes to fear
		return err
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		fits := true
		if err := rc.Control(func(fd uintptr) {
			// A line larger than the whole buffer never fits: it goes
			// once the buffer is empty, the server reading as it comes.
			room, queued := sendRoom(int(fd))
			fits = room >= len(line) || queued == 0
		}); err != nil {
			return err
		}
		if fits {
			break
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("status line of %d bytes not sent: the server has not read for a while (%w)", len(line), ErrStatusTimeout)
		}
		time.Sleep(pause)
	}
	n, err := conn.Write(line)
	if err != nil && n > 0 && n < len(line) {
		// The room was misjudged and the deadline cut the line: finish it
		// rather than leave half a line for the server to choke on.
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, err = conn.Write(line[n:])
	}
	return err
}

// ErrStatusTimeout marks a status line given up at the write deadline.
var ErrStatusTimeout = errors.New("runner: status server write timeout")

// sendRoom is how many bytes the socket's send buffer takes now without
// blocking: half of SO_SNDBUF (the kernel doubles the value for its own
// bookkeeping) less what is queued, and what is queued. Unknown counts as
// room, as before.
func sendRoom(fd int) (room, queued int) {
	buf, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return 1 << 30, 0
	}
	queued, err = unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return 1 << 30, 0
	}
	return buf/2 - queued, queued
}
