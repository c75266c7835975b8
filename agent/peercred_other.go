//go:build !linux

package agent

import (
	"errors"
	"net"
)

// checkPeerUID refuses every Unix-socket peer where SO_PEERCRED is not
// available: without it the socket would be open to whoever reaches it.
func checkPeerUID(c net.Conn) error {
	if _, ok := c.(*net.UnixConn); ok {
		return errors.New("peer credentials are only checked on Linux")
	}
	return nil
}

// PeerCred is Linux's (peercred_linux.go): elsewhere no peer is known.
func PeerCred(net.Conn) (PeerCredentials, error) {
	return PeerCredentials{}, errors.New("peer credentials are only read on Linux")
}

// tcpPeerUID cannot tell who owns the far end of a local TCP connection
// without sock_diag: such connections are counted under their address.
func tcpPeerUID(local, remote *net.TCPAddr) (uint32, error) {
	return 0, errors.ErrUnsupported
}
