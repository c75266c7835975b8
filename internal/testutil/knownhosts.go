package testutil

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ForgedKnownHost is a known_hosts line (with its newline) that records a
// fresh key for addr ("host:port"), as if the host had been reinstalled or
// someone were in the middle: what a host key check must refuse.
func ForgedKnownHost(tb testing.TB, addr string) string {
	tb.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
}
