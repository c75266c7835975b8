package node

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// linux_bridge: an existing bridge of the node; its backings are tap
// ports, real devices on the bridge that QEMU opens with -netdev
// tap,ifname=<name>,script=no,downscript=no.
func init() {
	registerPoolKind(PoolLinuxBridge, poolKind{
		holds: TypePort,
		open: func(ctx context.Context, s *Service, c *poolConn, spec PoolSpec) error {
			br := string(spec.Switch)
			if br == "" {
				br = string(spec.Export)
			}
			if err := CheckIfname(br); err != nil {
				return fmt.Errorf("linux_bridge pool %s: %w", c.UUID, err)
			}
			if _, err := os.Stat(filepath.Join(s.sysNet, br, "bridge")); err != nil {
				return fmt.Errorf("linux_bridge pool %s: %s is not a bridge on this node", c.UUID, br)
			}
			c.Bridge = br
			return nil
		},
		close: func(ctx context.Context, s *Service, c *poolConn) error { return nil },
		reply: func(c *poolConn) any { return nil },
	})
}

var portKind = resourceKind{
	newBacking: newPort,
	allocate:   allocateTap,
	release:    releaseTap,
	sync:       syncPort,
}

// newPort names the tap: spec.ifname, or upstream's tap_<8 alnum>. A name
// that is already an interface of the node is refused: it is not this
// backing's, and release must never delete it.
func newPort(s *Service, c *poolConn, b *backing, req BackingRequest) error {
	name := req.Spec.Ifname
	if name == "" {
		name = "tap_" + strings.ToLower(crand.Text()[:8])
	}
	if err := CheckIfname(name); err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(s.sysNet, name)); err == nil {
		return refusedf("interface %s exists already on this node and is not this backing's", name)
	}
	b.Ifname = name
	return nil
}

// ifindex is name's interface index and whether it is a tap (tun_flags
// exists only for tun/tap devices; IFF_TAP is 0x2); 0 when there is none.
func (s *Service) ifindex(name string) (index int, tap bool) {
	data, err := os.ReadFile(filepath.Join(s.sysNet, name, "ifindex"))
	if err != nil {
		return 0, false
	}
	index, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	flags, err := os.ReadFile(filepath.Join(s.sysNet, name, "tun_flags"))
	if err == nil {
		f, _ := strconv.ParseUint(strings.TrimSpace(string(flags)), 0, 32)
		tap = f&0x2 != 0
	}
	return index, tap
}

// allocateTap makes the tap on the pool's bridge, up, and records its
// index before anything else is done with it.
func allocateTap(ctx context.Context, s *Service, c *poolConn, b *backing, _ UpdateArgs) error {
	if c.Bridge == "" {
		return fmt.Errorf("pool %s of port %s is not connected", b.Pool, b.Ifname)
	}
	if i, _ := s.ifindex(b.Ifname); i != 0 {
		return fmt.Errorf("%s is already allocated", b.Ifname)
	}
	if err := s.run(ctx, []string{"ip", "tuntap", "add", "dev", b.Ifname, "mode", "tap"}); err != nil {
		return err
	}
	index, tap := s.ifindex(b.Ifname)
	if index == 0 || !tap {
		return fmt.Errorf("%s: the tap just made is not there (index %d, tap %v)", b.Ifname, index, tap)
	}
	b.Ifindex = index
	if err := s.putBacking(b); err != nil {
		return errors.Join(err, s.run(context.WithoutCancel(ctx), []string{"ip", "link", "del", "dev", b.Ifname}))
	}
	for _, argv := range [][]string{
		{"ip", "link", "set", "dev", b.Ifname, "master", c.Bridge},
		{"ip", "link", "set", "dev", b.Ifname, "up"},
	} {
		if err := s.run(ctx, argv); err != nil {
			return errors.Join(err, releaseTap(context.WithoutCancel(ctx), s, c, b, UpdateArgs{}))
		}
	}
	return nil
}

// releaseTap deletes the tap this backing made, and only it: an
// interface of the same name with another index, or one that is not a
// tap, stays.
func releaseTap(ctx context.Context, s *Service, c *poolConn, b *backing, _ UpdateArgs) error {
	if b.Ifindex == 0 {
		return nil
	}
	made := b.Ifindex
	index, tap := s.ifindex(b.Ifname)
	if index == 0 {
		b.Ifindex = 0
		return s.putBacking(b)
	}
	if index != made || !tap {
		b.Ifindex = 0
		s.putBacking(b)
		return refusedf("interface %s (index %d, tap %v) is not the tap this backing made (index %d); it is left alone", b.Ifname, index, tap, made)
	}
	if err := s.run(ctx, []string{"ip", "link", "del", "dev", b.Ifname}); err != nil {
		return err
	}
	b.Ifindex = 0
	return s.putBacking(b)
}

func syncPort(s *Service, c *poolConn, b *backing) []xmlrpc.Member {
	index, _ := s.ifindex(b.Ifname)
	return []xmlrpc.Member{
		{Key: "meta", Value: xmlrpc.Struct{{Key: "port-type", Value: "tap"}, {Key: "allocated", Value: b.Ifindex != 0 && index == b.Ifindex}}},
		{Key: "spec", Value: xmlrpc.Struct{{Key: "switch", Value: c.Bridge}, {Key: "fds", Value: []any{}}, {Key: "ifname", Value: b.Ifname}}},
	}
}
