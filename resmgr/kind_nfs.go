package resmgr

import (
	"fmt"

	"github.com/tidwall/gjson"

	"github.com/vtcluster/vtcluster/resmgr/node"
)

// nfs: an export every node mounts ("server", "export", per-node
// "mount_options" and "mount_point").
func init() {
	registerPoolKind(PoolNFS, poolKind{
		holds: TypeVolume,
		fromParams: func(c *PoolConfig, p gjson.Result) error {
			c.Spec.Server = p.Get("server").String()
			c.Spec.Export = p.Get("export").String()
			if !node.ValidHost(c.Spec.Server) {
				return fmt.Errorf("server %q is not a host name or address", c.Spec.Server)
			}
			if err := node.CheckAbsPath(c.Spec.Export.(string)); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			opts, mnt := map[string]any{}, map[string]any{}
			if v := p.Get("mount_options"); v.IsObject() {
				opts = v.Value().(map[string]any)
			}
			if v := p.Get("mount_point"); v.IsObject() {
				mnt = v.Value().(map[string]any)
			}
			c.Spec.MountOptions, c.Spec.Mount = &opts, &mnt
			return nil
		},
		nodeConfig: func(c PoolConfig, pick func(map[string]any) any) map[string]any {
			spec := map[string]any{"server": c.Spec.Server, "export": c.Spec.Export}
			spec["mount-options"] = pick(*c.Spec.MountOptions)
			spec["mount"] = pick(*c.Spec.Mount)
			if c.Spec.AllowOtherWriters {
				spec["allow-other-writers"] = true
			}
			if c.Spec.Overcommit {
				spec["overcommit"] = true
			}
			return map[string]any{"meta": map[string]any{"uuid": c.Meta.UUID, "type": c.Meta.Type}, "spec": spec}
		},
		attached: func(p *Pool, n string, out node.PoolReply) {
			mnt := *p.Config.Spec.Mount
			if _, star := mnt["*"]; !star && out.Spec.Mount != "" {
				mnt[n] = out.Spec.Mount
			}
		},
	})
}
