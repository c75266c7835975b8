package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"regexp"
)

// defaultBase is where lab subnets come from: a /16 inside 10/8 that real
// networks rarely use, cut into /24s, one per lab.
var defaultBase = netip.MustParsePrefix("10.250.0.0/16")

// maxHosts keeps every host address, the gateway and the broadcast address
// inside one /24.
const maxHosts = 200

// prefixRE limits prefixes so that "<prefix>br" and "<prefix>v<N>" fit the
// kernel's 15-byte interface names and "<prefix>u" is a valid user name.
var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,7}$`)

func validPrefix(p string) error {
	if !prefixRE.MatchString(p) {
		return fmt.Errorf("lab: prefix %q: want 2 to 8 characters [a-z0-9] starting with a letter", p)
	}
	return nil
}

// randomPrefix returns base followed by random hex digits, 8 characters in
// all, so that labs started at the same moment by parallel test binaries get
// different names.
func randomPrefix(base string) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux.
	s := base + hex.EncodeToString(b[:])
	return s[:8]
}

// pickSubnet returns the first /24 inside base that overlaps no subnet in
// taken (other labs) and contains no address in addrs (addresses already on
// this machine's interfaces, whose traffic a new route would steal).
func pickSubnet(base netip.Prefix, taken []netip.Prefix, addrs []netip.Addr) (netip.Prefix, error) {
	base = base.Masked()
	if !base.Addr().Is4() || base.Bits() > 24 {
		return netip.Prefix{}, fmt.Errorf("lab: subnet base %s: want an IPv4 prefix of /24 or wider", base)
	}
	n := 1 << (24 - base.Bits())
	start := base.Addr().As4()
	for i := range n {
		a := start
		// The third octet (and bits of the second, for bases wider than
		// /16) count the /24s.
		v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8
		v += uint32(i) << 8
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0}), 24)
		if subnetFree(cand, taken, addrs) {
			return cand, nil
		}
	}
	if n == 1 {
		return netip.Prefix{}, fmt.Errorf("lab: subnet %s is in use by another lab or an interface of this machine; pick another (or a wider prefix to search, e.g. %s/16)", base, netip.PrefixFrom(base.Addr(), 16).Masked().Addr())
	}
	return netip.Prefix{}, fmt.Errorf("lab: no free /24 left in %s (%d labs or interfaces use it); run \"vtcluster lab reap\" or remove stale labs", base, len(taken))
}

func subnetFree(cand netip.Prefix, taken []netip.Prefix, addrs []netip.Addr) bool {
	for _, t := range taken {
		if t.Overlaps(cand) {
			return false
		}
	}
	for _, a := range addrs {
		if cand.Contains(a) {
			return false
		}
	}
	return true
}

// hostAddr returns the i-th address of a lab subnet: .1 is the gateway (the
// bridge in the root namespace), hosts start at .2.
func hostAddr(subnet netip.Prefix, i int) (netip.Addr, error) {
	if i < 1 || i > maxHosts+1 {
		return netip.Addr{}, fmt.Errorf("lab: address index %d outside 1..%d", i, maxHosts+1)
	}
	a := subnet.Masked().Addr().As4()
	a[3] = byte(i)
	return netip.AddrFrom4(a), nil
}

// interfaceAddrs lists the IPv4 addresses configured in this (the root)
// network namespace.
func interfaceAddrs() ([]netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("lab: list interface addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range ifAddrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ad, ok := netip.AddrFromSlice(ipn.IP); ok && ad.Unmap().Is4() {
			out = append(out, ad.Unmap())
		}
	}
	return out, nil
}
