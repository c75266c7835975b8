package resmgr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// volumeFormat is the image format a volume's file name says, as
// upstream names files <image_name>.<image_format>: qcow2, or raw.
func volumeFormat(path string) string {
	if strings.HasSuffix(path, ".qcow2") {
		return "qcow2"
	}
	return "raw"
}

// sync is upstream's sync reply for b: meta and spec members.
func (s *NodeService) sync(b *backing) []xmlrpc.Member {
	if b.Type == TypePort {
		_, err := os.Stat(filepath.Join(s.sysNet, b.Ifname))
		br := ""
		if c := s.st.Pools[b.Pool]; c != nil {
			br = c.Bridge
		}
		return []xmlrpc.Member{
			{Key: "meta", Value: xmlrpc.Struct{{Key: "port-type", Value: "tap"}, {Key: "allocated", Value: err == nil}}},
			{Key: "spec", Value: xmlrpc.Struct{{Key: "switch", Value: br}, {Key: "fds", Value: []any{}}, {Key: "ifname", Value: b.Ifname}}},
		}
	}
	var alloc any
	fi, err := os.Stat(b.Path)
	if err == nil {
		alloc = fi.Size()
	}
	return []xmlrpc.Member{
		{Key: "meta", Value: xmlrpc.Struct{{Key: "allocated", Value: err == nil}}},
		{Key: "spec", Value: xmlrpc.Struct{{Key: "uri", Value: b.Path}, {Key: "allocation", Value: alloc}}},
	}
}

func (s *NodeService) allocate(ctx context.Context, b *backing, arguments map[string]any) error {
	if b.Type == TypePort {
		return s.allocateTap(ctx, b)
	}
	size, err := sizeArg(arguments["size"])
	if err != nil {
		return err
	}
	if _, err := os.Lstat(b.Path); err == nil {
		return fmt.Errorf("%s is already allocated", b.Path)
	}
	if err := os.MkdirAll(filepath.Dir(b.Path), 0o755); err != nil {
		return err
	}
	if volumeFormat(b.Path) == "qcow2" {
		err := s.run(ctx, []string{"qemu-img", "create", "-q", "-f", "qcow2", b.Path, strconv.FormatInt(size, 10)})
		if errors.Is(err, ErrToolMissing) {
			return fmt.Errorf("qemu-img is not installed on this node; install it (package qemu-img or qemu-utils) to allocate qcow2 volumes: %w", err)
		}
		if err != nil {
			os.Remove(b.Path)
		}
		return err
	}
	// raw: a sparse file of the size, made without a command.
	f, err := os.OpenFile(b.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(b.Path)
	}
	return err
}

func (s *NodeService) resize(ctx context.Context, b *backing, arguments map[string]any) error {
	size, err := sizeArg(arguments["size"])
	if err != nil {
		return err
	}
	fi, err := os.Stat(b.Path)
	if err != nil {
		return fmt.Errorf("cannot resize %s: not allocated", b.Path)
	}
	if volumeFormat(b.Path) == "qcow2" {
		return s.run(ctx, []string{"qemu-img", "resize", "-q", "-f", "qcow2", b.Path, strconv.FormatInt(size, 10)})
	}
	if size < fi.Size() {
		// Shrinking loses data a test may still want; upstream could not
		// resize at all.
		return fmt.Errorf("cannot shrink %s from %d to %d bytes", b.Path, fi.Size(), size)
	}
	return os.Truncate(b.Path, size)
}

// release removes what allocate made: the volume file, the tap device.
// Releasing what is not allocated is not an error.
func (s *NodeService) release(ctx context.Context, b *backing) error {
	if b.Type == TypePort {
		if _, err := os.Stat(filepath.Join(s.sysNet, b.Ifname)); err != nil {
			return nil
		}
		return s.run(ctx, []string{"ip", "link", "del", "dev", b.Ifname})
	}
	if err := os.Remove(b.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// allocateTap makes a real tap device on the pool's bridge, up, which
// QEMU opens with -netdev tap,ifname=<name>,script=no,downscript=no.
func (s *NodeService) allocateTap(ctx context.Context, b *backing) error {
	c := s.st.Pools[b.Pool]
	if c == nil || c.Bridge == "" {
		return fmt.Errorf("pool %s of port %s is not connected", b.Pool, b.Ifname)
	}
	if _, err := os.Stat(filepath.Join(s.sysNet, b.Ifname)); err == nil {
		return fmt.Errorf("%s is already allocated", b.Ifname)
	}
	steps := [][]string{
		{"ip", "tuntap", "add", "dev", b.Ifname, "mode", "tap"},
		{"ip", "link", "set", "dev", b.Ifname, "master", c.Bridge},
		{"ip", "link", "set", "dev", b.Ifname, "up"},
	}
	for i, argv := range steps {
		if err := s.run(ctx, argv); err != nil {
			if i > 0 {
				s.run(context.WithoutCancel(ctx), []string{"ip", "link", "del", "dev", b.Ifname})
			}
			return err
		}
	}
	return nil
}
