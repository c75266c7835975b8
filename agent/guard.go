package agent

import (
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// authThrottle slows repeated token failures from one address: the first
// few are answered at once (a mistyped token should fail fast), later ones
// wait longer and longer, so guessing runs at a few tries per second
// instead of thousands. Memory is bounded by maxEntries.
type authThrottle struct {
	mu sync.Mutex
	m  map[string]*authFails
}

type authFails struct {
	n    int
	last time.Time
}

const (
	authFreeFailures = 5
	authBaseDelay    = 50 * time.Millisecond
	authMaxDelay     = 2 * time.Second
	// authWindow forgets an address's failures once it has been quiet
	// this long.
	authWindow     = time.Minute
	authMaxEntries = 4096
)

// fail records a failure from key and returns how long to wait before
// answering it.
func (a *authThrottle) fail(key string, now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string]*authFails{}
	}
	f := a.m[key]
	if f == nil || now.Sub(f.last) > authWindow {
		if len(a.m) >= authMaxEntries {
			a.pruneLocked(now)
		}
		f = &authFails{}
		a.m[key] = f
	}
	f.n++
	f.last = now
	if f.n <= authFreeFailures {
		return 0
	}
	shift := min(f.n-authFreeFailures-1, 10)
	return min(authBaseDelay<<shift, authMaxDelay)
}

// succeed forgets key's failures.
func (a *authThrottle) succeed(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m != nil {
		delete(a.m, key)
	}
}

// pruneLocked drops quiet entries; if every entry is recent (many
// addresses at once), it starts over rather than grow.
func (a *authThrottle) pruneLocked(now time.Time) {
	for k, f := range a.m {
		if now.Sub(f.last) > authWindow {
			delete(a.m, k)
		}
	}
	if len(a.m) >= authMaxEntries {
		clear(a.m)
	}
}

// warnLimiter lets one warning through per interval and counts the rest,
// so a flood of bad requests cannot fill the disk through the log.
type warnLimiter struct {
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many warnings were dropped
// since the last one logged.
func (w *warnLimiter) allow(now time.Time) (bool, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.last.IsZero() && now.Sub(w.last) < w.every {
		w.suppressed++
		return false, 0
	}
	n := w.suppressed
	w.last, w.suppressed = now, 0
	return true, n
}

// hostPolicy decides which Host headers name this agent. A browser sends
// the name from its URL, so a DNS-rebinding page arrives with its own name
// and is refused; programs that dial the agent send one of its addresses.
type hostPolicy struct {
	unixOnly  bool            // a Unix socket: loopback names only
	names     map[string]bool // lower-case names and literal IPs
	anyLocal  bool            // bound to 0.0.0.0 or ::, so any local address
	addrsMu   sync.Mutex
	addrs     map[string]bool
	addrsTime time.Time
}

func newHostPolicy(bindHost string, unixSocket bool, extra []string) *hostPolicy {
	p := &hostPolicy{unixOnly: unixSocket, names: map[string]bool{}}
	if unixSocket {
		return p
	}
	add := func(n string) {
		n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
		if n != "" {
			p.names[n] = true
		}
	}
	if ip := net.ParseIP(bindHost); ip != nil && ip.IsUnspecified() {
		p.anyLocal = true
	} else {
		add(canonicalIP(bindHost))
	}
	if h, err := os.Hostname(); err == nil {
		add(h)
		if short, _, ok := strings.Cut(h, "."); ok {
			add(short)
		}
	}
	for _, n := range extra {
		add(canonicalIP(n))
	}
	return p
}

// canonicalIP spells an IP the way allowed compares it; names stay as they are.
func canonicalIP(s string) string {
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	return s
}

func (p *hostPolicy) allowed(hostHeader string) bool {
	h := hostHeader
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
	if h == "" {
		return false
	}
	if IsLoopbackHost(h) {
		return true
	}
	if p.unixOnly {
		return false
	}
	ip := net.ParseIP(h)
	if ip != nil {
		h = ip.String()
	}
	if p.names[h] {
		return true
	}
	return ip != nil && p.anyLocal && p.localAddr(h)
}

// localAddr reports whether ip is one of this host's addresses, reading
// them at most every few seconds.
func (p *hostPolicy) localAddr(ip string) bool {
	p.addrsMu.Lock()
	defer p.addrsMu.Unlock()
	if now := time.Now(); p.addrs == nil || now.Sub(p.addrsTime) > 5*time.Second {
		p.addrs = map[string]bool{}
		p.addrsTime = now
		if as, err := net.InterfaceAddrs(); err == nil {
			for _, a := range as {
				if n, ok := a.(*net.IPNet); ok {
					p.addrs[n.IP.String()] = true
				}
			}
		}
	}
	return p.addrs[ip]
}
