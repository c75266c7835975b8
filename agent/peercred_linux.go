package agent

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// checkPeerUID lets a Unix-socket peer in only when it runs as this
// agent's uid or as root: anyone else reaching the socket (a loosened
// directory, a shared mount) must not run commands as us.
func checkPeerUID(c net.Conn) error {
	if _, ok := c.(*net.UnixConn); !ok {
		return nil
	}
	cred, err := PeerCred(c)
	if err != nil {
		return err
	}
	if me := uint32(os.Geteuid()); cred.UID != me && cred.UID != 0 {
		return fmt.Errorf("peer pid %d runs as uid %d; only uid %d and root may call this agent", cred.PID, cred.UID, me)
	}
	return nil
}

// PeerCred returns the credentials of the process at the other end of a
// Unix-socket connection (SO_PEERCRED), for every server of this program
// that admits only its own user.
func PeerCred(c net.Conn) (PeerCredentials, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return PeerCredentials{}, fmt.Errorf("peer credentials: %T is not a Unix socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return PeerCredentials{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return PeerCredentials{}, err
	}
	if cerr != nil {
		return PeerCredentials{}, fmt.Errorf("reading the peer's credentials: %w", cerr)
	}
	return PeerCredentials{PID: cred.Pid, UID: cred.Uid}, nil
}

// The sock_diag request and reply for one TCP socket (linux/inet_diag.h).
type inetDiagSockID struct {
	SPort  [2]byte // big-endian, as addresses
	DPort  [2]byte
	Src    [16]byte
	Dst    [16]byte
	If     uint32
	Cookie [2]uint32
}

type inetDiagReqV2 struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	_        uint8
	States   uint32
	ID       inetDiagSockID
}

type inetDiagMsg struct {
	Family  uint8
	State   uint8
	Timer   uint8
	Retrans uint8
	ID      inetDiagSockID
	Expires uint32
	RQueue  uint32
	WQueue  uint32
	UID     uint32
	Inode   uint32
}

// peerLookupTimeout bounds one sock_diag lookup; the kernel answers an
// exact lookup while it handles the request, so this only guards
// against the unforeseen.
const peerLookupTimeout = 100 * time.Millisecond

// tcpPeerUID returns the uid owning the socket at the far end of a TCP
// connection whose both ends are on this host: the socket whose own
// address is remote and whose peer is local, looked up by that exact
// 4-tuple with sock_diag in this network namespace. A socket its owner
// already closed (an orphan or a time-wait remnant, reported with no
// inode and uid 0) has no owner to tell, and is an error like a socket
// not found: the connection is then counted under its address alone.
func tcpPeerUID(local, remote *net.TCPAddr) (uint32, error) {
	req := inetDiagReqV2{Protocol: unix.IPPROTO_TCP, States: ^uint32(0)}
	req.ID.Cookie = [2]uint32{^uint32(0), ^uint32(0)} // INET_DIAG_NOCOOKIE
	binary.BigEndian.PutUint16(req.ID.SPort[:], uint16(remote.Port))
	binary.BigEndian.PutUint16(req.ID.DPort[:], uint16(local.Port))
	if r4, l4 := remote.IP.To4(), local.IP.To4(); r4 != nil && l4 != nil {
		req.Family = unix.AF_INET
		copy(req.ID.Src[:], r4)
		copy(req.ID.Dst[:], l4)
	} else if r16, l16 := remote.IP.To16(), local.IP.To16(); r16 != nil && l16 != nil {
		req.Family = unix.AF_INET6
		copy(req.ID.Src[:], r16)
		copy(req.ID.Dst[:], l16)
	} else {
		return 0, fmt.Errorf("addresses %v and %v are not of one IP family", remote, local)
	}

	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(peerLookupTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return 0, fmt.Errorf("sock_diag socket: %w", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, fmt.Errorf("sock_diag socket: %w", err)
	}

	const seq = 1
	hdr := unix.NlMsghdr{
		Len:   uint32(unix.SizeofNlMsghdr + binary.Size(req)),
		Type:  unix.SOCK_DIAG_BY_FAMILY,
		Flags: unix.NLM_F_REQUEST, // no NLM_F_DUMP: the one socket of this 4-tuple
		Seq:   seq,
	}
	msg := make([]byte, 0, hdr.Len)
	msg, _ = binary.Append(msg, binary.NativeEndian, hdr)
	msg, _ = binary.Append(msg, binary.NativeEndian, req)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag request: %w", err)
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return 0, fmt.Errorf("sock_diag reply: %w", err)
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			var h unix.NlMsghdr
			if _, err := binary.Decode(b, binary.NativeEndian, &h); err != nil {
				return 0, fmt.Errorf("sock_diag reply: %w", err)
			}
			if h.Len < unix.SizeofNlMsghdr || int(h.Len) > len(b) {
				return 0, fmt.Errorf("sock_diag reply: message of %d bytes in %d", h.Len, len(b))
			}
			body := b[unix.SizeofNlMsghdr:h.Len]
			b = b[min(len(b), nlmAlign(int(h.Len))):]
			if h.Seq != seq {
				continue
			}
			switch h.Type {
			case unix.NLMSG_ERROR:
				var e int32
				if _, err := binary.Decode(body, binary.NativeEndian, &e); err != nil {
					return 0, fmt.Errorf("sock_diag reply: %w", err)
				}
				return 0, fmt.Errorf("sock_diag lookup of %v -> %v: %w", remote, local, unix.Errno(-e))
			case unix.NLMSG_DONE:
				return 0, fmt.Errorf("sock_diag lookup of %v -> %v: no socket", remote, local)
			case unix.SOCK_DIAG_BY_FAMILY:
				var m inetDiagMsg
				if _, err := binary.Decode(body, binary.NativeEndian, &m); err != nil {
					return 0, fmt.Errorf("sock_diag reply: %w", err)
				}
				if m.Inode == 0 {
					return 0, fmt.Errorf("the socket of %v is closed (TCP state %d); its owner is gone", remote, m.State)
				}
				return m.UID, nil
			}
		}
	}
}

func nlmAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
