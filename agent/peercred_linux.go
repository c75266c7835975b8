package agent

import (
	"fmt"
	"net"
	"os"

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
