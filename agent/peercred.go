package agent

// PeerCredentials are who is at the other end of a Unix-socket
// connection (PeerCred).
type PeerCredentials struct {
	PID int32
	UID uint32
}
