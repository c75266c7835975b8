package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a host key that could not be trusted: either the host is
// not in the known_hosts file (Mismatch false), or it presented a key other
// than the recorded one (Mismatch true), which is never accepted.
type HostKeyError struct {
	// Host is the address as dialed, "host:port".
	Host string
	// Mismatch is true when known_hosts records different keys for Host.
	Mismatch bool
	// Want lists the recorded keys as "file:line: TYPE SHA256:...".
	Want []string
	// Got is the offered key as "TYPE SHA256:...".
	Got string
	// File is the known_hosts file consulted.
	File string
}

func (e *HostKeyError) Error() string {
	host, port, err := net.SplitHostPort(e.Host)
	if err != nil {
		host, port = e.Host, "22"
	}
	if e.Mismatch {
		return fmt.Sprintf("ssh %s: HOST KEY MISMATCH: the host offered %s but %s records %s; "+
			"someone may be intercepting the connection, or the host was reinstalled. "+
			"If you verified the new key, remove the old entry (ssh-keygen -R %s -f %s) and connect again",
			e.Host, e.Got, e.File, strings.Join(e.Want, ", "), knownhosts.Normalize(e.Host), e.File)
	}
	return fmt.Sprintf("ssh %s: host key %s is not known (no entry in %s); "+
		"verify the fingerprint out of band, then add it (ssh-keyscan -p %s %s >> %s) "+
		"or connect once accepting new host keys (bootstrap --accept-new-host-keys)",
		e.Host, e.Got, e.File, port, host, e.File)
}

func keyDesc(k ssh.PublicKey) string {
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}

// hostKeyChecker verifies host keys against one known_hosts file and, when
// allowed, records keys of hosts not yet listed there.
type hostKeyChecker struct {
	file   string
	accept bool
	logger *slog.Logger
	cb     ssh.HostKeyCallback

	mu  sync.Mutex
	err *HostKeyError // last refusal, for Dial to return typed
}

func newHostKeyChecker(file string, accept bool, logger *slog.Logger) (*hostKeyChecker, error) {
	var files []string
	if _, err := os.Stat(file); err == nil {
		files = append(files, file)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ssh known_hosts: %w", err)
	}
	// With no files the callback knows no host, which is what a missing
	// file means.
	cb, err := knownhosts.New(files...)
	if err != nil {
		return nil, fmt.Errorf("ssh known_hosts %s: %w", file, err)
	}
	return &hostKeyChecker{file: file, accept: accept, logger: logger, cb: cb}, nil
}

func (h *hostKeyChecker) check(host string, remote net.Addr, key ssh.PublicKey) error {
	err := h.cb(host, remote, key)
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		var re *knownhosts.RevokedError
		if errors.As(err, &re) {
			return fmt.Errorf("ssh %s: host key %s is revoked (%s)", host, keyDesc(key), re.Revoked.String())
		}
		return fmt.Errorf("ssh %s: host key check: %w", host, err)
	}
	if len(ke.Want) == 0 && h.accept {
		if err := h.record(host, key); err != nil {
			return err
		}
		h.logger.Warn("ssh: trusting new host key on first use", "node", host, "key", keyDesc(key), "known_hosts", h.file)
		return nil
	}
	hkErr := &HostKeyError{Host: host, Mismatch: len(ke.Want) > 0, Got: keyDesc(key), File: h.file}
	for _, w := range ke.Want {
		hkErr.Want = append(hkErr.Want, fmt.Sprintf("%s:%d: %s", w.Filename, w.Line, keyDesc(w.Key)))
	}
	h.mu.Lock()
	h.err = hkErr
	h.mu.Unlock()
	return hkErr
}

func (h *hostKeyChecker) failure() *HostKeyError {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// recordMu serialises appends to known_hosts files within this process;
// each append is one write(2) with O_APPEND, so other processes cannot
// interleave inside a line.
var recordMu sync.Mutex

func (h *hostKeyChecker) record(host string, key ssh.PublicKey) error {
	recordMu.Lock()
	defer recordMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(h.file), 0o700); err != nil {
		return fmt.Errorf("ssh record host key: %w", err)
	}
	f, err := os.OpenFile(h.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("ssh record host key: %w", err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(host)}, key) + "\n"
	// A file whose last line lacks its newline would swallow ours.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if r, err := os.Open(h.file); err == nil {
			if _, err := r.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
				line = "\n" + line
			}
			r.Close()
		}
	}
	_, werr := f.Write([]byte(line))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("ssh record host key in %s: %w", h.file, werr)
	}
	return nil
}

// probeKey is a key no known_hosts file lists; checking it makes the
// callback return every key recorded for a host.
var probeKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
})

type addrString string

func (a addrString) Network() string { return "tcp" }
func (a addrString) String() string  { return string(a) }

// algorithms returns the host key algorithms to offer for addr: those of
// the keys known_hosts records for it, so that a server holding several
// key types presents the recorded one. Left to the default order, x/crypto
// may negotiate another type and report a false mismatch (golang/go#29286).
// Nil (the default list) when the host is unknown.
func (h *hostKeyChecker) algorithms(addr string) []string {
	var ke *knownhosts.KeyError
	if err := h.cb(addr, addrString(addr), probeKey()); !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	supported := append(ssh.SupportedAlgorithms().HostKeys, ssh.InsecureAlgorithms().HostKeys...)
	var algos []string
	add := func(a string) {
		if slices.Contains(supported, a) && !slices.Contains(algos, a) {
			algos = append(algos, a)
		}
	}
	for _, w := range ke.Want {
		switch t := w.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			// One RSA key signs with any of these; prefer SHA-2.
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
			add(ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}
