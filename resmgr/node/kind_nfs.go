package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// mountTimeout bounds mount and umount: a hung NFS server stalls only the
// pool being attached or detached (its lock), and only this long.
const mountTimeout = time.Minute

// nfs: an export mounted on each node, on a mount point of its own: the
// given one, or <data>/nfs_mnt/<server>/<export with '/' as '_'>, so two
// exports of one server never share a mount point (upstream's did).
func init() {
	registerPoolKind(PoolNFS, poolKind{
		holds: TypeVolume,
		open:  openNFS,
		close: func(ctx context.Context, s *Service, c *poolConn) error {
			if c.Mounted {
				ctx, cancel := context.WithTimeout(ctx, mountTimeout)
				defer cancel()
				if err := s.run(ctx, []string{"umount", "--", c.Root}); err != nil {
					return err
				}
				c.Mounted = false
			}
			removeRoot(s, c)
			return nil
		},
		reply: func(c *poolConn) any {
			var opts any
			if c.MountOptions != "" {
				opts = c.MountOptions
			}
			return xmlrpc.Struct{{Key: "spec", Value: xmlrpc.Struct{{Key: "mount", Value: c.Root}, {Key: "mount-options", Value: opts}}}}
		},
		capacity: dirCapacity,
	})
}

func openNFS(ctx context.Context, s *Service, c *poolConn, spec PoolSpec) error {
	c.Server, c.Export, c.MountOptions = spec.Server, string(spec.Export), spec.MountOptions
	if !hostRE.MatchString(c.Server) {
		return fmt.Errorf("nfs pool %s: server %q is not a host name or address", c.UUID, c.Server)
	}
	if err := CheckAbsPath(c.Export); err != nil {
		return fmt.Errorf("nfs pool %s: export: %w", c.UUID, err)
	}
	if c.MountOptions != "" && !mountOptionsRE.MatchString(c.MountOptions) {
		return fmt.Errorf("nfs pool %s: mount options %q must be comma-separated name[=value] items", c.UUID, c.MountOptions)
	}
	def := filepath.Join("nfs_mnt", strings.Trim(c.Server, "[]"), strings.ReplaceAll(strings.Trim(c.Export, "/"), "/", "_"))
	root, err := s.poolDir(spec.Mount, def)
	if err != nil {
		return fmt.Errorf("nfs pool %s: mount point: %w", c.UUID, err)
	}
	c.Root = root
	if c.Made, err = mkdirNew(root); err != nil {
		return err
	}
	// The mount point must be root's before mounting on it.
	if _, err := checkPoolDir(root, false); err != nil {
		return fmt.Errorf("nfs pool %s: mount point: %w", c.UUID, err)
	}
	mctx, cancel := context.WithTimeout(ctx, mountTimeout)
	defer cancel()
	if err := s.run(mctx, nfsMountArgv(c)); err != nil {
		if c.Made {
			os.Remove(root)
		}
		return fmt.Errorf("nfs pool %s: mount failed: %w", c.UUID, err)
	}
	c.Mounted = true
	// The mounted share: with root_squash it must be writable by the
	// squashed uid, which the pool has to accept (allow-other-writers).
	if err := attachDir(c); err != nil {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mountTimeout)
		defer cancel()
		if uerr := s.run(uctx, []string{"umount", "--", c.Root}); uerr == nil && c.Made {
			os.Remove(root)
		}
		return fmt.Errorf("nfs pool %s: %w", c.UUID, err)
	}
	return nil
}

// nfsMountArgv is mount(8)'s argv for c; every value is its own item.
func nfsMountArgv(c *poolConn) []string {
	argv := []string{"mount", "-t", "nfs"}
	if c.MountOptions != "" {
		argv = append(argv, "-o", c.MountOptions)
	}
	return append(argv, "--", c.Server+":"+c.Export, c.Root)
}
